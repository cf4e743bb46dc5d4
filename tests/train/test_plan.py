"""The training plan (doodle.train.plan): hand-worked budgets, the workers rule, per-epoch re-planning, warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from doodle.config import load_config
from doodle.train.plan import Rates, RunPlan, fit_batch, fit_workers, next_per_class, plan_run

ROOT = Path(__file__).resolve().parents[2]


def r18(*sets: str):
    return load_config(ROOT / "configs/r18_boost.yaml", list(sets))


CPU = Rates(train=50.0, eval=200.0, render_s=0.002, step_s=1.3, probe_s=10.0)


def test_a_15_minute_cpu_budget_gets_several_epochs_small_batches_and_no_workers():
    """900 s, 1,000 val drawings validated twice (raw + EMA) at 200/s = 10 s per epoch: 5% of 900 s = 45 s
    -> 4 epochs. Training time 900 * 0.97 - 10 (probe) - 10 (final, flip TTA) - 40 = 813 s -> 40,650 images
    -> 376 per class per epoch over 27 classes; 40,650 / 512 = 79 steps -> halve while under 1,000 steps,
    not below 64 (635 steps)."""
    plan = plan_run(r18("train.max_minutes=15"), n_classes=27, n_val=1000, device_type="cpu", rates=CPU)
    assert (plan.epochs, plan.per_class, plan.batch_size, plan.num_workers) == (4, 376, 64, 0)
    assert plan.budget_s == 900 and plan.rates["train"] == 50.0
    assert RunPlan.from_dict(plan.to_dict()) == plan


def test_a_generous_budget_keeps_the_recipe():
    fast = Rates(train=20_000.0, eval=60_000.0, render_s=0.01, step_s=0.025, probe_s=5.0)
    plan = plan_run(r18("train.max_minutes=600"), 340, 34_000, "cuda", fast)
    assert (plan.epochs, plan.per_class, plan.batch_size) == (30, 3000, 512)


def test_no_budget_or_adapt_off_only_fits_workers():
    cfg = r18()
    plan = plan_run(cfg, 27, 1000, "cpu", CPU)
    assert (plan.epochs, plan.per_class, plan.batch_size, plan.num_workers, plan.budget_s) == (30, 3000, 512, 0, 0)
    off = plan_run(r18("train.max_minutes=15", "train.adapt=false"), 27, 1000, "cpu", CPU)
    assert (off.epochs, off.per_class, off.batch_size, off.num_workers, off.budget_s) == (30, 3000, 512, 8, 0)


@pytest.mark.parametrize("images, batch", [
    (5_000_000, 512),  # a GPU-sized budget: 9,766 steps, the recipe's batch
    (120_000, 64),  # 234 steps at 512 -> 937 at 128 -> 64 (1,875); never below 64 for the step target
    (30_000, 64),  # 469 steps at 64: enough for warm-up and decay
    (12_000, 32),  # 188 steps at 64 < 300 -> 32 (375)
    (2_000, 32),  # too short for any batch: the floor, and the plan warns
])
def test_the_batch_halves_toward_a_thousand_steps(images, batch):
    assert fit_batch(512, images) == batch


def test_workers_follow_the_device():
    cfg = r18()
    slow_render = Rates(train=50.0, eval=200.0, render_s=0.5, step_s=1.3)
    assert fit_workers(cfg, "cpu", CPU) == 0
    assert 0 <= fit_workers(cfg, "cpu", slow_render) <= 8
    assert fit_workers(cfg, "cuda", None) <= 8


def test_next_epoch_fills_what_is_left():
    """400 s left, 4 epochs, 10 s of validation each: 90 s of training per epoch at 60 images/s = 5,400
    images; boosted quotas sum to 13.5 N -> N = 400 (never above the config's 3,000)."""
    plan = RunPlan(7, 207, 64, 0, budget_s=900)
    assert next_per_class(plan, 13.5, 400, 4, 60.0, 10.0, 3000) == 400
    assert next_per_class(plan, 13.5, 400, 4, 6000.0, 10.0, 3000) == 3000
    assert next_per_class(RunPlan(7, 207, 64, 0), 13.5, 400, 4, 60.0, 10.0, 3000) == 207  # no budget: fixed


def test_warnings_name_the_setting(caplog):
    with caplog.at_level(logging.WARNING, logger="train"):
        plan_run(r18("train.max_minutes=0.5"), 27, 5000, "cpu", CPU)
    text = caplog.text
    assert "train.max_minutes=0.5" in text and "validation" in text and "barely learn" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="train"):  # ~200 steps: learns, but undertrained
        plan_run(r18("train.max_minutes=3"), 27, 1000, "cpu", CPU)
    assert "optimiser steps" in caplog.text and "undertrained" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="train"):  # the 15-minute plan above: 635 steps, no warning
        plan_run(r18("train.max_minutes=15"), 27, 1000, "cpu", CPU)
    assert caplog.text == ""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="train"):
        plan_run(r18("train.max_minutes=15", "train.ema_warmup=false"), 27, 1000, "cpu", CPU)
    assert "train.ema_decay=0.9995" in caplog.text and "train.ema_warmup=true" in caplog.text


@pytest.mark.parametrize("minutes", [1, 5, 15, 60, 600])
def test_plans_never_exceed_the_recipe(minutes):
    plan = plan_run(r18(f"train.max_minutes={minutes}"), 27, 1000, "cpu", CPU)
    assert 1 <= plan.epochs <= 30 and 1 <= plan.per_class <= 3000 and 32 <= plan.batch_size <= 512
