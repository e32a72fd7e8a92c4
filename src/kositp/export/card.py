"""The model card (README.md) of an export: base model, data, training config, eval results, checks."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def training_config(run: Path) -> dict:
    try:
        data = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def data_card(config: dict, run: Path) -> dict | None:
    """card.json of the training data, found from config.yaml's `data` path (a build directory)."""
    data = config.get("data")
    if not isinstance(data, str):
        return None
    for base in (Path(data), run / data):
        for candidate in (base / "card.json", base.parent / "card.json"):
            if candidate.is_file():
                return _read_json(candidate)
    return None


def eval_reports(run: Path, extra: list[Path]) -> list[tuple[str, dict]]:
    found = [p for p in sorted(run.glob("eval*/report.json"))]
    found += [Path(p) / "report.json" if Path(p).is_dir() else Path(p) for p in extra]
    reports = []
    for path in found:
        report = _read_json(path)
        if report and isinstance(report.get("headline"), dict):
            reports.append((str(path.parent.name), report["headline"]))
    return reports


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_card(record: dict, run: Path, export_info: dict, extra_reports: list[Path]) -> str:
    config = training_config(run)
    card = data_card(config, run)
    base = record.get("base_model")
    front = {"library_name": "transformers", "language": ["ko"], "tags": ["kositp", "korean", record.get("kind")],
             "base_model": base if base not in ("tiny", "default") else
             ("google/gemma-3-270m" if base == "default" else None)}
    lines = ["---", yaml.safe_dump({k: v for k, v in front.items() if v}, allow_unicode=True).strip(), "---", "",
             f"# {export_info['name']}", "",
             f"Exported by kositp from the run `{run.name}`: {record.get('kind')} / {record.get('method')} on "
             f"`{base}`, {'LoRA merged into the unquantized base (never a 4-bit copy), ' if record.get('adapter') else ''}saved as "
             f"{export_info['dtype']} safetensors.", ""]
    if base == "default":
        lines += ["The base is google/gemma-3-270m (dequantized from Q4_K_M GGUF); the Gemma Terms of Use apply.", ""]
    lines += ["## Chat format", "",
              f"`{export_info['chat_format']}`; generation stops at token ids {export_info['end_of_turn_ids']} "
              "(listed in generation_config.json). The template is embedded in the tokenizer "
              "(`chat_template`) and recorded in kositp_chat.json.", ""]
    lines += ["## Training", "", *_table(["setting", "value"], [
        ["kind", record.get("kind")], ["method", record.get("method")], ["final step", record.get("final_step")],
        ["parent run", record.get("parent_run") or "-"]]), ""]
    if record.get("tasks"):  # RL: rewards need a checkable answer, so open-ended tasks are left out unless listed
        lines += [f"RL prompts came from the tasks {', '.join(record['tasks'])}; tasks not listed (by default the "
                  "open-ended ones: summaries, titles, long answers, completion, composition, expansion, paraphrase) "
                  "were not used, since their replies have no answer a reward can check.", ""]
    if config:
        lines += ["<details><summary>config.yaml</summary>", "", "```yaml",
                  yaml.safe_dump(config, allow_unicode=True, sort_keys=False).strip(), "```", "</details>", ""]
    lines += ["## Data", ""]
    if card:
        counts = card.get("counts", {})
        lines += [f"{counts.get('instructions', '?')} instruction records, {counts.get('preferences', 0)} "
                  f"preference records; splits: {card.get('splits', {})}.", ""]
        per_task = card.get("per_task") or {}
        if per_task:
            rows = [[t, v if not isinstance(v, dict) else sum(x for x in v.values() if isinstance(x, int))]
                    for t, v in per_task.items()]
            lines += _table(["task", "records"], rows) + [""]
    else:
        lines += ["No data card was found for the training data.", ""]
    reports = eval_reports(run, extra_reports)
    if reports:
        lines += ["## Evaluation", ""]
        keys = sorted({k for _, h in reports for k in h})
        lines += _table(["metric", *[n for n, _ in reports]],
                        [[k, *[h.get(k, "-") for _, h in reports]] for k in keys]) + [""]
    lines += ["## Verification", ""]
    logits = export_info["logits_check"]
    lines += [f"- Logits of the merged export vs base+adapter on {len(logits['prompts'])} Korean prompts: max |diff| "
              f"{logits['max_abs_diff']:.3g} (tolerance {logits['tolerance']:.3g}) - "
              f"{'passed' if logits['passed'] else 'FAILED'}."]
    vcheck = export_info.get("vllm_check")
    if vcheck:
        same = sum(r["identical"] for r in vcheck["prompts"])
        lines += [f"- vLLM greedy output vs transformers: {same}/{len(vcheck['prompts'])} prompts token-identical."]
    lines += ["", "## Use", "", "```bash", f"kositp serve --model ./{export_info['name']} --backend transformers",
              f"kositp serve --model ./{export_info['name']} --backend vllm   # needs `make vllm-env`",
              f"vllm serve ./{export_info['name']}   # plain vLLM reads the same template and stop ids", "```", ""]
    return "\n".join(lines)
