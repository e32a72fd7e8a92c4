"""Evaluation stage: held-out task metrics and Korean benchmarks, with reports."""
