"""`ExportConfig`: every export setting with its meaning."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kositp.config import Config
from kositp.errors import KositpError

DEFAULT_CHECK_PROMPTS = [
    "대한민국의 수도는 어디인가요?",
    "다음 문장을 한 문장으로 요약하세요: 모든 국민은 법 앞에 평등하다.",
    "'훈민정음'은 누가 만들었나요? 예 또는 아니요로 답하지 말고 설명하세요.",
    "김치찌개를 맛있게 끓이는 방법을 알려 주세요.",
]


class ExportConfig(Config):
    """Merge a run into a servable model directory, and check it."""

    run: Path | None = Field(None, description="Training run directory (with run.json) written by `kositp train`; "
                             "usually given as --run.")
    out: Path | None = Field(None, description="Where to write the exported model directory; usually given as --out.")
    dtype: Literal["bf16", "fp16", "fp32"] = Field(
        "fp32", description="Weight dtype of the export. fp32 reproduces CPU training exactly; bf16 halves the size."
    )
    max_shard_size: str = Field("2GB", description="Largest safetensors shard (e.g. 500MB, 2GB).")
    overwrite: bool = Field(False, description="Replace `out` if it already exists.")
    check_prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CHECK_PROMPTS),
        min_length=1,
        description="Korean chat prompts used by the logits check and the vLLM check.",
    )
    logits_atol: float | None = Field(
        None, gt=0, description="Largest allowed |merged - (base+adapter)| logit difference "
        "(default by dtype: fp32 1e-3, bf16/fp16 a fraction of the logit range).",
    )
    check_vllm: bool = Field(False, description="Also load the export in vLLM and compare greedy outputs.")
    vllm_max_tokens: int = Field(24, ge=1, le=512, description="Tokens generated per prompt in the vLLM check.")
    vllm_python: str | None = Field(None, description="vLLM environment's python (default: KOSITP_VLLM_PYTHON "
                                    "or <repo>/.venv-vllm/bin/python).")
    eval_reports: list[Path] = Field(
        default_factory=list, description="Eval report folders (report.json) to tabulate in the model card; "
        "RUN/eval*/report.json are picked up too.",
    )

    def require_paths(self) -> tuple[Path, Path]:
        if self.run is None:
            raise KositpError("no run to export: pass --run RUN (or run=... in the config)")
        if self.out is None:
            raise KositpError("no output directory: pass --out DIR (or out=... in the config)")
        return self.run, self.out
