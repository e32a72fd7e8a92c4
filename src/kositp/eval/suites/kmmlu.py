"""Suite `kmmlu`: KMMLU (45 subjects, 35,030 test questions) two ways, both from shipped benchmark specs.

* `loglik` (recipe `benchmark/kmmlu`): lm-evaluation-harness's `kmmlu` task as the field runs it:
  the prompt `question / A. .. D. / 정답:`, each option letter scored as the continuation " A".." D",
  0-shot or k-shot from the dev split of the same subject. Reported: acc over all questions (the
  harness's micro average), acc per subject, the macro average over subjects (the KMMLU paper's
  figure) and acc per supercategory (STEM, Applied Science, HUMSS, Other).
* `generate` (recipe `benchmark/kmmlu_gen`): the question asked through the chat template, the
  option letter parsed from the reply. A reply naming no option (or several) is invalid and counts
  as wrong; the invalid rate is reported beside the accuracy, because a low generative score of an
  instruct model is often a parsing failure, not missing knowledge.

The CSVs are read by column name (the math files swap the last two columns).
"""

from __future__ import annotations

from pathlib import Path

from kositp.eval.suites import SuiteResult
from kositp.eval.suites.custom import load_spec, run_generative, run_multiple_choice

LOGLIK_SPEC = "benchmark/kmmlu"
GENERATE_SPEC = "benchmark/kmmlu_gen"


def run(root: Path, variants: list[str], generator, scorer, limit: int | None, seed: int, num_fewshot: int = 0,
        progress=None) -> SuiteResult:
    """`limit` is per subject (10 -> 450 questions), the same seeded sample for both variants."""
    per_task, examples, settings = {}, [], {"limit_per_subject": limit, "num_fewshot": num_fewshot, "specs": {}}
    if "loglik" in variants:
        spec, spec_dir = load_spec(LOGLIK_SPEC)
        spec = spec.model_copy(update={"num_fewshot": num_fewshot})
        result, found = run_multiple_choice(spec, spec_dir, root, scorer, limit, seed, progress, suite="kmmlu")
        per_task["loglik"] = result
        examples += [e | {"task": "loglik"} for e in found]
        settings["specs"]["loglik"] = spec.model_dump(mode="json")
    if "generate" in variants:
        spec, spec_dir = load_spec(GENERATE_SPEC)
        result, found = run_generative(spec, spec_dir, root, generator, limit, seed, progress, suite="kmmlu")
        per_task["generate"] = result
        examples += [e | {"task": "generate"} for e in found]
        settings["specs"]["generate"] = spec.model_dump(mode="json")
    settings["convention"] = "lm-evaluation-harness 0.4.13 kmmlu (loglik); chat + parsed letter (generate)"
    return SuiteResult("kmmlu", {"per_task": per_task}, examples, settings)
