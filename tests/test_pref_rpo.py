"""`rpo_alpha`: DPO plus an SFT term on the chosen answers, passed to TRL's DPO trainer under its own names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAIRS = REPO / "tests" / "fixtures" / "train" / "pref"


def _dpo_args(tmp_path, overrides: list[str]):
    from kositp.config import load_config
    from kositp.train.pref import PrefConfig

    return _dpo_args_for(load_config(PrefConfig, "pref/tiny-dpo", overrides), tmp_path)


def test_rpo_alpha_becomes_trls_sft_loss_term(tmp_path):
    args = _dpo_args(tmp_path, ["rpo_alpha=0.5"])
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, 0.5]
    plain = _dpo_args(tmp_path, [])
    assert plain.loss_type == ["sigmoid"] and plain.loss_weights is None


def test_rpo_alpha_is_refused_under_another_method():
    from kositp.config import load_config
    from kositp.errors import KositpError
    from kositp.train.pref import PrefConfig

    with pytest.raises(KositpError, match="rpo_alpha applies to method dpo only, not orpo"):
        load_config(PrefConfig, None, ["method=orpo", "rpo_alpha=1.0"])


def test_the_sft_term_reaches_the_trainers_loss(tmp_path, tiny_model_dir):
    """At step 1 the policy equals the reference, so DPO's loss is log 2; the SFT term adds the chosen NLL."""
    from kositp.config import load_config
    from kositp.train.pref import PrefConfig, train_pref

    losses = {}
    for alpha in (None, 1.0):
        cfg = load_config(PrefConfig, "pref/tiny-dpo", [f"rpo_alpha={alpha if alpha else 'null'}",
                                                        "trainer.max_steps=1", "trainer.save_steps=1"])
        cfg.data, cfg.out, cfg.progress = str(PAIRS), str(tmp_path / f"rpo-{alpha}"), False
        run = train_pref(cfg)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses[alpha] = next(r["loss"] for r in rows if "loss" in r and r["split"] == "train")
    assert losses[None] == pytest.approx(0.6931, abs=1e-3)
    # the tiny model is random: its mean token NLL on the chosen answers is far above zero
    assert losses[1.0] > losses[None] + 1.0


def test_public_recipe_passes_config_check_and_resolves_to_dpo_with_the_sft_term(tmp_path):
    import subprocess
    import sys

    from kositp.config import load_config
    from kositp.train.pref import PrefConfig

    checked = subprocess.run([sys.executable, "-m", "kositp.cli", "config", "check", "pref/public-dpo"],
                             capture_output=True, text=True, cwd=REPO)
    assert checked.returncode == 0 and "ok: pref/public-dpo" in checked.stdout, checked.stderr
    cfg = load_config(PrefConfig, "pref/public-dpo")
    assert cfg.time_budget_minutes is not None and cfg.time_budget_minutes <= 30  # the DPO budget
    args = _dpo_args_for(cfg, tmp_path)
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, cfg.rpo_alpha]
    assert cfg.pair_tasks == "all"  # the checkable-only pick of the sweep was worse than SFT on the test split
    assert args.lr_scheduler_type == "constant_with_warmup"  # a run stopped by its budget is a shorter run


def _dpo_args_for(cfg, tmp_path):
    from trl import DPOConfig

    from kositp.train import common
    from kositp.train.pref import _method_args

    return common.trl_arguments(DPOConfig, cfg, tmp_path, False, _method_args(cfg))
