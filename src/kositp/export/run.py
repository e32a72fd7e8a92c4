"""`export(cfg)`: run directory -> merged, verified model directory."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from kositp.dtypes import canonical_dtype, torch_dtype
from kositp.errors import KositpError
from kositp.export.config import ExportConfig
from kositp.export.merge import load_reference, load_run_tokenizer, merge_in_place, open_run

log = logging.getLogger("kositp.export")
EXPORT_FILE = "kositp_export.json"


def _say(progress, message: str) -> None:
    if progress:
        progress(message)


def export(cfg: ExportConfig, progress=None) -> dict:
    """Merge, save, verify; returns what kositp_export.json records (also printed by the CLI)."""
    from transformers import GenerationConfig

    from kositp.chat import end_of_turn_ids, save_chat_format
    from kositp.export import verify
    from kositp.export.card import render_card
    from kositp.models import load_model

    run, out = cfg.require_paths()
    info = open_run(run)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise KositpError(f"{out} already exists and is not empty (pass --overwrite to replace it)")
    if out.resolve() == info.path.resolve() or info.path.resolve() in out.resolve().parents:
        raise KositpError("--out must not be inside the run directory")

    _say(progress, "loading the base model and the adapter")
    tokenizer, fmt = load_run_tokenizer(info)
    eot = end_of_turn_ids(tokenizer, fmt)
    reference = load_reference(info, tokenizer)
    reference.eval()

    prompt_ids = verify.encode_prompts(tokenizer, cfg.check_prompts)
    ref_logits = verify.reference_logits(reference, prompt_ids)

    _say(progress, "merging the adapter into the base")
    merged = merge_in_place(reference)
    del reference
    merged = merged.to(torch_dtype(cfg.dtype))
    merged.config.eos_token_id = eot
    merged.config.pad_token_id = tokenizer.pad_token_id
    base_gen = getattr(merged, "generation_config", None)
    gen = GenerationConfig(**{k: v for k, v in (base_gen.to_diff_dict() if base_gen else {}).items()
                              if k not in ("transformers_version",)})
    gen.eos_token_id = eot  # every end-of-turn id: vLLM and transformers both stop on all of them
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    merged.generation_config = gen

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        _say(progress, f"writing {cfg.dtype} safetensors (shards of at most {cfg.max_shard_size})")
        merged.save_pretrained(tmp, max_shard_size=cfg.max_shard_size, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_chat_format(tokenizer, fmt, tmp)
        del merged

        _say(progress, "checking logits of the export against base+adapter")
        exported = load_model(str(tmp), dtype=canonical_dtype(cfg.dtype))
        exported.eval()
        logits_check = verify.compare_logits(ref_logits, exported, prompt_ids, cfg.dtype, cfg.logits_atol)

        vllm_check = None
        if cfg.check_vllm:
            from kositp.serve.config import default_vllm_python

            _say(progress, "generating greedily with transformers")
            hf = verify.transformers_greedy(exported, prompt_ids, cfg.vllm_max_tokens, eot, tokenizer.pad_token_id)
            _say(progress, "loading the export in vLLM and generating greedily (a minute or two)")
            vl = verify.vllm_greedy(cfg.vllm_python or default_vllm_python(), tmp, canonical_dtype(cfg.dtype), prompt_ids,
                                    cfg.vllm_max_tokens, eot)
            vllm_check = verify.compare_greedy(tokenizer, cfg.check_prompts, hf, vl, eot)

        record = {
            "name": out.name,
            "run": str(info.path.resolve()),
            "base_model": info.record.base_model,
            "kind": info.record.kind,
            "method": info.record.method,
            "merged_adapter": info.is_adapter,
            "dtype": cfg.dtype,
            "chat_format": fmt.name,
            "end_of_turn_ids": eot,
            "logits_check": logits_check,
            "vllm_check": vllm_check,
        }
        (tmp / "README.md").write_text(render_card(info.record.model_dump(mode="json"), info.path, record, cfg.eval_reports), encoding="utf-8")
        (tmp / EXPORT_FILE).write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record
