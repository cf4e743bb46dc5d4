"""The sequence model through the same entry points as the CNNs: src/train.py -> src/predict.py ->
tools/ensemble.py with a CNN run, in-process via main(argv), on the real configs shrunk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import command_module as load_tool
from helpers import shrink

from doodle.runs.folder import load_logits

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "input/sample"


@pytest.fixture
def store(kaggle_store) -> Path:
    return kaggle_store


def train_args(cfg: str, store: Path, out: Path, *sets: str) -> list[str]:
    """A real config shrunk: 4 drawings per class, 3 per class to validate, 1 epoch, CPU, no workers."""
    return ["--cfg", str(ROOT / "configs" / cfg), "--out", str(out), "--no-progress", "--device", "cpu",
            *shrink(store, 1, *sets)]


def predict(run: Path, tmp_path: Path) -> None:
    tool = load_tool(ROOT / "src/predict.py")
    assert tool.main(["--run", str(run), "--test", str(SAMPLE / "test_simplified.csv"), "--labels",
                      str(SAMPLE / "test_labels.csv"), "--out", str(tmp_path / f"{run.parent.name}.csv"),
                      "--device", "cpu", "--batch-size", "64"]) == 0
    test = load_logits(run / "test_logits.npz")
    assert test["logits"].shape == (270, 27) and len(set(test["key_id"].tolist())) == 270


def test_sequence_run_trains_predicts_and_ensembles_with_a_cnn(store, tmp_path):
    train = load_tool(ROOT / "src/train.py")
    out = tmp_path / "out"
    assert train.main(train_args("seq_gru.yaml", store, out, "model.kwargs={conv: 16, hidden: 16, layers: 1}",
                                 "seq.max_points=64", "seq.time=true")) == 0
    assert train.main(train_args("r18.yaml", store, out)) == 0
    seq_run, cnn_run = out / "seq_gru/fold0", out / "r18/fold0"
    saved = yaml.safe_load((seq_run / "config.yaml").read_text())
    assert saved["model"]["name"] == "seq_gru" and saved["seq"] == {"max_points": 64, "time": True, "point_dropout": 0.0}
    seq_val, cnn_val = load_logits(seq_run / "val_logits.npz"), load_logits(cnn_run / "val_logits.npz")
    assert seq_val["classes"] == cnn_val["classes"] and len(seq_val["classes"]) == 27
    assert sorted(seq_val["key_id"].tolist()) == sorted(cnn_val["key_id"].tolist())  # same val drawings
    for run in (seq_run, cnn_run):
        predict(run, tmp_path)

    ensemble = load_tool(ROOT / "tools/ensemble.py")
    sub = tmp_path / "blend.csv"
    assert ensemble.main([str(out / "seq_gru"), str(out / "r18"), "--out", str(sub),
                          "--test", str(SAMPLE / "test_simplified.csv")]) == 0
    report = json.loads(sub.with_suffix(".json").read_text())
    assert [m["name"] for m in report["members"]] == [str(out / "seq_gru"), str(out / "r18")]
    assert all(m["has_test"] and 0 <= m["val/map3"] <= 1 for m in report["members"])
    assert report["val_rows"] == len(seq_val["key_id"]) and 0 <= report["scores"]["blend"]["val/map3"] <= 1
    assert report["test_rows"] == 270 and len(sub.read_text().splitlines()) == 271
