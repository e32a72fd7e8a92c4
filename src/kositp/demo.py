"""`kositp demo`: the whole pipeline on the embedded Korean model, offline, stage by stage.

data build -> SFT (LoRA) -> task-grounded preference pairs -> DPO -> [GRPO with `rl=True`] -> eval
base/SFT/DPO[/GRPO] -> export -> serve + chat page. Each stage writes into its own folder under `out/` together with a stage
record holding a key: the hash of the stage's settings and of the keys of the stages it reads.
A re-run reuses every stage whose key is unchanged (`fresh=True` redoes everything), so a demo
interrupted in the middle resumes where it stopped.

Each stage runs in a child Python process (`call_in_child`): the models a stage loads go back to
the OS when it ends, so the demo process itself never imports torch and stays small while it
serves, beside the API server it starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

import kositp
from kositp.config import Config, load_config
from kositp.errors import KositpError

STAGE_RECORD = ".kositp-stage.json"
PRIMARY_METRIC = "tasks/mean_primary"
# Generation batch of the pairs and eval stages: the 25 test prompts in one batch (fewer, wider forward
# passes than several small batches, with the same greedy outputs).
EVAL_BATCH_SIZE = 32


class DemoConfig(Config):
    """Settings of `kositp demo`; the stage recipes themselves are shipped YAML recipes (kositp/recipes/)."""

    quick: bool = Field(False, description="Tiny random model and short recipes: a smoke run of every stage.")
    out: Path = Field(Path("runs/demo"), description="Folder for every stage's output.")
    model: str | None = Field(None, description="Base model (default: `default`, or `tiny` with quick).")
    benchmarks: Path | None = Field(None, description="Korean benchmark folder for the seed4 and kobest suites; "
                                    "default: $KOSITP_BENCHMARKS or ../shared/data/benchmarks when present.")
    eval_limit: int | None = Field(None, ge=1, description="Examples per task/benchmark in evaluation "
                                   "(default: 16, or 4 with quick).")
    fresh: bool = Field(False, description="Redo every stage even when its key is unchanged.")
    rl: bool = Field(False, description="Add a GRPO stage on the SFT run after DPO (recipe rl/demo-grpo; quick: "
                     "rl/tiny-grpo) and its evaluation beside the others. Off by default: on 2 CPU cores its 30 "
                     "steps take about as long as the rest of the demo (docs/training.md).")
    serve: bool = Field(True, description="Start the API and the chat page at the end and wait for Ctrl-C.")
    host: str = Field("127.0.0.1", description="Address for the API and the chat page.")
    api_port: int = Field(8000, ge=1, le=65535, description="API port.")
    ui_port: int = Field(8001, ge=1, le=65535, description="Chat page port.")


def default_benchmarks() -> Path | None:
    import os

    candidates = [os.environ.get("KOSITP_BENCHMARKS"), Path(kositp.__file__).resolve().parents[3] / "shared" /
                  "data" / "benchmarks"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def tree_digest(path: Path) -> str:
    """Content hash of a file or folder (names and bytes), so changed inputs invalidate a stage."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path.parent if path.is_file() else path)).encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


@dataclass
class Stage:
    """One step of the demo: a folder, the settings that define it, and the function that fills it."""

    name: str
    title: str
    settings: dict[str, Any]
    run: Callable[[Path], dict[str, Any]]
    needs: list[str] = field(default_factory=list)


@dataclass
class StageOutcome:
    name: str
    reused: bool
    seconds: float
    summary: dict[str, Any]


class DemoRunner:
    """Runs stages in order, reusing those whose key matches the record left by an earlier run."""

    def __init__(self, out: Path, fresh: bool, console):
        self.out = out
        self.fresh = fresh
        self.console = console
        self.keys: dict[str, str] = {}
        self.outcomes: list[StageOutcome] = []

    def run(self, stage: Stage, index: int, total: int) -> StageOutcome:
        key = _digest({"settings": stage.settings, "needs": [self.keys[n] for n in stage.needs],
                       "version": kositp.__version__})
        folder = self.out / stage.name
        record_path = folder / STAGE_RECORD
        self.console.rule(f"[bold]{index}/{total} {stage.title}")
        if not self.fresh and record_path.is_file():
            record = json.loads(record_path.read_text(encoding="utf-8"))
            if record.get("key") == key:
                self.keys[stage.name] = key
                self.console.print(f"reused {folder} (unchanged settings and inputs)")
                outcome = StageOutcome(stage.name, True, 0.0, record.get("summary", {}))
                self.outcomes.append(outcome)
                return outcome
        if folder.exists():
            shutil.rmtree(folder)  # a stale or half-finished stage: start it again from scratch
        folder.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        summary = stage.run(folder)
        seconds = time.perf_counter() - started
        folder.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps({"key": key, "summary": summary, "seconds": round(seconds, 1)},
                                          ensure_ascii=False, indent=2), encoding="utf-8")
        self.keys[stage.name] = key
        self.console.print(f"done in {seconds:.0f}s -> {folder}")
        outcome = StageOutcome(stage.name, False, seconds, summary)
        self.outcomes.append(outcome)
        return outcome


def _stage_recipes(cfg: DemoConfig) -> dict[str, str]:
    """The shipped recipe (a name under kositp/recipes/) behind each training stage."""
    if cfg.quick:
        return {"data": "data/demo", "sft": "sft/tiny", "pref": "pref/tiny-dpo", "rl": "rl/tiny-grpo"}
    return {"data": "data/demo", "sft": "sft/demo", "pref": "pref/demo-dpo", "rl": "rl/demo-grpo"}


def build_stages(cfg: DemoConfig) -> list[Stage]:
    from kositp.data.build import BuildConfig
    from kositp.eval.run import EvalConfig
    from kositp.export.config import ExportConfig
    from kositp.export.run import export
    from kositp.train.pairs import MIN_GAP, build_pairs
    from kositp.train.pref import PrefConfig, train_pref
    from kositp.train.rl import RLConfig, train_rl
    from kositp.train.sft import SFTConfig, train_sft

    out = cfg.out
    model = cfg.model or ("tiny" if cfg.quick else "default")
    recipes = _stage_recipes(cfg)
    limit = cfg.eval_limit or (4 if cfg.quick else 16)
    benchmarks = cfg.benchmarks or default_benchmarks()
    suites = ["tasks"] + (["seed4", "kobest"] if benchmarks else [])

    data_cfg = load_config(BuildConfig, recipes["data"], [f"tokenizer={model}"])
    sft_cfg = load_config(SFTConfig, recipes["sft"], [f"model={model}"])
    sft_cfg.data = str(out / "data")
    sft_cfg.out = str(out / "sft")
    pairs_args = {"data": str(out / "data"), "out": str(out / "pairs"), "model": str(out / "sft"),
                  "max_records": 40, "max_new_tokens": 32 if cfg.quick else 48, "batch_size": EVAL_BATCH_SIZE,
                  "min_gap": MIN_GAP}  # part of the stage key: another filter setting rebuilds the pairs
    pref_cfg = load_config(PrefConfig, recipes["pref"])
    pref_cfg.sft_run = str(out / "sft")
    pref_cfg.data = str(out / "pairs")
    pref_cfg.out = str(out / "dpo")
    rl_cfg = load_config(RLConfig, recipes["rl"])
    rl_cfg.model = None  # the SFT run's base
    rl_cfg.sft_run = str(out / "sft")
    rl_cfg.data = str(out / "data")
    rl_cfg.out = str(out / "grpo")

    def eval_cfg(target: str, folder: Path) -> EvalConfig:
        return EvalConfig(model=target, suites=suites, data=out / "data", benchmarks=benchmarks, limit=limit,
                          out=folder, max_new_tokens=96 if not cfg.quick else 32, batch_size=EVAL_BATCH_SIZE)

    def run_data(folder: Path) -> dict:
        return call_in_child(data_stage, data_cfg, folder)

    def run_sft(folder: Path) -> dict:
        return call_in_child(training_stage, train_sft, sft_cfg, folder)

    def run_pairs(folder: Path) -> dict:
        return call_in_child(build_pairs, **pairs_args)

    def run_pref(folder: Path) -> dict:
        return call_in_child(training_stage, train_pref, pref_cfg, folder)

    def run_rl(folder: Path) -> dict:
        return call_in_child(training_stage, train_rl, rl_cfg, folder)

    def eval_stage(name: str, title: str, target: str, needs: list[str]) -> Stage:
        settings = eval_cfg(target, out / "eval" / name)

        def _run(folder: Path) -> dict:
            return call_in_child(evaluation_stage, settings)

        return Stage(f"eval/{name}", title, {"eval": settings.model_dump(mode="json")}, _run, needs)

    def run_export(folder: Path) -> dict:
        return call_in_child(export, ExportConfig(run=str(out / "dpo"), out=str(folder)))

    sample_digest = tree_digest(Path(kositp.__file__).parent / "resources" / "samples")
    rl_stages = [
        Stage("grpo", "Reinforce the SFT model with GRPO (rewards: the tasks' own metrics)",
              {"recipe": rl_cfg.model_dump(mode="json")}, run_rl, ["data", "sft"]),
        eval_stage("grpo", "Evaluate the GRPO model", str(out / "grpo"), ["data", "grpo"]),
    ] if cfg.rl else []
    stages = [
        Stage("data", "Build the 22-task Korean instruction data from the bundled samples",
              {"recipe": data_cfg.model_dump(mode="json"), "samples": sample_digest}, run_data),
        Stage("sft", f"Fine-tune {model} with LoRA (SFT)", {"recipe": sft_cfg.model_dump(mode="json")}, run_sft,
              ["data"]),
        Stage("pairs", "Build task-grounded preference pairs from the SFT model's own mistakes",
              pairs_args, run_pairs, ["data", "sft"]),
        Stage("dpo", "Align the SFT model with DPO", {"recipe": pref_cfg.model_dump(mode="json")}, run_pref,
              ["sft", "pairs"]),
        eval_stage("base", f"Evaluate the base model ({', '.join(suites)})", model, ["data"]),
        eval_stage("sft", "Evaluate the SFT model", str(out / "sft"), ["data", "sft"]),
        eval_stage("dpo", "Evaluate the DPO model", str(out / "dpo"), ["data", "dpo"]),
        Stage("export", "Export the DPO model for vLLM (merged safetensors + chat template)", {}, run_export,
              ["dpo"]),
    ]
    return stages[:-1] + rl_stages + stages[-1:]


# ------------------------------------------------------------------------------ stages in child processes


def data_stage(cfg, folder: Path) -> dict:
    from kositp.data.build import build

    result = build(cfg, folder)
    return {"counts": result.card["counts"]} if hasattr(result, "card") else {}


def training_stage(train, cfg, folder: Path) -> dict:
    train(cfg)
    return _run_summary(folder)


def evaluation_stage(cfg) -> dict:
    from kositp.eval.run import evaluate

    report = evaluate(cfg)
    return {"headline": {k: v for k, v in report["headline"].items() if k.count("/") == 1}}


def _child_main(result_file: str, fn, args, kwargs) -> None:
    """The child's side of `call_in_child`: run, and leave the outcome as JSON in `result_file`."""
    try:
        outcome = {"result": fn(*args, **kwargs)}
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group; the parent reports it
        sys.exit(130)
    except KositpError as exc:
        outcome = {"error": str(exc), "exit_code": exc.exit_code}
    Path(result_file).write_text(json.dumps(outcome, ensure_ascii=False, default=str), encoding="utf-8")


def call_in_child(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` in a fresh Python process (multiprocessing spawn); returns its JSON-able result.

    Everything the call loads (models, tokenizers, allocator arenas) leaves with the child. A
    KositpError in the child is raised again here with its message; any other failure has printed
    its traceback in the child and becomes one line naming the function.
    """
    import multiprocessing
    import tempfile

    fd, result_file = tempfile.mkstemp(prefix="kositp-stage-", suffix=".json")
    os.close(fd)
    try:
        child = multiprocessing.get_context("spawn").Process(target=_child_main,
                                                              args=(result_file, fn, args, kwargs))
        child.start()
        try:
            child.join()
        except KeyboardInterrupt:
            child.terminate()
            child.join()
            raise
        text = Path(result_file).read_text(encoding="utf-8")
    finally:
        Path(result_file).unlink(missing_ok=True)
    if child.exitcode == 130:
        raise KeyboardInterrupt
    if child.exitcode != 0 or not text:
        raise KositpError(f"{fn.__name__} failed in its child process (exit code {child.exitcode}); "
                          "see its output above")
    outcome = json.loads(text)
    if "error" in outcome:
        error = KositpError(outcome["error"])
        error.exit_code = outcome["exit_code"]
        raise error
    return outcome["result"]


def _run_summary(folder: Path) -> dict:
    run_json = folder / "run.json"
    return json.loads(run_json.read_text(encoding="utf-8")) if run_json.is_file() else {}


def comparison_table(out: Path, runs: tuple[str, ...] = ("base", "sft", "dpo")) -> tuple[str, dict]:
    """Base vs SFT vs DPO (vs GRPO), as Markdown, from their eval reports."""
    from kositp.eval.compare import compare

    result = compare([out / "eval" / name for name in runs], out / "eval" / "compare")
    table_md = (out / "eval" / "compare" / "comparison.md").read_text(encoding="utf-8")
    return table_md, result


SUMMARY_KEYS = {"tasks/mean_primary": "mean primary metric", "tasks/valid_rate": "valid-format rate",
                "tasks/checkable/mean_primary": "mean primary, tasks with a checkable answer"}
SUMMARY_PAIRS = (("sft", "base"), ("dpo", "sft"))


def paired_stat(comparison: dict, run: str, versus: str, key: str) -> dict | None:
    for found in comparison["paired_bootstrap"]["comparisons"]:
        if (found["run"], found["versus"]) == (run, versus):
            return found["statistics"].get(key)
    return None


def summary_table(comparison: dict) -> str:
    """The demo's headline: each model's held-out score with its 95% interval and the sample size, and the paired
    intervals of SFT − base and DPO − SFT beside it; below, how the benchmark differences came out."""
    from kositp.eval.bootstrap import difference_text
    from kositp.eval.report import interval_text

    runs = [r["name"] for r in comparison["runs"]]
    n = max((v for v in comparison["suite_sizes"].get("tasks", {}).values() if v), default=0)
    tasks = len({k.split("/")[1] for k in comparison["metrics"] if k.startswith("tasks/") and k.count("/") == 2})
    pairs = [(a, b) for a, b in SUMMARY_PAIRS if a in runs and b in runs]
    lines = [f"Held-out task suite: **n = {n} test records over {tasks} tasks**. Values: the score with its 95% "
             "bootstrap interval; differences: paired on the same records, **bold** with ↑/↓ where the interval "
             "excludes zero. Where an interval spans zero the runs cannot be told apart at this sample size.", "",
             "| metric | " + " | ".join(runs) + " | " + " | ".join(f"{a} − {b}" for a, b in pairs) + " |",
             "|---|" + "---|" * (len(runs) + len(pairs))]
    for key, label in SUMMARY_KEYS.items():
        values = comparison["metrics"].get(key, {})
        cells = [interval_text(values.get(r), comparison["intervals"].get(key, {}).get(r),
                               comparison["sample_sizes"].get(key, {}).get(r), 3) if values else "–" for r in runs]
        cells += [difference_text(paired_stat(comparison, a, b, key), 3) for a, b in pairs]
        lines.append(f"| {label} (`{key}`) | " + " | ".join(cells) + " |")
    benchmark_lines = []
    for suite in ("seed4", "kobest"):
        sizes = {k: v for k, v in comparison["sample_sizes"].items() if k.startswith(suite + "/")}
        if not sizes:
            continue
        per = sorted({n for v in sizes.values() for n in v.values() if n})
        found = [(a, b, k, paired_stat(comparison, a, b, k)) for a, b in pairs for k in sizes]
        clear = [f"{k} {a} − {b} {s['difference']:+.3f}" for a, b, k, s in found if s and s["excludes_zero"]]
        benchmark_lines.append(f"- {suite}: {'/'.join(map(str, per))} examples per benchmark; paired differences "
                               f"that exclude zero: {', '.join(clear) if clear else 'none'}.")
    if benchmark_lines:
        lines += ["", *benchmark_lines]
    return "\n".join(lines) + "\n"


def run_demo(cfg: DemoConfig, console=None) -> dict:
    """Run every stage; returns the summary written to out/demo.json."""
    from rich.console import Console

    console = console or Console()
    cfg.out.mkdir(parents=True, exist_ok=True)
    stages = build_stages(cfg)
    if not (cfg.benchmarks or default_benchmarks()):
        console.print("no Korean benchmark folder (--benchmarks, or $KOSITP_BENCHMARKS naming a folder): "
                      "evaluating the held-out task suite only, without seed4 and kobest")
    runner = DemoRunner(cfg.out, cfg.fresh, console)
    started = time.perf_counter()
    for index, stage in enumerate(stages, 1):
        runner.run(stage, index, len(stages))
    runs = ("base", "sft", "dpo", "grpo") if cfg.rl else ("base", "sft", "dpo")
    table_md, comparison = comparison_table(cfg.out, runs)
    headline_md = summary_table(comparison)
    metrics = comparison["metrics"].get(PRIMARY_METRIC, {})
    base, sft, dpo = (metrics.get(n) for n in ("base", "sft", "dpo"))
    sft_gain = paired_stat(comparison, "sft", "base", PRIMARY_METRIC)
    summary = {
        "model": cfg.model or ("tiny" if cfg.quick else "default"),
        "quick": cfg.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "stages": [{"name": o.name, "reused": o.reused, "seconds": round(o.seconds, 1)} for o in runner.outcomes],
        "primary_metric": PRIMARY_METRIC,
        "scores": {name: metrics.get(name) for name in runs},
        "test_records": max((v for v in comparison["suite_sizes"].get("tasks", {}).values() if v), default=0),
        "intervals": {name: comparison["intervals"].get(PRIMARY_METRIC, {}).get(name) for name in runs},
        "paired": {f"{a}-{b}": paired_stat(comparison, a, b, PRIMARY_METRIC) for a, b in SUMMARY_PAIRS
                   if a in runs and b in runs},
        "sft_beats_base": sft is not None and base is not None and sft > base,
        "sft_beats_base_excluding_zero": bool(sft_gain and sft_gain["excludes_zero"] and sft_gain["difference"] > 0),
        "export": str(cfg.out / "export"),
    }
    (cfg.out / "demo.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    (cfg.out / "demo.md").write_text("# kositp demo: " + " vs ".join(runs) + "\n\n" + headline_md + "\n" + table_md,
                                     encoding="utf-8")
    console.rule("[bold]" + " vs ".join(name.upper() if name != "base" else name for name in runs))
    console.print(headline_md)
    console.print(f"Every metric, with intervals and paired differences: {cfg.out / 'demo.md'} "
                  f"(figure: {cfg.out / 'eval' / 'compare' / 'comparison.png'})")
    if not summary["sft_beats_base"]:
        console.print(f"[bold red]SFT did not beat the base model on {PRIMARY_METRIC} ({sft} vs {base})")
    return summary


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve_until_interrupted(cfg: DemoConfig, console) -> None:
    """Start `kositp serve` on the export and `kositp ui` on top of it; Ctrl-C stops both and exits 130.

    The two servers run in their own sessions, so the terminal's Ctrl-C (sent to its whole foreground
    process group) reaches only this process, which then stops them in order: a server that ended
    by itself is the only one reported as unexpected. SIGTERM stops them the same way.
    """
    api = f"http://{cfg.host}:{cfg.api_port}/v1"
    serve = [sys.executable, "-m", "kositp.cli", "serve", "--model", str(cfg.out / "export"),
             "--backend", "transformers", "--host", cfg.host, "--port", str(cfg.api_port)]
    ui = [sys.executable, "-m", "kositp.cli", "ui", "--api", api, "--host", cfg.host, "--port", str(cfg.ui_port)]
    from kositp.serve.process import wait_ready

    processes: list[subprocess.Popen] = []
    handlers = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    interrupted = False
    try:
        processes.append(subprocess.Popen(serve, start_new_session=True))
        try:
            wait_ready(f"http://{cfg.host}:{cfg.api_port}", 300, processes[0])
        except (RuntimeError, TimeoutError) as exc:
            raise KositpError(f"the API server did not start: {exc}") from None
        processes.append(subprocess.Popen(ui, start_new_session=True))
        console.rule("[bold]serving")
        console.print(f"API (OpenAI-compatible): {api}")
        console.print(f"chat page: http://{cfg.host}:{cfg.ui_port}")
        console.print("Ctrl-C stops both.")
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        raise KositpError("a server stopped unexpectedly; see its output above")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for sig in handlers:  # a second Ctrl-C must not cut the shutdown short and leave a server behind
            signal.signal(sig, signal.SIG_IGN)
        stop_processes(processes)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if interrupted:
        console.print("stopped: the API server and the chat page are shut down")
        raise SystemExit(130)


def stop_processes(processes: list[subprocess.Popen], timeout_s: float = 30) -> None:
    """SIGTERM to every running one, then wait; kill those still running after `timeout_s`."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
