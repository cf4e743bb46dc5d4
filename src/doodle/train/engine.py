"""The only loops: train_one_epoch, evaluate, predict_logits. Plain functions returning dicts; no files."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from doodle.errors import UserError
from doodle.metrics import summarize
from doodle.train.mix import label_loss


@dataclass
class Precision:
    """Autocast settings: dtype None = full precision; scaler only for fp16 on CUDA."""

    dtype: torch.dtype | None
    device_type: str

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """'auto' = bf16 on CUDA (fp16 where bf16 is unsupported), full precision on CPU."""
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise UserError(f"train.amp: {amp!r} is not one of auto, off, bf16, fp16")
    if device.type == "cuda":
        if amp == "auto":
            # native bf16 only (Ampere+); older GPUs (T4, V100) get fp16 with a GradScaler
            amp = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        return Precision({"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp], "cuda")
    if amp == "fp16":
        raise UserError("train.amp: fp16 needs CUDA; use bf16 or off on CPU")
    return Precision(torch.bfloat16 if amp == "bf16" else None, "cpu")


def to_input(batch: dict, device: torch.device, channels_last: bool) -> dict:
    """Loader batch -> model kwargs on the device. uint8 NHWC images become float NCHW in 0..1 here."""
    if "image" in batch:
        x = batch["image"].to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
        return {"x": x}
    return {"seq": batch["seq"].to(device, non_blocking=True),
            "seq_len": batch["seq_len"].to(device, non_blocking=True)}


def forward(model: nn.Module, inputs: dict) -> torch.Tensor:
    if "x" in inputs:
        return model(inputs["x"])
    return model(inputs["seq"], inputs["seq_len"])


@dataclass
class TrainState:
    """What one training epoch needs beyond the model and data."""

    optimizer: torch.optim.Optimizer
    scheduler: object  # timm scheduler: .step(fractional_epoch)
    scaler: torch.amp.GradScaler | None
    precision: Precision
    ema: object | None = None
    accum_steps: int = 1
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    channels_last: bool = False
    log_every: int = 50  # steps between read-backs of the running loss (finiteness check, progress bar)
    step: int = 0  # optimiser steps taken in the whole run (drives the EMA warm-up; saved in checkpoints)
    distill: Callable | None = None  # train.distill.DistillLoss, with `teach`
    # distillation: (batch, inputs) -> the teachers' log-probs of the batch: read from it (train.distill.BatchTargets,
    # distill.targets=once) or predicted (predict.teachers.OnlineTeachers, online)
    teach: Callable | None = None
    mix: Callable | None = None  # train.mix.BatchMix: mixup / cutmix of the images, soft targets


def train_one_epoch(model: nn.Module, loader: Iterable, state: TrainState, device: torch.device, epoch: int,
                    schedule_pos: Callable[[float], float], should_stop: Callable[[], bool] = lambda: False,
                    progress: bool = True) -> dict:
    """One pass over `loader`; `schedule_pos(epoch_fraction)` gives the scheduler position each step.

    The running loss sum and right-answer count stay on the device and are read back (one sync) every
    `state.log_every` steps and at the end; a non-finite loss is caught at those read-backs.
    """
    model.train()
    n_batches = len(loader)
    # sum of loss * batch size, right answers, drawings with a label (a transfer drawing of distillation has none)
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    seen, steps, i = 0, 0, 0
    t0 = time.perf_counter()
    state.optimizer.zero_grad(set_to_none=True)
    bar = tqdm(loader, total=n_batches, desc=f"train {epoch}", leave=False, disable=not progress)
    for i, batch in enumerate(bar):
        state.scheduler.step(schedule_pos(epoch + i / max(n_batches, 1)))
        inputs = to_input(batch, device, state.channels_last)
        target = batch["target"].to(device, non_blocking=True)
        # before any mixing: online teachers see the drawings the student mixes
        soft = state.teach(batch, inputs) if state.teach is not None else None
        mixed = None
        if state.mix is not None:
            inputs["x"], mixed, soft = state.mix(inputs["x"], target, soft)
        with state.precision.autocast():
            logits = forward(model, inputs)
            loss = _loss(logits.float(), target, state, mixed, soft)
        (state.scaler.scale(loss / state.accum_steps) if state.scaler else loss / state.accum_steps).backward()
        if (i + 1) % state.accum_steps == 0 or i + 1 == n_batches:
            _optimizer_step(model, state)
            steps += 1
        right = (logits.argmax(1) == target).sum()
        totals += torch.stack((loss.detach().double() * len(target), right.double(), (target >= 0).sum().double()))
        seen += len(target)
        if state.log_every > 0 and (i + 1) % state.log_every == 0:
            _read_back(totals, seen, epoch, i, bar)
        if should_stop():
            break
    if dist.is_available() and dist.is_initialized():  # every rank's share of the epoch, not rank 0's
        packed = torch.cat([totals, torch.tensor([float(seen)], dtype=torch.float64, device=device)])
        dist.all_reduce(packed)
        totals, seen = packed[:3], int(packed[3].item())
    total_loss, total_right, labelled = _read_back(totals, seen, epoch, i, bar)
    return {"train/loss": total_loss / max(seen, 1), "train/acc1": total_right / max(labelled, 1),
            "train/images": seen, "train/steps": steps, "train/seconds": time.perf_counter() - t0,
            "train/lr": state.optimizer.param_groups[0]["lr"]}


def _loss(logits: torch.Tensor, target: torch.Tensor, state: TrainState | None, mixed: torch.Tensor | None = None,
          soft: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on the labels (on `mixed`, the soft targets of a mixup / cutmix batch, when given), or with
    `state.distill` the mix of it and the teachers' soft targets `soft` (mixed alike in a mixed batch)."""
    if state is not None and state.distill is not None:
        return state.distill(logits, target, soft, state.label_smoothing, mixed)
    return label_loss(logits, target, state.label_smoothing if state else 0.0, mixed)


def _read_back(totals: torch.Tensor, seen: int, epoch: int, step: int, bar: tqdm) -> tuple[float, int, int]:
    """The running loss sum, right answers and labelled drawings (one host-device sync); raises when the loss is
    not finite."""
    total_loss, total_right, labelled = totals.tolist()
    mean = total_loss / max(seen, 1)
    if not math.isfinite(total_loss):
        raise FloatingPointError(f"loss is {mean} at epoch {epoch} step {step}; lower train.lr?")
    bar.set_postfix(loss=f"{mean:.3f}", refresh=False)
    return total_loss, int(total_right), int(labelled)


def _optimizer_step(model: nn.Module, state: TrainState) -> None:
    if state.scaler:
        state.scaler.unscale_(state.optimizer)
    if state.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), state.grad_clip)
    if state.scaler:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    if state.ema is not None:
        state.ema.update(_unwrap(model), step=state.step)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose weights the EMA copies (DDP and torch.compile wrap it)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


@torch.no_grad()
def predict_logits(model: nn.Module, loader: Iterable, device: torch.device, precision: Precision,
                   channels_last: bool = False, progress: bool = True, desc: str = "predict") -> dict:
    """Logits (float32 numpy), key_id and target (when the batches carry one) for every batch of `loader`."""
    model.eval()
    logits, keys, targets = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        with precision.autocast():
            out = forward(model, to_input(batch, device, channels_last))
        logits.append(out.float().cpu().numpy())
        keys.append(batch["key_id"].numpy())
        if "target" in batch:
            targets.append(batch["target"].numpy())
    n_cls = logits[0].shape[1] if logits else 0
    return {"logits": np.concatenate(logits) if logits else np.zeros((0, n_cls), np.float32),
            "key_id": np.concatenate(keys) if keys else np.zeros(0, np.int64),
            "target": np.concatenate(targets) if targets else None}


def evaluate(model: nn.Module, loaders: list[Iterable], device: torch.device, precision: Precision,
             channels_last: bool = False, progress: bool = True) -> dict:
    """Validation arrays: logits averaged over `loaders` (plain, or plain + flipped for TTA), key_id, target."""
    outs = [predict_logits(model, ld, device, precision, channels_last, progress, desc="val") for ld in loaders]
    for o in outs[1:]:
        assert np.array_equal(o["key_id"], outs[0]["key_id"]), "TTA passes disagree on order"
    return {"logits": np.mean([o["logits"] for o in outs], axis=0), "key_id": outs[0]["key_id"],
            "target": outs[0]["target"]}


def val_metrics(logits: np.ndarray, target: np.ndarray) -> dict:
    """`val/loss`, `val/map3`, `val/acc1` of validation logits."""
    loss = math.nan
    if len(target):
        logp = torch.log_softmax(torch.from_numpy(np.asarray(logits, np.float32)), dim=1)
        loss = float(F.nll_loss(logp, torch.from_numpy(np.asarray(target, np.int64))).item())
    return {"val/loss": loss, **summarize(logits, target)}
