"""Cross-check the kobest and kmmlu suites against lm-evaluation-harness itself, on the same local files.

lm-eval runs in its own virtual environment (it pins its own dependencies), so this module only
prepares its inputs and reads its outputs:
1. write the exact examples the suite scores (same seeded sample) as JSONL, with the hub dataset's
   field names, plus task YAMLs that `include` lm-eval's own kobest_*.yaml / kmmlu default YAML and
   only swap the dataset for those local files;
2. run `lm_eval --include_path ...` from that environment;
3. compare its acc (and f1) with ours, and for KMMLU each question's verdict.

    python -m kositp.eval.crosscheck --model DIR --lmeval-python .venv-lmeval/bin/python --limit 100 --out DIR
    python -m kositp.eval.crosscheck --suite kmmlu --limit 12 ...   # 12 per subject: 540 questions
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from kositp.eval.benchmarks import benchmarks_root, sample
from kositp.eval.suites.kobest import KOBEST, TASK_NAMES, load


def prepare(root: Path, out: Path, limit: int | None, seed: int, lmeval_tasks_dir: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name in TASK_NAMES:
        docs = sample(load(KOBEST[name], root, "test"), limit, seed, f"kobest-{name}")
        data = out / f"{name}.jsonl"
        with data.open("w", encoding="utf-8") as handle:
            for doc in docs:
                handle.write(json.dumps({k: v for k, v in doc.items() if k != "id"}, ensure_ascii=False) + "\n")
        task = f"local_kobest_{name}"
        (out / f"{task}.yaml").write_text(
            f"include: {lmeval_tasks_dir / f'kobest_{name}.yaml'}\n"
            f"task: {task}\n"
            "dataset_path: json\n"
            "dataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
            "training_split: null\nvalidation_split: null\ntest_split: test\n",
            encoding="utf-8",
        )
        names.append(task)
    return names


def prepare_kmmlu(root: Path, out: Path, limit: int | None, seed: int, lmeval_tasks_dir: Path) -> list[str]:
    """One local task over the kmmlu suite's seeded sample, with lm-eval's kmmlu prompt and target."""
    from kositp.eval.suites.custom import load_items, load_spec
    from kositp.eval.suites.kmmlu import LOGLIK_SPEC

    out.mkdir(parents=True, exist_ok=True)
    spec, spec_dir = load_spec(LOGLIK_SPEC)
    items, _ = load_items(spec, spec_dir, root, limit, seed)
    data = out / "kmmlu.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for item in items:
            record = {k: item["record"][k] for k in ("question", "A", "B", "C", "D", "Category")}
            handle.write(json.dumps(record | {"answer": item["gold"] + 1}, ensure_ascii=False) + "\n")
    (out / "local_kmmlu.yaml").write_text(
        f"include: {lmeval_tasks_dir / 'default' / '_default_kmmlu_yaml'}\n"
        "task: local_kmmlu\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "training_split: null\nvalidation_split: null\nfewshot_split: null\ntest_split: test\n",
        encoding="utf-8",
    )
    return ["local_kmmlu"]


def compare_kmmlu(out: Path, ours_dir: Path) -> dict:
    theirs_file = sorted((out / "lmeval_out").rglob("results_*.json"))[-1]
    theirs = json.loads(theirs_file.read_text(encoding="utf-8"))["results"]["local_kmmlu"]
    ours = json.loads((ours_dir / "report.json").read_text(encoding="utf-8"))["suites"]["kmmlu"]["metrics"]
    ours_rows = [json.loads(line) for line in (ours_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    ours_correct = [row["scores"]["correct"] for row in ours_rows if row["task"] == "loglik"]
    samples_file = sorted((out / "lmeval_out").rglob("samples_local_kmmlu_*.jsonl"))[-1]
    samples = sorted((json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines()),
                     key=lambda s: s["doc_id"])
    theirs_correct = [float(s["acc"]) for s in samples]
    acc = ours["per_task"]["loglik"]["acc"]
    return {"n": len(ours_correct), "acc_kositp": acc, "acc_lmeval": theirs["acc,none"],
            "acc_diff_points": round(100 * (acc - theirs["acc,none"]), 3),
            "macro_acc_kositp": ours["per_task"]["loglik"]["macro_acc"],
            "same_verdict": sum(a == b for a, b in zip(ours_correct, theirs_correct, strict=True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["kobest", "kmmlu"], default="kobest")
    parser.add_argument("--model", required=True, help="HF model directory (both tools load it)")
    parser.add_argument("--lmeval-python", required=True, help="python of the environment with lm-eval installed")
    parser.add_argument("--benchmarks", default=None)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", required=True)
    parser.add_argument("--compare-only", action="store_true", help="compare the outputs already in --out "
                        "(both runs finished earlier, e.g. run separately on a loaded machine)")
    args = parser.parse_args()
    out = Path(args.out)
    if args.compare_only:
        rows = compare_kmmlu(out, out / "kositp") if args.suite == "kmmlu" else compare_kobest(out, out / "kositp")
        (out / "crosscheck.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    kmmlu = args.suite == "kmmlu"
    find = subprocess.run([args.lmeval_python, "-c", "import lm_eval, pathlib; print(pathlib.Path(lm_eval.__file__)"
                           f".parent / 'tasks' / '{args.suite}')"], capture_output=True, text=True, check=True)
    tasks = (prepare_kmmlu if kmmlu else prepare)(benchmarks_root(args.benchmarks), out / "lmeval_tasks", args.limit, args.seed,
                    Path(find.stdout.strip()))
    subprocess.run([str(Path(args.lmeval_python).parent / "lm_eval"), "--model", "hf", "--model_args",
                    f"pretrained={args.model},dtype=float32", "--include_path", str(out / "lmeval_tasks"),
                    "--tasks", ",".join(tasks), "--batch_size", str(args.batch_size), "--device", "cpu",
                    "--output_path", str(out / "lmeval_out")] + (["--log_samples"] if kmmlu else []), check=True)
    ours_dir = out / "kositp"
    subprocess.run([sys.executable, "-m", "kositp.cli", "eval", "--model", args.model, "--suite", args.suite,
                    "--limit", str(args.limit), "--seed", str(args.seed), "--batch-size", str(args.batch_size),
                    "--out", str(ours_dir), "--quiet"] + (["--benchmarks", args.benchmarks] if args.benchmarks else [])
                   + (["--set", "kmmlu_variants=[loglik]"] if kmmlu else []), check=True)
    rows = compare_kmmlu(out, ours_dir) if kmmlu else compare_kobest(out, ours_dir)
    (out / "crosscheck.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(rows, indent=2, ensure_ascii=False))


def compare_kobest(out: Path, ours_dir: Path) -> dict:
    theirs_file = sorted((out / "lmeval_out").rglob("results_*.json"))[-1]
    theirs = json.loads(theirs_file.read_text(encoding="utf-8"))["results"]
    ours = json.loads((ours_dir / "report.json").read_text(encoding="utf-8"))["suites"]["kobest"]["metrics"]["per_task"]
    rows = {}
    for name in TASK_NAMES:
        t = theirs[f"local_kobest_{name}"]
        rows[name] = {"n": ours[name]["n"], "acc_kositp": ours[name]["acc"], "acc_lmeval": t["acc,none"],
                      "f1_kositp": ours[name]["f1"], "f1_lmeval": t["f1,none"],
                      "acc_diff_points": round(100 * (ours[name]["acc"] - t["acc,none"]), 3)}
    return rows


if __name__ == "__main__":
    main()
