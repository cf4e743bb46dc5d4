"""distill.targets=held_out: each training drawing is taught only by the teachers that held out its fold (runs trained
with data.exclude_folds), and the settings that cannot hold are one-line errors before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import command_module, shrink

from doodle import cli
from doodle.train.distill import KEYS, LOGPROBS

ROOT = Path(__file__).resolve().parents[2]


def _args(store: Path, out: Path, cfg: str, *extra: str) -> list[str]:
    return ["--cfg", str(ROOT / "configs" / cfg), "--fold", "0", "--out", str(out), "--no-progress", "--device",
            "cpu", *shrink(store, 1, "train.deterministic=true", "train.ema=false"), *extra]


@pytest.fixture(scope="module")
def teachers(kaggle_store, tmp_path_factory) -> list[Path]:
    """Two one-epoch demo runs of fold 0: `a` held out folds 1 and 2, `b` folds 3 and 4."""
    out = tmp_path_factory.mktemp("held_out_teachers")
    train = command_module(ROOT / "src/train.py")
    for name, held in (("a", "[1,2]"), ("b", "[3,4]")):
        args = _args(kaggle_store, out, "demo.yaml", "--name", name, "--set", f"data.exclude_folds={held}")
        assert train.main(args) == 0
    return [out / "a", out / "b"]


@pytest.fixture(scope="module")
def student(kaggle_store, teachers, tmp_path_factory) -> Path:
    """A one-epoch student of the two, distill.targets=held_out: its run folder (fold 0)."""
    out = tmp_path_factory.mktemp("held_out_student")
    args = _args(kaggle_store, out, "distill.yaml", "--set", f"distill.teachers=[{teachers[0]},{teachers[1]}]",
                 "distill.targets=held_out", "distill.tta=run")
    assert command_module(ROOT / "src/train.py").main(args) == 0
    return out / "distill/fold0"


def test_each_drawing_is_taught_by_the_teacher_that_held_out_its_fold(kaggle_store, teachers, student):
    from doodle.predict.exported import store_logits
    from doodle.predict.loaded_run import load_run
    from doodle.store.format import Store
    from doodle.train.data import make_split

    store = Store(kaggle_store)
    a, b = (load_run(t / "fold0") for t in teachers)
    split = make_split(store, a.cfg, 0)  # a's split: folds 3 and 4 (a's training drawings) only
    train_idx = np.union1d(split.train_idx, make_split(store, b.cfg, 0).train_idx)  # the student's: folds 1-4
    folder = student / "teacher"
    logp = np.load(folder / LOGPROBS, mmap_mode="r")
    with np.load(folder / KEYS) as z:
        keys, targets = z["key_id"], str(z["targets"])
    assert targets == "held_out" and np.array_equal(keys, np.asarray(store.key_id[train_idx]))
    folds = np.asarray(store.fold[train_idx])
    assert set(folds) == {1, 2, 3, 4}
    rows = {}
    for teacher, held in ((a, (1, 2)), (b, (3, 4))):
        mine = np.flatnonzero(np.isin(folds, held))[:24]
        theirs = torch.from_numpy(store_logits(teacher, store, split, train_idx[mine], teacher.cfg.val.tta))
        assert np.allclose(logp[mine], theirs.log_softmax(1).numpy(), atol=0.02), held
        rows[held] = mine
    # the two teachers disagree on those drawings, so the rows above tell them apart
    other = torch.from_numpy(store_logits(b, store, split, train_idx[rows[(1, 2)]], b.cfg.val.tta))
    assert not np.allclose(logp[rows[(1, 2)]], other.log_softmax(1).numpy(), atol=0.02)
    log = (student / "train.log").read_text()
    assert f"fold 1 taught by {teachers[0]}" in log and f"fold 4 taught by {teachers[1]}" in log


def test_held_out_settings_that_cannot_hold_are_one_line_errors(kaggle_store, teachers, student, tmp_path, capsys):
    train = command_module(ROOT / "src/train.py")
    a, b = teachers
    cases = [
        (["--set", f"distill.teachers=[{a}]", "distill.targets=held_out"],
         "no teacher held out training fold(s) [3, 4]"),
        (["--set", f"distill.teachers=[{a}]", "distill.targets=held_out", "data.exclude_folds=[1,2]"],
         f"{a}/fold0 trained on every training fold of the student ([3, 4])"),
        (["--set", f"distill.teachers=[{a},{b}]", "distill.tta=run", f"distill.cache={student / 'teacher'}"],
         "were made by other teachers or settings"),  # held-out targets are not the once ones
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        capsys.readouterr()
        assert cli.run(train.main, _args(kaggle_store, out, "distill.yaml", *extra)) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], (extra, err[-1])
        assert not list(out.rglob("last.pt")), extra


def test_a_transfer_drawing_is_taught_by_every_held_out_teacher():
    """The transfer set's drawings (classes no teacher learned) are held out from all teachers, so all teach them."""
    from types import SimpleNamespace

    from doodle.predict.teachers import teachers_of

    store = SimpleNamespace(fold=np.array([1, 2, 3, 4, 1, 3, 2, 4]))
    split = SimpleNamespace(train_idx=np.array([0, 1, 2, 3]), transfer_idx=np.array([4, 5, 6, 7]))
    who = teachers_of(np.arange(8), split, store, [frozenset({1, 2}), frozenset({3, 4})], 2)
    assert who.tolist() == [[True, False], [True, False], [False, True], [False, True]] + [[True, True]] * 4
    assert teachers_of(np.arange(4), split, store, None, 3).all()  # once: every teacher, every drawing
