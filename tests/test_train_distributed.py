"""`accelerate launch` with two CPU processes (gloo): both ranks train their own shard, one checkpoint is written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kositp.recipes import RECIPES_DIR

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_sft_on_cpu(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(RECIPES_DIR / "accelerate" / "cpu-ddp.yaml"),
           "--main_process_port", str(_free_port()),
           "-m", "kositp.cli", "train", "sft", "--config", "sft/tiny",
           "--data", str(REPO / "tests/fixtures/train/sft"), "--out", str(run),
           "trainer.max_steps=4", "trainer.save_steps=4", "trainer.eval_steps=100", "progress=false"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((run / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert all(r["global_step"] == 4 and len(r["logged_losses"]) == 4 for r in ranks)
    # 32 examples, batch 8: one process would have 4 batches per epoch; each rank has half of them.
    assert all(r["batches_per_epoch"] == 2 for r in ranks)
    assert ranks[0]["trainable_checksum"] == pytest.approx(ranks[1]["trainable_checksum"], rel=1e-9)
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4"]
    record = json.loads((run / "run.json").read_text())
    assert record["final_step"] == 4 and (run / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    assert result.stdout.count("SFT run written") == 1
