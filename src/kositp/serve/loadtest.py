"""A bounded load test of an OpenAI-compatible endpoint on loopback: N requests at concurrency C.

    python -m kositp.serve.loadtest --url http://127.0.0.1:8000 -n 200 -c 16 --out bench/serve

Half the requests stream (time to first token is measured on those). Results: JSON + Markdown.
Used by the test suite (no failures allowed) and for the figures in docs/serving.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx

PROMPTS = ["대한민국의 수도는 어디인가요?", "헌법 제1조를 설명하세요.", "김치찌개 끓이는 법을 알려 주세요.",
           "다음 문장을 요약하세요: 모든 국민은 법 앞에 평등하다.", "안녕하세요!"]


async def _one(client: httpx.AsyncClient, url: str, model: str, i: int, max_tokens: int, headers: dict,
               prompts: list[str], temperature: float) -> dict:
    stream = i % 2 == 1
    body = {"model": model, "messages": [{"role": "user", "content": prompts[i % len(prompts)]}],
            "max_tokens": max_tokens, "temperature": temperature, "seed": i, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    start = time.perf_counter()
    first = None
    tokens = 0
    try:
        if not stream:
            resp = await client.post(url + "/v1/chat/completions", json=body, headers=headers)
            ok = resp.status_code == 200
            if ok:
                tokens = resp.json()["usage"]["completion_tokens"]
            status = resp.status_code
        else:
            async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as resp:
                status = resp.status_code
                done = False
                async for line in resp.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(line[6:])
                    except ValueError:
                        return {"ok": False, "status": "bad SSE line", "latency": time.perf_counter() - start,
                                "stream": stream}
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
                    if first is None and any((c.get("delta") or {}).get("content") for c in chunk["choices"]):
                        first = time.perf_counter() - start
                ok = status == 200 and done
    except httpx.HTTPError as exc:
        return {"ok": False, "status": type(exc).__name__, "latency": time.perf_counter() - start, "stream": stream}
    return {"ok": ok, "status": status, "latency": time.perf_counter() - start, "ttft": first, "tokens": tokens,
            "stream": stream}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def run_load(url: str, n: int = 200, concurrency: int = 16, max_tokens: int = 16, model: str | None = None,
                   api_key: str | None = None, timeout_s: float = 120.0, prompts: list[str] | None = None,
                   temperature: float = 0.7) -> dict:
    """Request i asks prompts[i % len(prompts)] (default: PROMPTS); odd requests stream."""
    prompts = list(prompts or PROMPTS)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        if model is None:
            model = (await client.get(url + "/v1/models", headers=headers)).json()["data"][0]["id"]
        sem = asyncio.Semaphore(concurrency)

        async def bounded(i: int) -> dict:
            async with sem:
                return await _one(client, url, model, i, max_tokens, headers, prompts, temperature)

        start = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(n)))
        wall = time.perf_counter() - start
    lat = [r["latency"] for r in results if r["ok"]]
    ttft = [r["ttft"] for r in results if r["ok"] and r.get("ttft") is not None]
    tokens = sum(r.get("tokens", 0) for r in results if r["ok"])
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "url": url, "model": model, "requests": n, "concurrency": concurrency, "max_tokens": max_tokens,
        "temperature": temperature,
        "succeeded": sum(r["ok"] for r in results), "failed": sum(not r["ok"] for r in results),
        "statuses": statuses, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 2),
        "completion_tokens": tokens, "completion_tokens_per_s": round(tokens / wall, 1),
        "latency_s": {"p50": round(_pct(lat, 0.5), 3), "p95": round(_pct(lat, 0.95), 3),
                      "mean": round(statistics.fmean(lat), 3) if lat else None},
        "ttft_s": {"p50": round(_pct(ttft, 0.5), 3), "p95": round(_pct(ttft, 0.95), 3)},
    }


def to_markdown(r: dict) -> str:
    return "\n".join([
        f"# Serving load test: {r['model']}", "",
        f"{r['requests']} chat requests (half streamed) at concurrency {r['concurrency']}, max_tokens {r['max_tokens']}.",
        "", "| metric | value |", "|---|---|",
        f"| succeeded / failed | {r['succeeded']} / {r['failed']} |",
        f"| wall time | {r['wall_s']} s |", f"| requests/s | {r['requests_per_s']} |",
        f"| completion tokens/s | {r['completion_tokens_per_s']} |",
        f"| latency p50 / p95 | {r['latency_s']['p50']} / {r['latency_s']['p95']} s |",
        f"| time to first token p50 / p95 (streams) | {r['ttft_s']['p50']} / {r['ttft_s']['p95']} s |", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description="Bounded load test of a kositp (or any OpenAI) server.")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--api-key")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (args.url.startswith("http://127.") or args.url.startswith("http://localhost")):
        parser.error("load tests only target loopback addresses")
    result = asyncio.run(run_load(args.url, args.n, args.concurrency, args.max_tokens, api_key=args.api_key))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "serve_load.json").write_text(json.dumps(result, indent=2))
        (args.out / "serve_load.md").write_text(to_markdown(result))


if __name__ == "__main__":
    main()
