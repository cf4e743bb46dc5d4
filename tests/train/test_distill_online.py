"""Online distillation (distill.targets=online): the teachers predict each training batch as the student sees it.

Checked here: which view each teacher reads (the student's own image, or its own rendering / sequence of the same
augmented strokes), that the online blend is the ensemble's blend (`predict.ensemble.BLENDERS`), and that a
student taught by online teachers alone (no labels) learns far above chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import command_module, shrink

from doodle.config import load_config
from doodle.predict.ensemble import Aligned, blend
from doodle.predict.teachers import OnlineTeachers, teacher_folds
from doodle.store.format import Store
from doodle.train.data import BatchDataset, make_inputs, make_split
from doodle.train.engine import forward, to_input

ROOT = Path(__file__).resolve().parents[2]


def _train(store: Path, out: Path, cfg: str, *sets: str, epochs: int = 1) -> Path:
    args = ["--cfg", str(ROOT / "configs" / cfg), "--fold", "0", "--out", str(out), "--no-progress", "--device",
            "cpu", *shrink(store, epochs, "train.deterministic=true", *sets)]
    assert command_module(ROOT / "src/train.py").main(args) == 0
    return out


@pytest.fixture(scope="module")
def teachers(kaggle_store, tmp_path_factory) -> list[Path]:
    """Two one-epoch teachers of fold 0: a CNN at 32 px and a small GRU."""
    out = tmp_path_factory.mktemp("teachers")
    _train(kaggle_store, out, "demo.yaml", "train.ema=false")
    _train(kaggle_store, out, "seq_gru.yaml", "model.kwargs={conv: 16, hidden: 16, layers: 1}", "seq.max_points=48")
    return [out / "demo", out / "seq_gru"]


def _student(kaggle_store: Path, teachers: list[Path], *sets: str):
    cfg = load_config(ROOT / "configs/distill.yaml", [f"data.store={kaggle_store}", "data.img_size=32",
                                                      "raster.line_width=2",  # demo.yaml's (r18.yaml: 3)
                                                      f"distill.teachers=[{','.join(map(str, teachers))}]",
                                                      "distill.targets=online", *sets])
    store = Store(kaggle_store)
    split = make_split(store, cfg, 0)
    return cfg, store, split, teacher_folds(cfg.distill.teachers, 0, split.classes, store)


@pytest.mark.parametrize("method", ["prob_mean", "logit_mean"])
def test_online_teachers_read_the_students_view_and_blend_as_the_ensemble(kaggle_store, teachers, method):
    cfg, store, split, runs = _student(kaggle_store, teachers, f"distill.method={method}")
    online = OnlineTeachers(cfg, runs, torch.device("cpu"))
    cnn, gru = online.inputs
    assert cnn.same and cnn.kind == "image" and not gru.same and gru.kind == "sequence"

    ds = BatchDataset(store, split, cfg, "image", train=True, seed=3, teachers=online.inputs)
    idx = split.train_idx[:24]
    batch = ds[idx.tolist()]
    assert batch["teacher"][0] is None  # the CNN teacher reads the student's image, albumentations and all
    # the GRU's sequences are made from the very strokes the student's image was drawn from (replayed augmentation)
    rng = np.random.default_rng(np.concatenate([[3], idx]))
    augmented = ds.augment(store.take(idx), rng)
    t_cfg = online.teachers[1].cfg
    want = make_inputs(augmented, t_cfg, online.teachers[1].spec, "sequence")
    assert torch.equal(batch["teacher"][1]["seq"], want["seq"])
    clean = make_inputs(store.take(idx), t_cfg, online.teachers[1].spec, "sequence")
    assert not torch.equal(batch["teacher"][1]["seq"], clean["seq"])  # augmented, not the stored drawing

    inputs = to_input(batch, torch.device("cpu"), False)
    got = online(batch, inputs)
    with torch.no_grad():
        logits = [forward(online.teachers[0].model, inputs).numpy(),
                  forward(online.teachers[1].model, to_input(batch["teacher"][1], torch.device("cpu"), False)).numpy()]
    keys = np.asarray(store.key_id[idx])
    probs = blend(Aligned(["cnn", "gru"], keys, split.classes, logits, None), None, method)
    assert got.shape == (24, 27) and torch.allclose(got.exp(), torch.from_numpy(probs), atol=1e-5)


def test_a_teacher_with_another_raster_draws_its_own_image(kaggle_store, teachers):
    cfg, store, split, runs = _student(kaggle_store, teachers[:1], "data.img_size=48")
    online = OnlineTeachers(cfg, runs, torch.device("cpu"))
    assert not online.inputs[0].same
    ds = BatchDataset(store, split, cfg, "image", train=True, teachers=online.inputs)
    batch = ds[split.train_idx[:8].tolist()]
    assert batch["image"].shape[1:3] == (48, 48) and batch["teacher"][0]["image"].shape[1:3] == (32, 32)
    got = online(batch, to_input(batch, torch.device("cpu"), False))
    assert got.shape == (8, 27) and torch.allclose(got.exp().sum(1), torch.ones(8), atol=1e-5)


def test_an_online_student_makes_no_teacher_folder(kaggle_store, teachers, tmp_path):
    run = _train(kaggle_store, tmp_path, "distill.yaml", f"distill.teachers=[{','.join(map(str, teachers))}]",
                 "distill.targets=online", "train.ema=false") / "distill/fold0"
    log = (run / "train.log").read_text()
    assert "distill.targets=online: the teachers" in log and "log-probabilities in" not in log
    assert not (run / "teacher").exists()
    assert np.isfinite(json.loads((run / "summary.json").read_text())["val/map3"])


@pytest.mark.slow
def test_a_student_of_online_teachers_alone_learns(kaggle_store, tmp_path):
    """distill.alpha=1: no label reaches the student, only the teachers' predictions of its augmented views. The
    teacher: test_learning's demo run (4 epochs of 40 drawings per class at 32 px). Measured: teacher MAP@3 0.52,
    student (from scratch, 4 epochs) 0.47; chance 0.067; bound 0.25."""
    sets = ["data.per_class=40", "data.val_per_class=10", "train.epochs=4"]
    _train(kaggle_store, tmp_path, "demo.yaml", *sets, epochs=4)
    run = _train(kaggle_store, tmp_path, "distill.yaml", *sets, f"distill.teachers=[{tmp_path / 'demo'}]",
                 "distill.targets=online", "distill.alpha=1.0", "distill.init=none", "raster.line_width=2",
                 epochs=4) / "distill/fold0"
    teacher = json.loads((tmp_path / "demo/fold0/summary.json").read_text())["val/map3"]
    student = json.loads((run / "summary.json").read_text())["val/map3"]
    assert student >= 0.25, (teacher, student)


def test_online_settings_that_cannot_hold_are_one_line_errors(kaggle_store, tmp_path, capsys):
    from doodle import cli
    from doodle.config import ConfigError

    with pytest.raises(ConfigError, match="distill.targets: 'live' is not one of"):
        load_config(ROOT / "configs/distill.yaml", ["distill.targets=live"])
    train = command_module(ROOT / "src/train.py")
    args = ["--cfg", str(ROOT / "configs/distill.yaml"), "--fold", "0", "--out", str(tmp_path), "--device", "cpu",
            *shrink(kaggle_store, 1, "distill.teachers=[x]", "distill.targets=online", f"distill.cache={tmp_path}")]
    assert cli.run(train.main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: distill.cache=") and "with distill.targets=online" in err[-1], err[-1]
    assert not list(tmp_path.rglob("metrics.csv"))
