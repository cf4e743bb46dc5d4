"""Checkpoint averaging (train.swa_last): the running average is the arithmetic mean of the window's snapshots,
survives a checkpoint round trip, and a tiny run with it on validates it, writes swa.pt and predicts."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch
from helpers import command_module as load_tool
from helpers import shrink
from torch import nn

from doodle.runs.folder import load_checkpoint, save_checkpoint
from doodle.train.swa import WeightAverage

ROOT = Path(__file__).resolve().parents[2]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def _train_a_little(net: nn.Module, seed: int) -> None:
    """Move every weight and the BatchNorm statistics, as an epoch would."""
    g = torch.Generator().manual_seed(seed)
    net.train()
    net(torch.randn(8, 3, 8, 8, generator=g))  # BatchNorm running statistics
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g))


def _floats(state: dict) -> dict:
    return {k: v for k, v in state.items() if v.is_floating_point()}


def test_the_average_is_the_mean_of_the_window_snapshots(tmp_path):
    net = _net()
    swa = WeightAverage(net, last=3, epochs=5)  # window: epochs 2, 3, 4
    snapshots = []
    for epoch in range(5):
        _train_a_little(net, epoch)
        added = swa.update(net, epoch)
        assert added == (epoch >= 2)
        if added:
            snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
    assert swa.n == 3 == len(snapshots)
    averaged = _floats(swa.module.state_dict())
    assert {"1.running_mean", "1.running_var", "0.weight", "4.bias"} <= set(averaged)  # BatchNorm buffers too
    for k, v in averaged.items():
        mean = torch.stack([s[k] for s in snapshots]).mean(0)
        torch.testing.assert_close(v, mean, rtol=1e-6, atol=1e-6)
        assert not torch.equal(v, snapshots[-1][k])  # not simply the last weights
    assert all(v.device.type == "cpu" for v in averaged.values())

    # through a checkpoint (weights_only) and back: the same average, the same count, and it keeps averaging
    save_checkpoint({"model": {}, "classes": ["a"], "swa": swa.state_dict()}, tmp_path / "last.pt")
    again = WeightAverage(_net(), last=3, epochs=5)
    again.load_state_dict(load_checkpoint(tmp_path / "last.pt")["swa"])
    assert again.n == 3
    for k, v in _floats(again.module.state_dict()).items():
        assert torch.equal(v, averaged[k])
    _train_a_little(net, 9)
    again.update(net, 4)
    new = _floats(net.state_dict())
    for k, v in _floats(again.module.state_dict()).items():
        torch.testing.assert_close(v, (3 * averaged[k] + new[k]) / 4, rtol=1e-6, atol=1e-6)


def test_tiny_run_with_averaging_validates_saves_and_predicts(kaggle_store, tmp_path):
    """3 epochs, the last 2 averaged: epoch 0 has no average, epoch 1's is the raw weights (their MAP@3, no second
    pass), epoch 2's is validated; swa.pt holds the 2-epoch average; summary.json reports it; best.pt is the
    average exactly when it won; predict.py uses the run."""
    train = load_tool(ROOT / "src/train.py")
    args = ["--cfg", str(ROOT / "configs/demo.yaml"), "--fold", "0", "--out", str(tmp_path / "out"), "--no-progress",
            "--device", "cpu", *shrink(kaggle_store, 3, "train.deterministic=true", "train.swa_last=2")]
    assert train.main(args) == 0
    run = tmp_path / "out/demo/fold0"
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    swa_map3 = [float(r["val_swa/map3"]) for r in rows]
    assert math.isnan(swa_map3[0]) and swa_map3[1] == float(rows[1]["val_raw/map3"]) and 0 <= swa_map3[2] <= 1
    swa = load_checkpoint(run / "checkpoints/swa.pt")  # weights_only, as every checkpoint
    assert swa["metrics"]["swa/n"] == 2 and swa["metrics"]["swa/epochs"] == "1-2" and swa["epoch"] == 2
    assert swa["metrics"]["val/map3"] == swa_map3[2]
    last = load_checkpoint(run / "checkpoints/last.pt")
    assert int(last["swa"]["n_averaged"]) == 2
    for k, v in swa["model"].items():
        assert torch.equal(v, last["swa"][f"module.{k}"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_swa/map3"] == swa_map3[2] and summary["swa/epochs"] == "1-2"
    best = load_checkpoint(run / "checkpoints/best.pt")
    same = all(torch.equal(v, best["model"][k]) for k, v in swa["model"].items())
    assert same == (summary["val/weights"] == "swa") == (best["metrics"]["val/weights"] == "swa")
    if not same:
        assert best["metrics"]["val/map3"] >= swa_map3[2]
    sub = tmp_path / "sub.csv"
    predict = load_tool(ROOT / "src/predict.py")
    assert predict.main(["--run", str(run), "--test", str(ROOT / "input/sample/test_simplified.csv"),
                         "--out", str(sub), "--device", "cpu"]) == 0
    assert len(sub.read_text().splitlines()) == 271
