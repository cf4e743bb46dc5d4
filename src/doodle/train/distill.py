"""Distillation on the training side: the loss, and the teachers' soft targets looked up per batch.

The teachers' log-probabilities over the student's training drawings are made once, before training, by the
predict path (`doodle.predict.teachers`) and kept on disk in a folder:

    teacher/logprobs.npy   float16 (N, C): log of the teachers' blended probabilities, memory-mapped
    teacher/keys.npz       key_id (N,), classes, teachers, method, tta, targets: written last, so its presence
                           means the folder is complete

Cost: C x 2 bytes per drawing (+ 8 for its key_id): 680 B with 340 classes, 34 GB for 50M drawings, so the
array stays a memory map and a batch reads only its own rows (in the loader workers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from doodle.config import Config
from doodle.errors import UserError
from doodle.train.mix import label_loss

LOGPROBS, KEYS = "logprobs.npy", "keys.npz"


def distill_loss(logits: torch.Tensor, target: torch.Tensor, teacher_logp: torch.Tensor, alpha: float,
                 temperature: float, label_smoothing: float = 0.0, mixed: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """(1 - alpha) CE(hard labels) + alpha T^2 KL(teacher_T || student_T), both softened by T (Hinton et al. 2015:
    the T^2 keeps the soft term's gradients at the scale of the hard term's as T changes). In a mixup / cutmix
    batch the hard term is the cross-entropy to `mixed`, the mixed (already label-smoothed) one-hot targets."""
    hard = label_loss(logits, target, label_smoothing, mixed)
    t = temperature
    soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logp.float() / t, dim=1),
                    reduction="batchmean", log_target=True)
    return (1 - alpha) * hard + alpha * t * t * soft


@dataclass(frozen=True)
class DistillLoss:
    """The loss `train_one_epoch` uses when batches carry the teachers' log-probabilities (`batch["soft"]`)."""

    alpha: float
    temperature: float

    def __call__(self, logits, target, teacher_logp, label_smoothing: float = 0.0, mixed=None) -> torch.Tensor:
        return distill_loss(logits, target, teacher_logp, self.alpha, self.temperature, label_smoothing, mixed)


@dataclass(frozen=True)
class BatchTargets:
    """distill.targets=once: a batch's teacher log-probabilities are the rows the loader read (`batch["soft"]`,
    from `SoftTargets`), moved to the device; `predict.teachers.OnlineTeachers` is the online counterpart."""

    device: torch.device

    def __call__(self, batch: dict, inputs: dict) -> torch.Tensor:
        return batch["soft"].to(self.device, non_blocking=True)


def check_distill_config(cfg: Config) -> None:
    """The keys that must go together: distillation on needs teachers, teachers need distillation on."""
    d = cfg.distill
    if d.enabled and not d.teachers:
        raise UserError("distill.teachers is empty: name the teacher runs, e.g. "
                        "--set 'distill.teachers=[outputs/r18_boost,outputs/seq_gru]'")
    if d.teachers and not d.enabled:
        raise UserError("distill.teachers is set but distill.enabled is false: use configs/distill.yaml "
                        "or --set distill.enabled=true")
    if d.targets == "online" and d.cache:
        raise UserError(f"distill.cache={d.cache} with distill.targets=online: online teachers keep no targets; "
                        "drop distill.cache or set distill.targets=once")
    if d.transfer and not d.enabled:
        raise UserError(f"distill.transfer={d.transfer:g} but distill.enabled is false: the transfer set has only "
                        "the teachers' targets")
    if d.enabled and d.transfer and (cfg.augment.mixup or cfg.augment.cutmix):
        raise UserError("distill.transfer with augment.mixup / augment.cutmix: a transfer drawing has no label to "
                        "mix; set distill.transfer=0 or both to 0")


def taught_idx(split) -> np.ndarray:
    """The drawings the teachers' targets are made for: the training drawings and the transfer set, sorted."""
    if split.transfer_idx is None or len(split.transfer_idx) == 0:
        return split.train_idx
    return np.union1d(split.train_idx, split.transfer_idx)


def cache_dir(cfg: Config, run_root: Path) -> Path:
    """Where the teachers' log-probabilities live: distill.cache, else <run>/fold<k>/teacher/."""
    return Path(cfg.distill.cache) if cfg.distill.cache else Path(run_root) / "teacher"


class SoftTargets:
    """The teachers' log-probabilities of the training drawings: `rows(store_idx)` -> float16 (B, C).

    Built from a teacher folder and the student's training drawings; every training key_id must be in it
    (else the folder is stale: made for another store, fold or class list), and a folder with more drawings
    is fine. Keeps one int64 per training drawing (its row in the memory map) in memory.
    """

    def __init__(self, folder: Path, train_idx: np.ndarray, train_keys: np.ndarray, classes: list[str]):
        folder = Path(folder)
        meta = read_keys(folder)
        if meta["classes"] != list(classes):
            raise UserError(f"teacher logits {folder} are for other classes ({len(meta['classes'])} vs the "
                            f"student's {len(classes)}); delete the folder to make them again")
        self.logp = np.load(folder / LOGPROBS, mmap_mode="r")
        keys = meta["key_id"]
        if self.logp.shape != (len(keys), len(classes)):
            raise UserError(f"teacher logits {folder}: {LOGPROBS} of shape {self.logp.shape} for {len(keys)} "
                            f"key_ids x {len(classes)} classes; delete the folder to make them again")
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        pos = np.searchsorted(sorted_keys, train_keys).clip(0, max(len(keys) - 1, 0))
        found = sorted_keys[pos] == train_keys if len(keys) else np.zeros(len(train_keys), bool)
        if not found.all():
            raise UserError(f"teacher logits {folder} do not cover the training drawings: {int((~found).sum())} "
                            f"of {len(train_keys)} key_ids missing (stale: made for another store, fold or "
                            "data.max_drawings?); delete the folder to make them again")
        self.train_idx = np.asarray(train_idx)  # the split's own array (int32 below 2**31 drawings), not a copy
        self.row = order[pos]

    def rows(self, store_idx: np.ndarray) -> np.ndarray:
        """The rows of the given training drawings (store indices), as float16 (B, C)."""
        j = np.searchsorted(self.train_idx, store_idx)
        if not np.array_equal(self.train_idx[j.clip(0, len(self.train_idx) - 1)], store_idx):
            raise UserError("a batch holds drawings that are not training drawings of this fold")
        return np.asarray(self.logp[self.row[j]])


def read_keys(folder: Path) -> dict:
    """A teacher folder's keys.npz -> key_id, classes, teachers, method, tta, targets."""
    path = Path(folder) / KEYS
    if not path.is_file() or not (Path(folder) / LOGPROBS).is_file():
        raise UserError(f"teacher logits {folder}: no {KEYS} / {LOGPROBS} in it (unfinished?); delete the folder")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"key_id": z["key_id"].astype(np.int64), "classes": [str(c) for c in z["classes"]],
                    "teachers": [str(t) for t in z["teachers"]], "method": str(z["method"]), "tta": str(z["tta"]),
                    # folders written before distill.targets had held_out were all once
                    "targets": str(z["targets"]) if "targets" in z else "once"}
    except (ValueError, KeyError, OSError) as e:
        raise UserError(f"teacher logits {path} are unreadable ({e}); delete the folder") from None
