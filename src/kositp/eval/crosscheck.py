"""Cross-check the kobest suite against lm-evaluation-harness itself, on the same local files.

lm-eval runs in its own virtual environment (it pins its own dependencies), so this module only
prepares its inputs and reads its outputs:
1. write the exact KoBEST examples the kobest suite scores (same seeded sample) as JSONL, with the
   hub dataset's field names, plus task YAMLs that `include` lm-eval's own kobest_*.yaml and only
   swap the dataset for those local files;
2. run `lm_eval --include_path ...` from that environment;
3. compare its acc / f1 with ours.

    python -m kositp.eval.crosscheck --model DIR --lmeval-python .venv-lmeval/bin/python --limit 100 --out DIR
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF model directory (both tools load it)")
    parser.add_argument("--lmeval-python", required=True, help="python of the environment with lm-eval installed")
    parser.add_argument("--benchmarks", default=None)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    find = subprocess.run([args.lmeval_python, "-c", "import lm_eval, pathlib; print(pathlib.Path(lm_eval.__file__)"
                           ".parent / 'tasks' / 'kobest')"], capture_output=True, text=True, check=True)
    tasks = prepare(benchmarks_root(args.benchmarks), out / "lmeval_tasks", args.limit, args.seed,
                    Path(find.stdout.strip()))
    subprocess.run([str(Path(args.lmeval_python).parent / "lm_eval"), "--model", "hf", "--model_args",
                    f"pretrained={args.model},dtype=float32", "--include_path", str(out / "lmeval_tasks"),
                    "--tasks", ",".join(tasks), "--batch_size", str(args.batch_size), "--device", "cpu",
                    "--output_path", str(out / "lmeval_out")], check=True)
    ours_dir = out / "kositp"
    subprocess.run([sys.executable, "-m", "kositp.cli", "eval", "--model", args.model, "--suite", "kobest",
                    "--limit", str(args.limit), "--seed", str(args.seed), "--batch-size", str(args.batch_size),
                    "--out", str(ours_dir), "--quiet"] + (["--benchmarks", args.benchmarks] if args.benchmarks else []),
                   check=True)
    theirs_file = sorted((out / "lmeval_out").rglob("results_*.json"))[-1]
    theirs = json.loads(theirs_file.read_text(encoding="utf-8"))["results"]
    ours = json.loads((ours_dir / "report.json").read_text(encoding="utf-8"))["suites"]["kobest"]["metrics"]["per_task"]
    rows = {}
    for name in TASK_NAMES:
        t = theirs[f"local_kobest_{name}"]
        rows[name] = {"n": ours[name]["n"], "acc_kositp": ours[name]["acc"], "acc_lmeval": t["acc,none"],
                      "f1_kositp": ours[name]["f1"], "f1_lmeval": t["f1,none"],
                      "acc_diff_points": round(100 * (ours[name]["acc"] - t["acc,none"]), 3)}
    (out / "crosscheck.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(rows, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
