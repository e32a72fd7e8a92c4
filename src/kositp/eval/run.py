"""`evaluate(cfg)`: run the chosen suites against one model or API and write the report folder."""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from kositp.config import Config
from kositp.errors import KositpError

SuiteName = Literal["tasks", "seed4", "kobest", "kmmlu", "kite", "judge", "custom", "all"]
SUITE_ORDER = ("tasks", "seed4", "kobest", "kmmlu", "kite", "judge", "custom")
Seed4Name = Literal["nsmc", "kornli", "qpair", "hatespeech"]
KobestName = Literal["boolq", "copa", "hellaswag", "sentineg", "wic"]


class EvalConfig(Config):
    """Everything one evaluation run needs; `report.json` records it (minus the output folder)."""

    model: str | None = Field(None, description="Model to load in-process: `tiny`, `default`, an export dir, an HF "
                              "model dir, or a training RUN dir (base model + LoRA adapter).")
    api: str | None = Field(None, description="Base URL of an OpenAI-compatible API (e.g. http://127.0.0.1:8000/v1) "
                            "to evaluate instead of --model; generation suites only.")
    api_model: str | None = Field(None, description="Model name to request from the API (default: the first it lists).")
    api_key_env: str = Field("KOSITP_API_KEY", description="Environment variable holding the API key "
                             "(the key itself is never written to the report).")
    concurrency: int = Field(4, ge=1, le=256, description="Parallel API requests.")
    suites: list[SuiteName] = Field(["tasks"], min_length=1, description="Suites to run, in order.")
    data: Path | None = Field(None, description="Folder written by `kositp data build` (its test.jsonl), "
                              "or a .jsonl file; needed by the `tasks` suite.")
    benchmarks: Path | None = Field(None, description="Folder with the public benchmark files "
                                    "(default: $KOSITP_BENCHMARKS, else ../shared/data/benchmarks).")
    seed4_tasks: list[Seed4Name] = Field(["nsmc", "kornli", "qpair", "hatespeech"], min_length=1,
                                         description="Benchmarks of the seed4 suite.")
    seed4_files: dict[Seed4Name, str] = Field({}, description="Override a seed4 file, relative to --benchmarks "
                                               "(e.g. qpair: question_pair/kor_Pair_test.csv).")
    kobest_tasks: list[KobestName] = Field(["boolq", "copa", "hellaswag", "sentineg", "wic"], min_length=1,
                                           description="KoBEST tasks of the kobest suite.")
    kobest_split: Literal["test", "dev"] = Field("test", description="KoBEST split (lm-eval uses test).")
    kmmlu_variants: list[Literal["loglik", "generate"]] = Field(
        ["loglik", "generate"], min_length=1, description="KMMLU by log-likelihood of the option letters "
        "(lm-eval's kmmlu) and/or asked through the chat template with the letter parsed from the reply.")
    kmmlu_fewshot: int = Field(0, ge=0, le=5, description="Dev-split examples of the same subject before each "
                               "KMMLU question (log-likelihood variant; the field reports 0 and 5).")
    kite_parts: list[Literal["general", "korean"]] = Field(["general", "korean"], min_length=1,
                                                           description="KITE General (427) and/or KITE Korean (100).")
    kite_max_new_tokens: int = Field(512, ge=1, le=8192, description="Generation budget for KITE answers.")
    judge_url: str | None = Field(None, description="OpenAI-compatible base URL of the judge (suite judge).")
    judge_model: str | None = Field(None, description="Judge model name (default: the first the judge lists).")
    judge_key_file: Path | None = Field(None, description="File holding the judge's API key (else $judge_key_env).")
    judge_key_env: str = Field("KOSITP_JUDGE_KEY", description="Environment variable holding the judge's API key.")
    judge_sets: list[Literal["logickor", "komt"]] = Field(["logickor", "komt"], min_length=1,
                                                          description="Question sets of the judge suite.")
    judge_max_tokens: int = Field(1024, ge=1, le=8192, description="Token budget of one judgment.")
    benchmark_specs: list[str] = Field([], description="Your own benchmarks (suite custom): YAML files or shipped "
                                       "specs (benchmark/kmmlu, benchmark/nsmc ...); see docs/evaluation.md.")
    limit: int | None = Field(None, ge=1, le=10_000_000, description="At most N examples per task/benchmark "
                              "(a seeded sample, the same for every model).")
    seed: int = Field(0, description="Seed of the --limit samples (decoding is greedy, so nothing else is random).")
    max_new_tokens: int = Field(256, ge=1, le=8192, description="Generation budget for the tasks suite (with "
                                "task_budget=references, the cap of every task's own budget).")
    task_budget: Literal["references", "fixed"] = Field(
        "references", description="tasks suite: `references` gives each task its own budget, min(max_new_tokens, "
        "ceil(1.5 × its longest gold answer in the test split, in tokens) + 16); `fixed`: max_new_tokens for all.")
    label_max_new_tokens: int = Field(16, ge=1, le=1024, description="Generation budget for classification "
                                      "answers (seed4); a longer answer is cut and usually invalid.")
    batch_size: int = Field(8, ge=1, le=1024, description="In-process batch size (generation and scoring).")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="In-process weight dtype; `auto`: the checkpoint's on CUDA, on CPU the faster of "
        "float32 and bfloat16 (a timed probe cached per CPU; KOSITP_CPU_DTYPE pins it; kositp/cpu_dtype.py).")
    chat_format: Literal["auto", "chatml", "gemma"] = Field("auto", description="Chat format; auto = the one the "
                                                            "model was trained with (kositp_chat.json).")
    out: Path = Field(Path("eval-report"), description="Report folder (report.json, report.md, predictions.jsonl, "
                      "charts/, run_info.json, suites/ with one result per finished suite).")
    resume: bool = Field(False, description="Reuse the suites an earlier run with the same settings and model files "
                         "finished in out/suites/ (an interrupted evaluation continues); the others run.")

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if len(set(self.suites)) != len(self.suites):
            raise ValueError("a suite is listed twice")
        if "all" in self.suites and len(self.suites) > 1:
            raise ValueError("`all` runs every suite; give it alone")
        return self


def expand_all(cfg: EvalConfig) -> list[str]:
    """`--suite all`: every suite whose inputs are there (log-likelihood ones only with --model)."""
    from kositp.eval.benchmarks import benchmarks_root

    try:
        root = benchmarks_root(cfg.benchmarks)
    except KositpError:
        root = None
    found = {
        "tasks": cfg.data is not None,
        "seed4": root is not None and (root / "nsmc").is_dir(),
        "kobest": root is not None and (root / "kobest").is_dir() and bool(cfg.model),
        "kmmlu": root is not None and (root / "kmmlu").is_dir(),
        "kite": root is not None and (root / "kite").is_dir(),
        "judge": root is not None and (root / "komt_bench").is_dir() and cfg.judge_url is not None,
        "custom": bool(cfg.benchmark_specs),
    }
    return [s for s in SUITE_ORDER if found[s]]


def check_runnable(cfg: EvalConfig) -> None:
    """What a recipe may leave to the command line, but a run needs (the shipped eval recipes omit the model)."""
    if bool(cfg.model) == bool(cfg.api):
        raise KositpError("give exactly one of --model or --api")
    if cfg.api and "kmmlu" in cfg.suites and cfg.kmmlu_variants == ["loglik"]:
        raise KositpError("KMMLU by log-likelihood needs --model (with --api only kmmlu_variants=[generate] runs)")
    if "judge" in cfg.suites and not cfg.judge_url:
        raise KositpError("the judge suite needs --judge-url (an OpenAI-compatible endpoint) and usually --judge-model")
    if "custom" in cfg.suites and not cfg.benchmark_specs:
        raise KositpError("the custom suite needs --benchmark FILE.yaml (see docs/evaluation.md)")
    if "custom" in cfg.suites:
        from kositp.eval.suites.custom import load_spec

        for spec in cfg.benchmark_specs:
            load_spec(spec)  # a bad spec fails before the model loads
    if cfg.api and "kobest" in cfg.suites:
        raise KositpError("the kobest suite needs log-likelihoods: run it with --model (--api supports the "
                          "generation suites tasks and seed4)")
    if "tasks" in cfg.suites and cfg.data is None:
        raise KositpError("the tasks suite needs --data DIR (the output of `kositp data build`)")


class _Progress:
    """Progress per step, on stderr (a bar, or lines in a log file); suites call start() then advance()."""

    def __init__(self):
        from kositp.progress import StageProgress

        self.bar = StageProgress()
        self.task = None

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def start(self, description: str, total: int) -> None:
        self.task = self.bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)


def _config_record(cfg: EvalConfig) -> dict:
    return cfg.model_dump(mode="json", exclude={"out", "resume"})


def evaluate(cfg: EvalConfig, show_progress: bool = True) -> dict:
    """Run `cfg.suites` and write the report folder; returns report.json's content."""
    import os

    from kositp.eval.report import build_report, write_json, write_report
    from kositp.eval.suites import SuiteResult

    if cfg.suites == ["all"]:
        cfg = cfg.model_copy(update={"suites": expand_all(cfg)})
        if not cfg.suites:
            raise KositpError("--suite all found nothing to run (no --data, no benchmark folder)")
    check_runnable(cfg)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    loaded, dtype = None, None
    if cfg.model:
        from kositp.cpu_dtype import inference_dtype
        from kositp.eval.generate import LocalGenerator
        from kositp.eval.loading import load_for_eval

        t0 = time.perf_counter()
        dtype = inference_dtype(cfg.dtype)
        loaded = load_for_eval(cfg.model, dtype=dtype, chat_format=cfg.chat_format)
        timings["load_model_s"] = time.perf_counter() - t0
        generator = LocalGenerator(loaded, batch_size=cfg.batch_size)
    else:
        from kositp.eval.generate import ApiGenerator

        generator = ApiGenerator(cfg.api, cfg.api_model, os.environ.get(cfg.api_key_env, "EMPTY"),
                                 concurrency=cfg.concurrency, seed=cfg.seed)

    from kositp.eval import checkpoints

    settings = {k: v for k, v in _config_record(cfg).items() if k != "suites"}
    key = checkpoints.resume_key(settings, generator.describe(), cfg.model)
    results: list[SuiteResult] = []
    reused: list[str] = []
    progress = _Progress() if show_progress else None
    with progress if progress else _nullcontext():
        for suite in cfg.suites:
            kept = checkpoints.load(cfg.out, suite, key) if cfg.resume else None
            if kept is not None:
                if suite == "tasks":  # aggregated again, so a suite saved by an earlier version gains newer summaries
                    from kositp.eval.suites import tasks

                    kept[0].metrics = tasks.aggregate(kept[0].examples)
                results.append(kept[0])
                timings[f"{suite}_s"] = kept[1]
                reused.append(suite)
                continue
            t0 = time.perf_counter()
            results.append(_run_suite(suite, cfg, generator, loaded, progress))
            timings[f"{suite}_s"] = time.perf_counter() - t0
            checkpoints.save(cfg.out, suite, key, results[-1], timings[f"{suite}_s"])
            if progress is None:  # no bars, but a long quiet run still says which suites are done
                print(f"{suite}: {len(results[-1].examples)} examples in {timings[f'{suite}_s']:.0f} s",
                      file=sys.stderr, flush=True)

    decoding = {"strategy": "greedy", "temperature": 0.0, "max_new_tokens": cfg.max_new_tokens,
                "task_budget": cfg.task_budget,
                "label_max_new_tokens": cfg.label_max_new_tokens, "stop": "end-of-turn tokens of the chat format",
                "batch_size": cfg.batch_size if cfg.model else None, "dtype": dtype if cfg.model else None}
    if loaded is not None:
        decoding["stop_token_ids"] = loaded.stop_ids
    report = build_report(generator.describe(), decoding, _config_record(cfg), results)
    files = write_report(cfg.out, report, results)
    timings["total_s"] = time.perf_counter() - started
    n_generated = sum(len(r.examples) for r in results)
    write_json(cfg.out / "run_info.json", {
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "examples": n_generated,
        "reused_suites": reused,  # results taken from suites/ (resume=true), their seconds from the run that made them
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "versions": _versions(),
        "files": files,
    })
    return report


def _run_suite(suite: str, cfg: EvalConfig, generator, loaded, progress):
    from kositp.eval.benchmarks import benchmarks_root

    if suite == "tasks":
        from kositp.eval.suites import tasks

        return tasks.run(generator, cfg.data, cfg.limit, cfg.seed, cfg.max_new_tokens, progress, cfg.task_budget)
    if suite == "seed4":
        from kositp.eval.suites import seed4

        return seed4.run(generator, benchmarks_root(cfg.benchmarks), list(cfg.seed4_tasks), cfg.limit, cfg.seed,
                         cfg.label_max_new_tokens, progress, paths=dict(cfg.seed4_files))
    if suite == "kobest":
        from kositp.eval.suites import kobest

        return kobest.run(_scorer(cfg, loaded), benchmarks_root(cfg.benchmarks), list(cfg.kobest_tasks), cfg.limit, cfg.seed,
                          cfg.kobest_split, progress)
    if suite == "kmmlu":
        from kositp.eval.suites import kmmlu

        variants = [v for v in cfg.kmmlu_variants if v != "loglik" or loaded is not None]
        return kmmlu.run(benchmarks_root(cfg.benchmarks), variants, generator, _scorer(cfg, loaded), cfg.limit,
                         cfg.seed, cfg.kmmlu_fewshot, progress)
    if suite == "kite":
        from kositp.eval.suites import kite

        return kite.run(generator, benchmarks_root(cfg.benchmarks), list(cfg.kite_parts), cfg.limit, cfg.seed,
                        cfg.kite_max_new_tokens, progress)
    if suite == "judge":
        from kositp.eval.suites import judge

        return judge.run(generator, _judge(cfg), benchmarks_root(cfg.benchmarks), list(cfg.judge_sets), cfg.limit,
                         cfg.seed, cfg.max_new_tokens, progress)
    if suite == "custom":
        from kositp.eval.suites import custom

        root = benchmarks_root(cfg.benchmarks) if (cfg.benchmarks or _default_root_exists()) else None
        return custom.run(cfg.benchmark_specs, root, generator, _scorer(cfg, loaded), cfg.limit, cfg.seed, progress)
    raise KositpError(f"unknown suite {suite}")


def _scorer(cfg: EvalConfig, loaded):
    if loaded is None:
        return None
    from kositp.eval import loglik

    def scorer(requests, advance):
        return loglik.score(loaded.model, loaded.tokenizer, requests, batch_size=cfg.batch_size, progress=advance)

    return scorer


def _default_root_exists() -> bool:
    from kositp.eval.benchmarks import benchmarks_root

    try:
        benchmarks_root(None)
    except KositpError:
        return False
    return True


def _judge(cfg: EvalConfig):
    import os

    from kositp.eval.suites.judge import Judge, JudgeCache
    from kositp.models import kositp_home

    if cfg.judge_key_file is not None:
        try:
            key = cfg.judge_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KositpError(f"cannot read the judge key file {cfg.judge_key_file}: {exc.strerror}") from None
    else:
        key = os.environ.get(cfg.judge_key_env, "EMPTY")
    cache = JudgeCache(kositp_home() / "judge-cache.jsonl")
    return Judge(cfg.judge_url, cfg.judge_model, key or "EMPTY", cache, cfg.judge_max_tokens, cfg.concurrency)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("kositp", "torch", "transformers", "peft", "kiwipiepy", "rouge-score", "sacrebleu", "openai"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def load_report(directory: str | Path) -> dict:
    path = Path(directory) / "report.json"
    if not path.is_file():
        raise KositpError(f"no report.json in {directory}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KositpError(f"{path} is not valid JSON: {exc}") from None
