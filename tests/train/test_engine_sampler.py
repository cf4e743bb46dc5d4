"""The quota sampler's class grouping and short-epoch padding, and the training loop's
device-side running totals (same numbers as a per-step host sum; a non-finite loss still raises)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from doodle.train.data import QuotaSampler
from doodle.train.engine import Precision, TrainState, train_one_epoch, val_metrics
from doodle.train.optim import ConstantScheduler


def test_quota_sampler_groups_classes_like_masks():
    rng = np.random.default_rng(0)
    idx = rng.permutation(500) + 1000
    targets = rng.integers(-1, 7, 500)  # -1 and 6 lie outside the 6 classes: dropped
    s = QuotaSampler(idx, targets, 6, np.full(6, 3), batch_size=4)
    assert len(s.by_class) == 6
    for c, members in enumerate(s.by_class):
        assert np.array_equal(members, idx[targets == c])


@pytest.mark.parametrize("world_size", [1, 2])
def test_quota_sampler_pads_an_epoch_shorter_than_the_padding(world_size):
    idx = np.arange(10)
    targets = np.arange(10) % 3
    shards = [QuotaSampler(idx, targets, 3, [1, 1, 1], batch_size=8, seed=2, rank=r, world_size=world_size)
              for r in range(world_size)]
    epoch = shards[0].epoch_indices()
    assert len(epoch) == 8 * world_size and np.array_equal(epoch, np.resize(epoch[:3], len(epoch)))
    assert np.bincount(targets[epoch[:3]], minlength=3).tolist() == [1, 1, 1]
    for s in shards:
        batches = list(s)
        assert len(batches) == len(s) == 1 and len(batches[0]) == 8


def _loader(n_batches: int, bs: int = 5, classes: int = 4, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randint(0, 256, (bs, 4, 4, 1), generator=g, dtype=torch.uint8),
             "target": torch.randint(0, classes, (bs,), generator=g)} for _ in range(n_batches)]


def _state(model: nn.Module, log_every: int) -> TrainState:
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    return TrainState(opt, ConstantScheduler(opt, 0.0), None, Precision(None, "cpu"), log_every=log_every)


@pytest.mark.parametrize("log_every", [0, 1, 3, 50])
def test_train_totals_match_a_per_step_host_sum(log_every):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    loader = _loader(7)
    total_loss, right, seen = 0.0, 0, 0
    with torch.no_grad():  # lr 0: the model does not change, so these are the epoch's own losses
        for b in loader:
            logits = model(b["image"].permute(0, 3, 1, 2).float().div_(255.0))
            total_loss += nn.functional.cross_entropy(logits, b["target"]).item() * len(b["target"])
            right += int((logits.argmax(1) == b["target"]).sum())
            seen += len(b["target"])
    out = train_one_epoch(model, loader, _state(model, log_every), torch.device("cpu"), 0, lambda e: e,
                          progress=False)
    assert out["train/loss"] == total_loss / seen and out["train/acc1"] == right / seen
    assert out["train/images"] == seen and out["train/steps"] == 7
    assert set(out) == {"train/loss", "train/acc1", "train/images", "train/steps", "train/seconds", "train/lr"}


class _NanAfter(nn.Module):
    """Finite logits for the first `good` calls, NaN after."""

    def __init__(self, good: int):
        super().__init__()
        self.lin, self.good, self.calls = nn.Linear(16, 4), good, 0

    def forward(self, x):
        self.calls += 1
        out = self.lin(x.flatten(1))
        return out if self.calls <= self.good else out * math.nan


@pytest.mark.parametrize("log_every, step", [(2, 3), (50, 4)])
def test_non_finite_loss_raises_at_the_next_read_back(log_every, step):
    model = _NanAfter(good=2)
    with pytest.raises(FloatingPointError, match=f"loss is nan at epoch 1 step {step}; lower train.lr"):
        train_one_epoch(model, _loader(5), _state(model, log_every), torch.device("cpu"), 1, lambda e: e,
                        progress=False)


def test_val_metrics_keys_and_empty_case():
    logits = np.array([[0.1, 2.0, 0.3], [3.0, 0.2, 0.1], [0.0, 0.5, 0.4]], np.float32)
    target = np.array([1, 2, 1])
    m = val_metrics(logits, target)
    assert list(m) == ["val/loss", "val/map3", "val/acc1"]
    assert m["val/acc1"] == 2 / 3 and m["val/map3"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    empty = val_metrics(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    assert list(empty) == list(m) and all(math.isnan(v) for v in empty.values())
