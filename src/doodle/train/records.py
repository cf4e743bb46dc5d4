"""Per-epoch records of a run: train.log lines, metrics.csv, quotas.csv, TensorBoard, summary.json."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import torch

from doodle.runs.folder import RunDir, atomic_write_bytes, run_summary

log = logging.getLogger("train")


class EpochLog:
    """Writes only on the main process; `epoch()` returns the metrics row either way. Every row has a
    `val_<weights>/map3` column for the raw, EMA and, with `swa` (train.swa_last), averaged weights (NaN where
    those weights were not validated)."""

    def __init__(self, run: RunDir, classes: list[str], main: bool, swa: bool = False):
        self.run, self.classes, self.main = run, classes, main
        self.weights = ("raw", "ema", "swa") if swa else ("raw", "ema")
        self.tb = None
        if main:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run.tb))

    def images(self, dataset, sampler, n: int = 32) -> None:
        """A grid of training inputs as the model sees them (first channels as RGB)."""
        from torchvision.utils import make_grid

        first = next(iter(sampler), None)
        if not first or self.tb is None:
            return
        batch = dataset[first[:n]]
        if "image" not in batch:
            return
        x = batch["image"].permute(0, 3, 1, 2)[:, :3]
        self.tb.add_image("train/inputs", make_grid(x, nrow=8, pad_value=128), 0)

    def epoch(self, epoch: int, tr: dict, ev: dict, quotas: np.ndarray, acc_c: np.ndarray, spent: float) -> dict:
        by_weights = ev.get("map3_by_weights", {})
        row = {"epoch": epoch, **tr, **{k: ev[k] for k in ("val/loss", "val/map3", "val/acc1")},
               "val/weights": ev.get("weights", "raw"),
               **{f"val_{w}/map3": by_weights.get(w, float("nan")) for w in self.weights},
               "time/seconds": round(spent, 1)}
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        top = np.argsort(-quotas)[:3]
        log.info("epoch %d: loss %.4f acc %.4f | val loss %.4f map3 %.4f acc %.4f (%s weights%s%s) | %d img "
                 "%.0f img/s | quota min %d mean %.0f max %d (%s)", epoch, tr["train/loss"], tr["train/acc1"],
                 ev["val/loss"], ev["val/map3"], ev["val/acc1"], row["val/weights"],
                 f"; ema {by_weights['ema']:.4f} raw {by_weights['raw']:.4f}" if "ema" in by_weights else "",
                 f"; average {by_weights['swa']:.4f}" if "swa" in by_weights else "",
                 tr["train/images"],
                 tr["train/images"] / max(tr["train/seconds"], 1e-9), quotas.min(), quotas.mean(), quotas.max(),
                 ", ".join(f"{self.classes[i]}={quotas[i]}" for i in top))
        if not self.main:
            return row
        append_csv(self.run.metrics, row)
        append_csv(self.run.quotas, {"epoch": epoch, **{c: int(q) for c, q in zip(self.classes, quotas, strict=True)}})
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and v == v:  # NaN: no EMA
                self.tb.add_scalar(k, v, epoch)
        self.tb.add_histogram("val/per_class_acc", torch.as_tensor(np.nan_to_num(acc_c)), epoch)
        self.tb.add_histogram("train/quota", torch.as_tensor(quotas, dtype=torch.float32), epoch)
        self.tb.flush()
        return row

    def finish(self, history: list, spent: float, device, world: int, n_train: int, n_val: int,
               final: dict | None = None) -> dict:
        """summary.json; `final` (the best weights validated with TTA) replaces the best epoch's val/ figures."""
        summary = run_summary(history, spent, run=str(self.run.root), fold=self.run.fold, device=str(device),
                              world_size=world, n_classes=len(self.classes), n_train=n_train, n_val=n_val)
        if final:
            summary.update({k: (round(v, 6) if isinstance(v, float) else v) for k, v in final.items()})
        summary.setdefault("val/tta", "none")
        atomic_write_bytes(self.run.summary, json.dumps(summary, indent=1).encode())
        if self.tb:
            self.tb.close()
        return summary


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def append_csv(path: Path, row: dict) -> None:
    """One row per epoch; the header is written with the first row."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def truncate_csv(path: Path, epochs_kept: int) -> None:
    """On resume, drop rows of epochs after the checkpoint (they will be run again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fields = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(r for r in rows if int(r["epoch"]) < epochs_kept)
