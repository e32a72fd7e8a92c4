"""`kositp bench` sub-app. Each stage adds its benchmark as one command (`data`, `train`, `serve`, ...);
every command writes JSON + Markdown into its --out directory."""

from __future__ import annotations

import typer

from kositp.bench.gpu import bench_gpu
from kositp.bench.sample import bench_sample
from kositp.bench.serve import bench_serve
from kositp.bench.train import bench_train
from kositp.data.bench import bench_data

bench_app = typer.Typer(help="Measure speed and memory against baselines.", no_args_is_help=True)

bench_app.command("data")(bench_data)
bench_app.command("train")(bench_train)
bench_app.command("serve")(bench_serve)
bench_app.command("gpu")(bench_gpu)
bench_app.command("sample")(bench_sample)
