"""Evaluation suites: `tasks` (22 held-out tasks), `seed4` (the seed's four benchmarks), `kobest`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SuiteResult:
    """What a suite hands to the report: every number in `metrics`, one record per example in `examples`."""

    name: str
    metrics: dict
    examples: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # prompts, decoding, files read: whatever reproduces it
