"""Fit a training run to its device and time budget (`train.adapt`, on by default).

A recipe states what it wants on the hardware it was written for (r18.yaml: 30 epochs of 3,000 drawings per
class in batches of 512 with 8 loader workers, on a GPU). Run as is on a 2-core CPU with
`train.max_minutes=15`, it would train less than one epoch: boosting would never update its quotas, a
long-horizon EMA would never leave its initial weights, and 8 workers would fight the model for 2 cores.
So, before the first step, the recipe times a few real training and validation steps (`probe`) and plans:

- **epochs**: as many as `train.epochs`, but no more than the validation passes fit in VAL_SHARE of the
  budget (each epoch ends with one: the boosting quotas and the best checkpoint come from it), and at least
  MIN_EPOCHS;
- **drawings per class per epoch**: `data.per_class`, or fewer, so that those epochs fill the budget
  (re-planned after every epoch from the measured speed: boosting shrinks an epoch as accuracy grows);
- **batch size**: `train.batch_size`, halved (down to STEP_BATCH) while the run would make fewer than
  TARGET_STEPS optimiser steps: a short run learns more from its images in many small steps than in a few
  large ones; and further (down to MIN_BATCH) while it would make fewer than MIN_STEPS, below which warm-up,
  cosine decay and the EMA do not work at all;
- **loader workers**: on a CPU device none when rendering a batch costs under WORKER_SHARE of a training
  step (a worker would only take cores from the model); elsewhere at most one per spare core.

Without a budget only the workers are fitted. Every decision is logged and saved in the run's checkpoint
(a resumed run keeps its plan), and `train.adapt: false` turns all of it off.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from doodle.config import Config

log = logging.getLogger("train")

# Measured on a 15-minute r18_boost CPU run: VAL_SHARE 0.08 (8 epochs) trained at 0.75x the plain loop over the whole
# run, 0.05 (5 epochs) at 0.88x, with the same MAP@3 (0.827 vs 0.822).
# TARGET_STEPS: r18_boost, 27 classes, 64 px, 7 epochs of 400 per class (boosted), 1 thread each, side by side: batches
# of 256 -> MAP@3 0.818 from 52,736 images (206 steps); batches of 64 -> 0.836 from 46,656 (729 steps), ahead at
# every epoch (docs/results.md, "The recipes").
VAL_SHARE = 0.05  # of the budget, at most, for the per-epoch validation passes
RESERVE = 0.03  # of the budget, for checkpoints and the loader's first batches
MIN_EPOCHS = 4  # boosting needs a few quota updates; fewer epochs and it is uniform sampling
MIN_STEPS = 300  # optimiser steps a run should make at least (warm-up, cosine, EMA warm-up): fewer warns
TARGET_STEPS = 1000  # the batch is halved while a budgeted run would make fewer steps than this
STEP_BATCH = 64  # TARGET_STEPS halves no further: on the CPU batch 64 trains at ~0.93x batch 128, batch 32 at ~0.75x
MIN_BATCH = 32
FEW_STEPS = 100  # below this a run ends near chance (measured: tools/demo.py --minutes 0.5, ~20 steps, MAP@3 ~chance)
WORKER_SHARE = 0.05  # render cost per batch, as a share of a training step, that a CPU run does in-process


@dataclass
class Rates:
    """Measured speeds: training images/s, validation images/s, rendering one training batch (s)."""

    train: float
    eval: float
    render_s: float
    step_s: float
    probe_s: float = 0.0


@dataclass
class RunPlan:
    epochs: int
    per_class: int
    batch_size: int
    num_workers: int
    budget_s: float = 0.0  # the time budget the plan fills (0 = none, or not adapting)
    rates: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunPlan:
        return cls(**d)


def fit_workers(cfg: Config, device_type: str, rates: Rates | None, local_world: int = 1) -> int:
    """Loader workers for this device: see the module docstring."""
    want = cfg.data.num_workers
    cores = max(1, (os.cpu_count() or 1) // max(1, local_world))
    cheap = rates is not None and rates.render_s < WORKER_SHARE * rates.step_s
    if device_type == "cpu" and cheap:
        return 0
    return min(want, max(0, cores - 1))


def fit_batch(batch: int, images: float) -> int:
    """The recipe's batch, halved while `images` would make fewer than TARGET_STEPS steps (down to STEP_BATCH),
    or fewer than MIN_STEPS (down to MIN_BATCH)."""
    while (batch > STEP_BATCH and images / batch < TARGET_STEPS) or (batch > MIN_BATCH and images / batch < MIN_STEPS):
        batch //= 2
    return batch


def val_seconds(cfg: Config, n_val: int, eval_rate: float) -> tuple[float, float]:
    """(seconds of one epoch's validation, seconds of the final validation with the run's TTA)."""
    passes = 2 if cfg.train.ema else 1  # raw and EMA weights
    tta = 2 if cfg.val.tta == "flip" else 1
    return n_val * passes / eval_rate, n_val * tta / eval_rate


def plan_run(cfg: Config, n_classes: int, n_val: int, device_type: str, rates: Rates | None,
             local_world: int = 1, world: int = 1) -> RunPlan:
    """The run's epochs, drawings per class, batch size and workers (see the module docstring)."""
    t = cfg.train
    workers = fit_workers(cfg, device_type, rates, local_world) if t.adapt else cfg.data.num_workers
    plan = RunPlan(t.epochs, cfg.data.per_class, t.batch_size, workers, 0.0, asdict(rates) if rates else {})
    if not t.adapt or t.max_minutes <= 0 or rates is None:
        return plan
    seconds = plan.budget_s = t.max_minutes * 60.0
    epoch_val, final_val = val_seconds(cfg, math.ceil(n_val / world), rates.eval)
    by_val = int(VAL_SHARE * seconds / max(epoch_val, 1e-9))
    plan.epochs = min(t.epochs, max(MIN_EPOCHS, by_val))
    # train.swa_last: the average is validated once more in each window epoch but the first (= the raw weights)
    swa_val = max(0, min(t.swa_last, plan.epochs) - 1) * math.ceil(n_val / world) / rates.eval
    train_s = seconds * (1 - RESERVE) - rates.probe_s - final_val - plan.epochs * epoch_val - swa_val
    images = max(0.0, rates.train * world * train_s)
    labelled = images * (1 - cfg.distill.transfer) if cfg.distill.enabled else images  # the rest: transfer set
    plan.per_class = max(1, min(cfg.data.per_class, int(labelled / (plan.epochs * n_classes))))
    plan.batch_size = fit_batch(t.batch_size, images / world)
    _warn(cfg, plan, images, n_classes, epoch_val, seconds, world)
    return plan


def _warn(cfg: Config, plan: RunPlan, images: float, n_classes: int, epoch_val: float, seconds: float,
          world: int) -> None:
    if plan.epochs * epoch_val > 3 * VAL_SHARE * seconds:
        log.warning("train.max_minutes=%g: validating once per epoch alone takes %.0f s of the %.0f s budget "
                    "(%d epochs); the budget is too short for this validation set (data.val_per_class)",
                    cfg.train.max_minutes, plan.epochs * epoch_val, seconds, plan.epochs)
    steps = images / (plan.batch_size * world)
    if steps < MIN_STEPS:
        outlook = "it will barely learn (MAP@3 near chance)" if steps < FEW_STEPS else "expect an undertrained model"
        log.warning("train.max_minutes=%g leaves time for ~%.0f optimiser steps (batch %d, ~%.0f training images, "
                    "%.0f per class) at the measured speed; a run needs %d or more for warm-up, decay and the EMA, "
                    "so %s: raise train.max_minutes", cfg.train.max_minutes, steps, plan.batch_size, images,
                    images / n_classes, MIN_STEPS, outlook)
    if cfg.train.ema and not cfg.train.ema_warmup and 1 / (1 - cfg.train.ema_decay) > steps / 2:
        log.warning("train.ema_decay=%g averages over ~%.0f steps but the run makes ~%.0f: the EMA weights will "
                    "lag far behind (set train.ema_warmup=true)", cfg.train.ema_decay,
                    1 / (1 - cfg.train.ema_decay), steps)


def next_per_class(plan: RunPlan, quota_factor: float, seconds_left: float, epochs_left: int,
                   train_rate: float, epoch_val: float, cfg_per_class: int, world: int = 1) -> int:
    """Drawings per class for the next epoch so the remaining epochs fill the remaining budget.

    `quota_factor` is the next epoch's images per unit of N (n_classes without boosting; sum of
    (1 - acc_c) + floor with it); `train_rate` the last epoch's measured images/s per process.
    """
    if plan.budget_s <= 0 or epochs_left <= 0 or train_rate <= 0:
        return plan.per_class
    train_s = max(0.0, seconds_left - epochs_left * epoch_val)
    images = train_rate * world * train_s / epochs_left
    return max(1, min(cfg_per_class, int(images / max(quota_factor, 1e-9))))


@torch.no_grad()
def _eval_rate(model, inputs: dict, precision, steps: int, device) -> float:
    from doodle.train.engine import forward

    model.eval()
    n = next(iter(inputs.values())).shape[0]
    with precision.autocast():
        forward(model, inputs)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        with precision.autocast():
            forward(model, inputs)
    _sync(device)
    return n * steps / (time.perf_counter() - t0)


def probe(cfg: Config, model, make_batch, to_input, precision, device, steps: int = 3, teach=None) -> Rates:
    """Time `steps` training steps and validation forwards on a copy of the model (the run's weights, optimiser
    and random state are untouched) and the rendering of one batch; `make_batch()` gives a loader batch. With
    `teach` (online distillation's teachers: (batch, inputs) -> targets) a step includes the teachers' pass."""
    from doodle.train.engine import forward
    from doodle.train.optim import build_optimizer

    t_start = time.perf_counter()
    rng = torch.get_rng_state()
    make_batch()  # the first call loads the compiled rasteriser
    t0 = time.perf_counter()
    batch = make_batch()
    render_s = time.perf_counter() - t0
    m = copy.deepcopy(model).train()
    opt = build_optimizer(cfg, m)
    inputs = to_input(batch)
    target = batch["target"].to(device)

    def step():
        if teach is not None:
            teach(batch, inputs)
        with precision.autocast():
            loss = F.cross_entropy(forward(m, inputs).float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: first-call allocations, cuDNN autotuning
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    step_s = (time.perf_counter() - t0) / steps
    n = len(target)
    eval_rate = _eval_rate(m, inputs, precision, steps, device)
    torch.set_rng_state(rng)
    return Rates(train=n / step_s, eval=eval_rate, render_s=render_s, step_s=step_s,
                 probe_s=time.perf_counter() - t_start)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(plan: RunPlan, cfg: Config) -> str:
    """One log line: what was planned and what the config asked for."""
    r = plan.rates
    speed = (f"; measured {r['train']:.0f} train / {r['eval']:.0f} val images/s, a batch rendered in "
             f"{r['render_s'] * 1000:.0f} ms" if r else "")
    return (f"plan: {plan.epochs} epochs (config {cfg.train.epochs}) of {plan.per_class} drawings per class "
            f"(config {cfg.data.per_class}), batch {plan.batch_size} (config {cfg.train.batch_size}), "
            f"{plan.num_workers} loader workers (config {cfg.data.num_workers})"
            + (f", budget {plan.budget_s / 60:g} min" if plan.budget_s else "") + speed)
