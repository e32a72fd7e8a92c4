"""Checks that the export behaves as trained: logits vs base+adapter, and vLLM vs transformers greedy."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from kositp.errors import KositpError

VLLM_SCRIPT = Path(__file__).with_name("vllm_greedy.py")


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    from kositp.chat import encode_prompt

    return [encode_prompt(tokenizer, [{"role": "user", "content": p}]) for p in prompts]


def reference_logits(reference, prompt_ids: list[list[int]]) -> list:
    """Logits of what training produced, taken before merging so the merge can happen in place."""
    import torch

    with torch.inference_mode():
        return [reference(input_ids=torch.tensor([ids])).logits.float() for ids in prompt_ids]


def compare_logits(ref_logits: list, candidate, prompt_ids: list[list[int]], dtype: str, atol: float | None) -> dict:
    """Max |logit difference| per prompt over every position, and whether the greedy next tokens agree."""
    import torch

    rows = []
    with torch.inference_mode():
        for ids, ref in zip(prompt_ids, ref_logits, strict=True):
            got = candidate(input_ids=torch.tensor([ids])).logits.float()
            rows.append({
                "tokens": len(ids),
                "max_abs_diff": float((ref - got).abs().max()),
                "logit_range": float(ref.max() - ref.min()),
                "argmax_agree": float((ref.argmax(-1) == got.argmax(-1)).float().mean()),
            })
    worst = max(r["max_abs_diff"] for r in rows)
    scale = max(r["logit_range"] for r in rows)
    tolerance = atol if atol is not None else (1e-3 if dtype == "fp32" else max(0.05 * scale, 1e-2))
    return {"dtype": dtype, "tolerance": tolerance, "max_abs_diff": worst, "passed": worst <= tolerance,
            "prompts": rows}


def transformers_greedy(model, prompt_ids: list[list[int]], max_tokens: int, eot: list[int], pad_id: int):
    import torch

    outputs = []
    with torch.inference_mode():
        for ids in prompt_ids:
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                                 do_sample=False, max_new_tokens=max_tokens, eos_token_id=eot, pad_token_id=pad_id)
            outputs.append(out[0, len(ids):].tolist())
    return outputs


def vllm_greedy(python: str, model_dir: Path, dtype: str, prompt_ids: list[list[int]], max_tokens: int,
                eot: list[int], timeout_s: float = 900) -> list[list[int]]:
    """Greedy token ids from vLLM itself (offline `LLM.generate`), run in the vLLM environment."""
    if not Path(python).is_file():
        raise KositpError(f"vLLM environment not found at {python}; run `make vllm-env` or set KOSITP_VLLM_PYTHON")
    with tempfile.TemporaryDirectory(prefix="kositp-vllm-check-") as tmp:
        request = Path(tmp) / "request.json"
        result = Path(tmp) / "result.json"
        request.write_text(json.dumps({"model": str(model_dir), "dtype": dtype, "prompts": prompt_ids,
                                       "max_tokens": max_tokens, "stop_token_ids": eot,
                                       "max_model_len": max(len(p) for p in prompt_ids) + max_tokens + 8}))
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
                   VLLM_CPU_NUM_OF_RESERVED_CPU=os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"),
                   VLLM_NO_USAGE_STATS="1", HF_HUB_OFFLINE="1")
        proc = subprocess.run([python, str(VLLM_SCRIPT), str(request), str(result)], env=env, capture_output=True,
                              text=True, timeout=timeout_s)
        if proc.returncode != 0 or not result.is_file():
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise KositpError(f"vLLM could not load or run the export (exit {proc.returncode}):\n{tail}")
        return json.loads(result.read_text())["outputs"]


def _until_eot(ids: list[int], eot: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in eot:
            return ids[:i]
    return ids


def compare_greedy(tokenizer, prompts: list[str], hf: list[list[int]], vllm: list[list[int]], eot: list[int]):
    """Token-identical per prompt, or the first divergence with both sides' token and text."""
    rows = []
    for prompt, a, b in zip(prompts, hf, vllm, strict=True):
        a, b = _until_eot(a, set(eot)), _until_eot(b, set(eot))
        row = {"prompt": prompt, "identical": a == b, "tokens": len(a)}
        if a != b:
            pos = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            row["first_divergence"] = {
                "position": pos,
                "transformers_token": a[pos] if pos < len(a) else None,
                "vllm_token": b[pos] if pos < len(b) else None,
                "common_prefix_text": tokenizer.decode(a[:pos]),
                "transformers_text": tokenizer.decode(a),
                "vllm_text": tokenizer.decode(b),
            }
        else:
            row["text"] = tokenizer.decode(a)
        rows.append(row)
    return {"passed": all(r["identical"] for r in rows), "prompts": rows}
