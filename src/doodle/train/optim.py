"""Optimiser and learning-rate schedule from config, built with timm's factories."""

from __future__ import annotations

import logging

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from timm.utils import ModelEmaV3
from torch import nn

from doodle.config import Config
from doodle.errors import UserError
from doodle.train.engine import TrainState, resolve_precision

log = logging.getLogger(__name__)



def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer.lower() not in ("adamw", "sgd", "adam", "lamb", "lion", "rmsprop", "nadamw", "momentum"):
        raise UserError(f"train.optimizer: {t.optimizer!r} not supported (adamw, sgd, adam, lamb, lion, ...)")
    # timm passes momentum only to optimizers that take one (sgd, momentum, rmsprop here)
    return create_optimizer_v2(model, opt=t.optimizer, lr=t.lr, weight_decay=t.weight_decay,
                               momentum=t.momentum)


class ConstantScheduler:
    """Same interface as timm's schedulers (step(t), state_dict) with an optional linear warmup."""

    def __init__(self, optimizer, lr: float, warmup_t: float = 0.0):
        self.optimizer, self.lr, self.warmup_t = optimizer, lr, warmup_t

    def step(self, t: float) -> None:
        lr = self.lr * min(1.0, (t + 1e-9) / self.warmup_t) if self.warmup_t > 0 else self.lr
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build_scheduler(cfg: Config, optimizer, epochs: int | None = None):
    """timm schedulers driven by a fractional epoch position (`.step(epoch + i / steps)`) over `epochs`
    (the run's planned epochs; default `train.epochs`)."""
    t = cfg.train
    epochs = epochs or t.epochs
    warm = {"warmup_t": t.warmup_epochs, "warmup_lr_init": t.lr * 0.01, "t_in_epochs": True}
    if t.scheduler == "cosine":
        return CosineLRScheduler(optimizer, t_initial=epochs, lr_min=t.lr * 0.01, **warm)
    if t.scheduler == "step":
        return MultiStepLRScheduler(optimizer, decay_t=t.step_epochs or [int(epochs * 0.7)],
                                    decay_rate=t.step_gamma, **warm)
    if t.scheduler == "constant":
        return ConstantScheduler(optimizer, t.lr, t.warmup_epochs)
    raise UserError(f"train.scheduler: {t.scheduler!r} not one of cosine, step, constant")


def build_train_state(cfg: Config, model: nn.Module, input_kind: str, device: torch.device,
                      epochs: int | None = None) -> tuple[nn.Module, TrainState]:
    """The model in its training memory format and everything an epoch needs beyond it (optimiser, schedule over
    `epochs`, scaler, precision, EMA, the train.* knobs): the recipe and the benchmarks build it here alike."""
    channels_last = cfg.train.channels_last and input_kind == "image" and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    precision = resolve_precision(cfg.train.amp, device)
    optimizer = build_optimizer(cfg, model)
    ema = None
    if cfg.train.ema:
        # power 3/4: timm's setting for runs of under ~100k steps (decay 0.99 at ~460 steps, 0.999 at 10k)
        ema = ModelEmaV3(model, decay=cfg.train.ema_decay, use_warmup=cfg.train.ema_warmup, warmup_power=0.75)
    scaler = torch.amp.GradScaler("cuda") if precision.dtype == torch.float16 else None
    state = TrainState(optimizer, build_scheduler(cfg, optimizer, epochs), scaler, precision, ema,
                       cfg.train.accum_steps, cfg.train.grad_clip, cfg.train.label_smoothing, channels_last,
                       cfg.train.log_every)
    return model, state
