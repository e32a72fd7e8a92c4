"""Data -> SFT -> DPO -> evaluation -> export, in Python, on kositp's tiny model.

Each call is the function the `kositp` command runs for that stage, and files on disk are all that
passes between stages: every folder under --out can be inspected, or handed to the CLI, afterwards.
With the tiny random model (the default) the whole script takes a few minutes on 2 CPU cores and
its scores are noise; it shows the wiring. For a real run use the embedded gemma-3-270m:
`--model default --sft-recipe sft/demo --dpo-recipe pref/demo-dpo` (about 25 minutes on 2 cores).

    python examples/sft_dpo_eval.py --out runs/example
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import kositp


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/example"), help="Folder for every stage.")
    parser.add_argument("--model", default="tiny", help="tiny, default (gemma-3-270m) or a model folder.")
    parser.add_argument("--sft-recipe", default="sft/tiny", help="SFT recipe name or YAML path.")
    parser.add_argument("--dpo-recipe", default="pref/tiny-dpo", help="Preference recipe name or YAML path.")
    parser.add_argument("--steps", type=int, default=16, help="Optimizer steps of SFT and of DPO.")
    parser.add_argument("--eval-limit", type=int, default=4, help="Held-out examples per task.")
    args = parser.parse_args(argv)
    out: Path = args.out

    # 1. Data: the bundled invented Korean samples, in every AIHub/KISTI layout, become the 22 tasks.
    #    The tokenizer drives the length filter, so it is the model we are about to train.
    data = kositp.build_data("data/demo", out=str(out / "data"), tokenizer=args.model)
    print(f"data: {data.card['counts']['written']} records in {data.out}")

    # 2. SFT with LoRA. Keyword overrides use the recipe's field names; a group given as a dict is
    #    merged into the recipe's group, so only max_steps changes here.
    sft_run = kositp.train_sft(args.sft_recipe, model=args.model, data=str(data.out), out=str(out / "sft"),
                               trainer={"max_steps": args.steps}, progress=False)
    print(f"SFT run: {sft_run}")

    # 3. Preference pairs: chosen = the gold answer, rejected = the SFT model's own wrong answer
    #    (or a rule-based negative where the model happened to be right).
    pairs = kositp.build_pairs(data.out, out / "pairs", model=sft_run, max_records=40, max_new_tokens=32,
                               batch_size=32, progress=False)
    print(f"pairs: {pairs['splits']['train']['pairs']} for training")

    # 4. DPO on top of the SFT run: it continues the SFT adapter, and a frozen copy is the reference.
    dpo_run = kositp.train_preference(args.dpo_recipe, model=args.model, sft_run=str(sft_run),
                                      data=str(out / "pairs"), out=str(out / "dpo"),
                                      trainer={"max_steps": args.steps}, progress=False)
    print(f"DPO run: {dpo_run}")

    # 5. The held-out task suite on the base model, the SFT run and the DPO run (greedy decoding).
    scores = {}
    for name, model in {"base": args.model, "sft": sft_run, "dpo": dpo_run}.items():
        report = kositp.evaluate(model=str(model), data=str(data.out), suites=["tasks"], limit=args.eval_limit,
                                 max_new_tokens=32, batch_size=32, out=str(out / "eval" / name),
                                 show_progress=False)
        scores[name] = report["headline"]["tasks/mean_primary"]
    print("mean primary score: " + ", ".join(f"{name} {value:.3f}" for name, value in scores.items()))

    # 6. Export the DPO model: LoRA merged into the base, chat template and end-of-turn ids written,
    #    logits checked against base+adapter. `kositp serve --model OUT/export` serves it.
    export = kositp.export_model(run=str(dpo_run), out=str(out / "export"), overwrite=True)
    print(f"export: {out / 'export'} (logits check passed: {export['logits_check']['passed']})")

    summary = {"records": data.card["counts"]["written"], "sft_run": str(sft_run), "dpo_run": str(dpo_run),
               "scores": scores, "export": str(out / "export")}
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary


if __name__ == "__main__":
    main()
