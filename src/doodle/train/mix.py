"""Mixup and CutMix between the images of a training batch (`augment.mixup`, `augment.cutmix`), with timm's
`Mixup`: each mixed batch pairs every image with the batch's mirror order, blends (mixup) or pastes a box of
one into the other (cutmix), and mixes the one-hot targets (label-smoothed by `train.label_smoothing`) in the
same proportion; the loss is then the cross-entropy to those soft targets. Validation is never mixed.

The mixing happens on the device after `engine.to_input` (float images), so it costs nothing in the loader.
"""

from __future__ import annotations

import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target

from doodle.config import Config
from doodle.errors import UserError


def check_mix_config(cfg: Config, input_kind: str) -> None:
    """Mixing needs images, and soft targets of its own (not the teachers' of distillation)."""
    a = cfg.augment
    if not (a.mixup or a.cutmix):
        return
    if input_kind != "image":
        raise UserError(f"augment.mixup / augment.cutmix mix images; model.name {cfg.model.name!r} reads stroke "
                        "sequences: set both to 0")
    if cfg.distill.enabled:
        raise UserError("augment.mixup / augment.cutmix with distillation is not supported (the teachers' soft "
                        "targets are not mixed): set both to 0")


class BatchMix:
    """`mix(x, target)` -> (mixed x, soft targets (B, C)) for a batch of an even size; an odd one (a DDP
    shard's remainder) is left unmixed, with one-hot (label-smoothed) targets."""

    def __init__(self, cfg: Config, n_classes: int):
        a = cfg.augment
        self.n_classes, self.smoothing = n_classes, cfg.train.label_smoothing
        self.mixup = Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, prob=a.mix_prob, switch_prob=0.5,
                           mode="batch", label_smoothing=self.smoothing, num_classes=n_classes)

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(x) % 2 == 0:
            return self.mixup(x, target)
        return x, mixup_target(target, self.n_classes, lam=1.0, smoothing=self.smoothing)


def build_mix(cfg: Config, n_classes: int) -> BatchMix | None:
    """The batch mixer of a config `check_mix_config` accepted, or None when mixing is off."""
    return BatchMix(cfg, n_classes) if cfg.augment.mixup or cfg.augment.cutmix else None
