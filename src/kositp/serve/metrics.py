"""Prometheus metrics of one gateway (a registry per app, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kositp_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "kositp_request_latency_seconds",
            "Time from request to last byte, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "kositp_time_to_first_token_seconds", "Time to the first streamed text", buckets=LATENCY_BUCKETS, registry=r
        )
        self.tokens = Counter("kositp_tokens", "Tokens processed, by kind (prompt, completion)", ["kind"], registry=r)
        self.in_flight = Gauge("kositp_requests_in_flight", "Generation requests being served", registry=r)
        self.queue_depth = Gauge("kositp_queue_depth", "Requests waiting for the backend", registry=r)
        self.rejected = Counter("kositp_rejected", "Requests refused, by reason", ["reason"], registry=r)
        self.cancelled = Counter("kositp_cancelled", "Generations cancelled because the client left", registry=r)
        self.backend = Gauge("kositp_backend", "Backend counters (batches run, requests batched, largest "
                             "batch; healthy vLLM replicas)", ["stat"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
