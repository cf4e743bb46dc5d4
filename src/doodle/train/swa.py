"""Checkpoint averaging (SWA-style, `train.swa_last: K`): the mean of the raw weights at the end of each of
the run's last K planned epochs, kept as one running average in CPU memory (never K copies).

torch's `AveragedModel` keeps the average: its incremental mean (`avg += (w - avg) / (n + 1)`) equals the
arithmetic mean of the snapshots up to float rounding (`tests/train/test_swa.py`).

BatchNorm: the running mean / variance buffers are averaged too (`use_buffers=True`), not re-estimated with
`swa_utils.update_bn`. The snapshots come from the end of a cosine schedule, where the weights move little, so
the mean of their statistics is close to the statistics of their mean; re-estimating would cost extra forward
passes over augmented training batches that the time budget does not plan for, and would draw on the
training random streams, which a resumed run must replay exactly. The averaged weights are only kept when
their own validation beats the best raw / EMA weights, so a statistics mismatch can cost nothing but the
average itself. Integer buffers (BatchNorm's `num_batches_tracked`) are not meaningful in the average; nothing
reads them (our BatchNorms have a momentum).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from doodle.runs.folder import RunDir, save_checkpoint

log = logging.getLogger("train")


class WeightAverage:
    """The running mean of the raw weights over epochs `first`..`epochs - 1` of a run planned for `epochs`.

    An epoch outside the window (or a run that ends before it, e.g. on its time budget) adds nothing.
    """

    def __init__(self, model: nn.Module, last: int, epochs: int):
        self.first = max(0, epochs - last)
        self.avg = AveragedModel(model, device=torch.device("cpu"), use_buffers=True)

    @property
    def n(self) -> int:
        """Snapshots averaged so far."""
        return int(self.avg.n_averaged)

    @property
    def module(self) -> nn.Module:
        """The averaged network (on the CPU)."""
        return self.avg.module

    def covers(self, epoch: int) -> bool:
        return epoch >= self.first

    def update(self, model: nn.Module, epoch: int) -> bool:
        """Add `model`'s weights at the end of `epoch` when it is in the window; True when they were added."""
        if not self.covers(epoch):
            return False
        self.avg.update_parameters(model)
        return True

    def on(self, device: torch.device) -> nn.Module:
        """The averaged network on `device` for validation: itself on the CPU, else a copy (the CPU original
        keeps averaging)."""
        if device.type == "cpu":
            return self.module
        return copy.deepcopy(self.module).to(device)

    def span(self, epoch: int) -> str:
        """The epochs averaged so far, as 'first-last' (for logs and summary.json)."""
        return f"{self.first}-{epoch}" if epoch > self.first else str(epoch)

    def state_dict(self) -> dict:
        """The average and its count (`n_averaged`): what a resumed run needs."""
        return self.avg.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.avg.load_state_dict(state)

    def summary(self, history: list[dict]) -> dict:
        """summary.json's figures of the average: its MAP@3 after the last epoch, the epochs it holds."""
        rows = [r for r in history if self.covers(int(r["epoch"]))]
        if not rows:
            log.warning("train.swa_last: the run ended after epoch %d, before the averaging window (epochs %d "
                        "on): no average", int(history[-1]["epoch"]) if history else -1, self.first)
            return {"val_swa/map3": None, "swa/epochs": None}
        return {"val_swa/map3": rows[-1]["val_swa/map3"], "swa/epochs": self.span(int(rows[-1]["epoch"]))}


def save_average(swa: WeightAverage, run: RunDir, epoch: int, row: dict, classes: list[str], cfg) -> None:
    """checkpoints/swa.pt: the average so far, as a checkpoint best.pt's readers can load (written atomically)."""
    metrics = {"epoch": epoch, "val/map3": row["val_swa/map3"], "val/weights": "swa", "swa/epochs": swa.span(epoch),
               "swa/n": swa.n}
    save_checkpoint({"model": swa.module.state_dict(), "classes": classes, "config": cfg.to_dict(),
                     "epoch": epoch, "metrics": metrics}, run.swa)


def build_average(cfg, model: nn.Module, epochs: int) -> WeightAverage | None:
    """`train.swa_last` > 0: the running average for a run planned for `epochs` epochs; else None."""
    last = cfg.train.swa_last
    if last <= 0:
        return None
    if last >= epochs:
        log.warning("train.swa_last=%d covers all %d planned epochs: the average starts from the first epoch's "
                    "weights", last, epochs)
    return WeightAverage(model, last, epochs)
