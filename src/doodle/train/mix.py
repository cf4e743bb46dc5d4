"""Mixup and CutMix between the images of a training batch (`augment.mixup`, `augment.cutmix`), with timm's
`Mixup`: each mixed batch pairs every image with the batch's mirror order, blends (mixup) or pastes a box of
one into the other (cutmix), and mixes the one-hot targets (label-smoothed by `train.label_smoothing`) in the
same proportion; the loss is then the cross-entropy to those soft targets. With distillation the teachers'
probabilities of the two drawings are mixed in the same proportion too (the targets of a mixed drawing are the
mix of its parts' targets). Validation is never mixed.

The mixing happens on the device after `engine.to_input` (float images), so it costs nothing in the loader.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy

from doodle.config import Config
from doodle.errors import UserError


def check_mix_config(cfg: Config, input_kind: str) -> None:
    """Mixing needs images."""
    a = cfg.augment
    if not (a.mixup or a.cutmix):
        return
    if input_kind != "image":
        raise UserError(f"augment.mixup / augment.cutmix mix images; model.name {cfg.model.name!r} reads stroke "
                        "sequences: set both to 0")


class BatchMix:
    """`mix(x, target, teacher_logp=None)` -> (mixed x, soft targets (B, C), the teachers' log-probabilities mixed
    alike, or None) for a batch of an even size; an odd one (a DDP shard's remainder) is left unmixed, with
    one-hot (label-smoothed) targets."""

    def __init__(self, cfg: Config, n_classes: int):
        a = cfg.augment
        self.n_classes, self.smoothing = n_classes, cfg.train.label_smoothing
        self.mixup = Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, prob=a.mix_prob, switch_prob=0.5,
                           mode="batch", label_smoothing=self.smoothing, num_classes=n_classes)

    def __call__(self, x: torch.Tensor, target: torch.Tensor, teacher_logp: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if len(x) % 2:
            return x, mixup_target(target, self.n_classes, lam=1.0, smoothing=self.smoothing), teacher_logp
        # what Mixup.__call__ does in batch mode, keeping the proportion (x is mixed in place; timm is pinned)
        lam = float(self.mixup._mix_batch(x))
        soft = mixup_target(target, self.n_classes, lam=lam, smoothing=self.smoothing)
        if teacher_logp is not None:
            teacher_logp = mix_log_probs(teacher_logp.float(), lam)
        return x, soft, teacher_logp


def label_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0,
               mixed: torch.Tensor | None = None) -> torch.Tensor:
    """The loss on the labels: cross-entropy to `mixed`, a mixed batch's (already label-smoothed) soft targets, when
    given; else the label-smoothed cross-entropy to `target`, averaged over the drawings that have a label (-1: a
    transfer drawing of distillation, which has none; 0 when none has). No host-device sync: a batch without any
    label is scored against class 0 and multiplied by 0, so neither the loss nor its gradient is NaN."""
    if mixed is not None:
        return SoftTargetCrossEntropy()(logits, mixed)
    any_label = (target >= 0).any()
    target = torch.where(any_label, target, target.clamp(min=0))
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing, ignore_index=-1) * any_label


def mix_log_probs(logp: torch.Tensor, lam: float) -> torch.Tensor:
    """log(lam p + (1 - lam) p[mirror order]) of log-probabilities (B, C), without leaving log space."""
    if lam <= 0.0:
        return logp.flip(0)
    return torch.logaddexp(logp + math.log(lam), logp.flip(0) + math.log1p(-lam)) if lam < 1.0 else logp


def build_mix(cfg: Config, n_classes: int) -> BatchMix | None:
    """The batch mixer of a config `check_mix_config` accepted, or None when mixing is off."""
    return BatchMix(cfg, n_classes) if cfg.augment.mixup or cfg.augment.cutmix else None
