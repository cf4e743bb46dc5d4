"""Distillation: the loss, a tiny teacher -> student run that predict and the ensemble take as any run, the
teachers' log-probabilities reused on resume, and the one-line errors before training for bad teachers or a
stale teacher folder."""

from __future__ import annotations

import csv
import io
import json
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import command_module, shrink

from doodle import cli, config
from doodle.predict.ensemble import BLENDERS
from doodle.train.distill import KEYS, LOGPROBS, distill_loss

ROOT = Path(__file__).resolve().parents[2]


def _args(store: Path, out: Path, cfg: str, *extra: str) -> list[str]:
    """A config shrunk to seconds on the bundled sample: 32 px, 4 drawings per class, 1 epoch, CPU."""
    return ["--cfg", str(ROOT / "configs" / cfg), "--fold", "0", "--out", str(out), "--no-progress", "--device",
            "cpu", *shrink(store, 1, "train.deterministic=true", "train.ema=false"), *extra]


def _distill(store: Path, out: Path, *extra: str) -> list[str]:
    return _args(store, out, "distill.yaml", *extra)


@pytest.fixture(scope="module")
def teacher(kaggle_store, tmp_path_factory) -> Path:
    """A finished one-epoch run of the demo config (fold 0): the teacher."""
    out = tmp_path_factory.mktemp("teacher")
    assert command_module(ROOT / "src/train.py").main(_args(kaggle_store, out, "demo.yaml", "--name", "t")) == 0
    return out / "t"


def test_alpha_zero_is_cross_entropy_and_equal_models_have_no_soft_loss():
    g = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g).log_softmax(1)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    ce = F.cross_entropy(logits, target, label_smoothing=0.1)
    assert torch.equal(distill_loss(logits, target, teacher, 0.0, 3.0, 0.1), ce)
    assert distill_loss(teacher, target, teacher, 1.0, 2.0).item() == 0.0  # student == teacher: KL is 0
    assert distill_loss(teacher + 7.0, target, teacher, 1.0, 2.0).abs().item() < 1e-6  # a shift is the same model
    t = 2.0
    p = (teacher / t).softmax(1)
    kl = (p * ((teacher / t).log_softmax(1) - (logits / t).log_softmax(1))).sum(1).mean()
    mixed = distill_loss(logits, target, teacher.half(), 0.25, t)
    assert torch.allclose(mixed, 0.75 * F.cross_entropy(logits, target) + 0.25 * t * t * kl, atol=1e-3)


def test_the_config_choices_are_what_the_code_takes():
    assert set(typing.get_args(config.Blend)) == set(BLENDERS)
    assert typing.get_args(config.TeacherTta) == ("run", *typing.get_args(config.Tta))
    cfg = config.load_config(ROOT / "configs/distill.yaml")
    assert cfg.distill.enabled and not cfg.distill.teachers and cfg.train.boost  # on top of r18_boost
    for bad, message in [("distill.alpha=1.5", "distill.alpha: must be in [0, 1]"),
                         ("distill.temperature=0", "distill.temperature: must be above 0"),
                         ("distill.method=mean", "distill.method: 'mean' is not one of"),
                         ("distill.teacher=[a]", "unknown config key 'distill.teacher'")]:
        with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            config.load_config(ROOT / "configs/distill.yaml", [bad])


def test_student_trains_on_its_teachers_and_is_an_ordinary_run(kaggle_store, teacher, tmp_path):
    from doodle.predict.exported import store_logits
    from doodle.predict.loaded_run import load_run
    from doodle.runs.folder import load_logits
    from doodle.store.format import Store
    from doodle.train.data import make_split

    train = command_module(ROOT / "src/train.py")
    args = _distill(kaggle_store, tmp_path, "--set", f"distill.teachers=[{teacher}]", "distill.tta=run")
    assert train.main(args) == 0
    run = tmp_path / "distill/fold0"
    folder = run / "teacher"
    logp = np.load(folder / LOGPROBS, mmap_mode="r")
    with np.load(folder / KEYS) as z:
        keys, classes = z["key_id"], list(z["classes"])
    t = load_run(teacher / "fold0")
    store = Store(kaggle_store)
    split = make_split(store, t.cfg, 0)
    assert classes == t.classes and logp.dtype == np.float16 and logp.shape == (len(split.train_idx), 27)
    assert np.array_equal(keys, np.asarray(store.key_id[split.train_idx]))
    # the teacher's own predict path, with its val.tta (distill.tta=run): one teacher's blend is its softmax
    first = store_logits(t, store, split, split.train_idx[:16], t.cfg.val.tta)
    assert np.allclose(logp[:16], torch.from_numpy(first).log_softmax(1).numpy(), atol=0.02)
    assert (run / "summary.json").is_file() and np.isfinite(json.loads((run / "summary.json").read_text())["val/map3"])

    made = (folder / LOGPROBS).stat().st_mtime_ns
    assert train.main([*args, "--resume"]) == 0  # the finished run resumed: reads the teachers' folder again
    assert (folder / LOGPROBS).stat().st_mtime_ns == made
    assert (run / "train.log").read_text().count("log-probabilities in") == 1

    # no distillation code on the way: the student is an ordinary ensemble member and predict run
    ensemble = command_module(ROOT / "tools/ensemble.py")
    assert ensemble.main([str(run), str(teacher), "--out", str(tmp_path / "blend.csv")]) == 0
    assert json.loads((tmp_path / "blend.json").read_text())["val_rows"] == len(load_logits(run / "val_logits.npz")["key_id"])
    predict = command_module(ROOT / "src/predict.py")
    assert predict.main(["--run", str(run), "--test", str(ROOT / "input/sample/test_simplified.csv"),
                         "--out", str(tmp_path / "sub.csv"), "--device", "cpu"]) == 0
    assert load_logits(run / "test_logits.npz")["logits"].shape == (270, 27)


def test_a_student_can_start_from_its_teacher(kaggle_store, teacher, tmp_path):
    """distill.init=teacher: the student's first weights are the teacher's (a learning rate of 1e-9 leaves them)."""
    from doodle.config import load_resolved
    from doodle.runs.folder import load_checkpoint

    train = command_module(ROOT / "src/train.py")
    args = _distill(kaggle_store, tmp_path, "--set", f"distill.teachers=[{teacher}]", "distill.init=teacher",
                    "train.lr=1e-9", "train.warmup_epochs=0")
    assert train.main(args) == 0
    run = tmp_path / "distill/fold0"
    assert load_resolved(run / "config.yaml")[0].model.weights == str(teacher / "fold0/checkpoints/best.pt")
    theirs, ours = (load_checkpoint(r / "checkpoints/best.pt")["model"] for r in (teacher / "fold0", run))
    convs = [k for k in theirs if k.endswith("conv1.weight") or k == "fc.weight"]
    assert len(convs) >= 9  # the stem, every block's first conv, the head
    for k in convs:
        assert torch.allclose(ours[k], theirs[k], atol=1e-5), k


def test_a_student_trains_on_mixed_batches(kaggle_store, teacher, tmp_path):
    """augment.mixup / cutmix with distillation: every batch mixed, the teachers' targets with it (the mixing
    itself: tests/train/test_mix.py); the run finishes with finite losses and a validation score."""
    train = command_module(ROOT / "src/train.py")
    args = _distill(kaggle_store, tmp_path, "--set", f"distill.teachers=[{teacher}]", "augment.mixup=0.2",
                    "augment.cutmix=1.0", "augment.mix_prob=1.0")
    assert train.main(args) == 0
    run = tmp_path / "distill/fold0"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(np.isfinite(float(r["train/loss"])) and float(r["train/loss"]) > 0 for r in rows)
    assert np.isfinite(json.loads((run / "summary.json").read_text())["val/map3"])


def _stale_folder(path: Path, teacher: Path, classes: list[str]) -> Path:
    """A complete-looking teacher folder by the right teacher, made with distill.yaml's settings, that holds only
    3 drawings."""
    d = config.load_config(ROOT / "configs/distill.yaml").distill
    path.mkdir()
    np.save(path / LOGPROBS, np.zeros((3, len(classes)), np.float16))
    buf = io.BytesIO()
    np.savez(buf, key_id=np.arange(3, dtype=np.int64), classes=np.array(classes), method=d.method, tta=d.tta,
             teachers=np.array([str((teacher / "fold0").resolve())]))
    (path / KEYS).write_bytes(buf.getvalue())
    return path


def test_bad_teachers_are_one_line_errors_before_training(kaggle_store, teacher, tmp_path, capsys):
    train = command_module(ROOT / "src/train.py")
    words = (ROOT / "input/sample/classes.txt").read_text().split("\n")
    stale = _stale_folder(tmp_path / "stale", teacher, _classes(teacher))
    cases = [
        (["--set", f"distill.teachers=[{tmp_path / 'nope'}]"], "nope not found"),
        (["--set", f"distill.teachers=[{tmp_path}]"], "is not a run"),
        (["--set", f"distill.teachers=[{teacher}]", "--fold", "1"], "has fold(s) [0], not the student's fold 1"),
        (["--set", f"distill.teachers=[{teacher}]", f"data.classes=[{','.join(words[:5])}]"],
         "was trained on 27 classes, the student has 5"),
        (["--set", f"distill.teachers=[{teacher}]", f"distill.cache={stale}"],
         "do not cover the training drawings: "),
        (["--set", f"distill.teachers=[{teacher}]", f"distill.cache={stale}", "distill.method=logit_mean"],
         "were made by other teachers or settings"),
        (["--set", f"distill.teachers=[{teacher}]", "distill.init=teacher", "model.kwargs={output_stride: 16}"],
         "distill.init=teacher: no teacher among"),
        (["--set", f"distill.teachers=[{teacher}]", "distill.init=teacher", f"model.weights={stale / LOGPROBS}"],
         "both name the student's starting weights"),
        ([], "distill.teachers is empty"),
        (["--set", f"distill.teachers=[{teacher}]", "distill.enabled=false"], "distill.enabled is false"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        args = _distill(kaggle_store, out, *extra)  # a later --fold overrides the earlier one
        capsys.readouterr()
        assert cli.run(train.main, args) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], (extra, err[-1])
        assert not list(out.rglob("last.pt")) and not list(out.rglob("metrics.csv")), extra


def _classes(teacher: Path) -> list[str]:
    from doodle.config import load_resolved

    return load_resolved(teacher / "fold0/config.yaml")[1]["classes"]


def _subset(kaggle_store: Path, n: int = 20) -> list[str]:
    """The first n of the sample's classes (the rest of its classes are the transfer set)."""
    from doodle.store.format import Store

    store = Store(kaggle_store)
    return [c for c, k in zip(store.classes, store.class_counts(), strict=True) if k > 0][:n]


def test_the_transfer_set_is_the_training_folds_drawings_of_the_other_classes(kaggle_store):
    from doodle.store.format import Store
    from doodle.train.data import QuotaSampler, make_split
    from doodle.train.distill import taught_idx

    store = Store(kaggle_store)
    words = _subset(kaggle_store)
    cfg = config.load_config(ROOT / "configs/distill.yaml", [f"data.store={kaggle_store}",
                                                             f"data.classes=[{','.join(words)}]"])
    split = make_split(store, cfg, 0, transfer=True)
    t = np.asarray(split.transfer_idx)
    names = np.array(store.classes)[np.asarray(store.label[t])]
    fold = np.asarray(store.fold)
    assert len(t) > 50 and not np.isin(names, words).any() and len(set(names)) == 7  # the sample's other 7 classes
    assert (fold[t] != 0).all() and np.array_equal(t, np.sort(t))
    other = np.flatnonzero(~np.isin(np.array(store.classes)[np.asarray(store.label)], words) & (fold != 0))
    assert np.array_equal(t, other)  # every one of them, nothing else
    assert (split.targets(store, t) == -1).all() and not np.isin(t, split.train_idx).any()
    assert np.array_equal(taught_idx(split), np.union1d(split.train_idx, t))
    everything = make_split(store, config.load_config(ROOT / "configs/distill.yaml", [f"data.store={kaggle_store}"]),
                            0, transfer=True)
    assert len(everything.transfer_idx) == 0  # a student of every class: no transfer set
    assert make_split(store, cfg, 0).transfer_idx is None

    quotas = np.full(20, 9)
    s = QuotaSampler(split.train_idx, lambda i: split.targets(store, i, np.int16), 20, quotas, 16, transfer=t,
                     transfer_share=0.25)
    epoch = s.epoch_indices()
    assert s.transfer_count() == 60 and len(s) == -(-(180 + 60) // 16)
    assert np.isin(epoch, t).sum() == 60 and np.isin(epoch, split.train_idx).sum() == len(epoch) - 60


def test_transfer_drawings_have_no_hard_loss_only_the_teachers():
    g = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g).log_softmax(1)
    target = torch.tensor([0, 1, -1, 3, -1, 0])
    lab = target >= 0
    assert torch.allclose(distill_loss(logits, target, teacher, 0.0, 2.0, 0.1),
                          F.cross_entropy(logits[lab], target[lab], label_smoothing=0.1))
    x = logits.clone().requires_grad_(True)
    none = distill_loss(x, torch.full((6,), -1), teacher, 0.5, 2.0)
    t = 2.0
    kl = F.kl_div((x / t).log_softmax(1), (teacher / t).log_softmax(1), reduction="batchmean", log_target=True)
    assert torch.allclose(none, 0.5 * t * t * kl)
    none.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_a_student_learns_from_a_transfer_set(kaggle_store, tmp_path):
    """distill.transfer: the teachers' pass covers the transfer set too, a share of each epoch comes from it, and
    the student is an ordinary run of its own classes."""
    from doodle.runs.folder import load_logits
    from doodle.store.format import Store
    from doodle.train.data import make_split

    words = _subset(kaggle_store)
    classes = f"data.classes=[{','.join(words)}]"
    train = command_module(ROOT / "src/train.py")
    assert train.main(_args(kaggle_store, tmp_path / "t", "demo.yaml", "--name", "t", "--set", classes)) == 0
    args = _distill(kaggle_store, tmp_path, "--set", classes, f"distill.teachers=[{tmp_path / 't/t'}]",
                    "distill.transfer=0.5", "train.epochs=2")
    assert train.main(args) == 0
    run = tmp_path / "distill/fold0"
    store = Store(kaggle_store)
    split = make_split(store, config.load_config(ROOT / "configs/distill.yaml", [f"data.store={kaggle_store}",
                                                                                 classes]), 0, transfer=True)
    with np.load(run / "teacher" / KEYS) as z:
        keys = z["key_id"]
    want = np.asarray(store.key_id[np.union1d(split.train_idx, split.transfer_idx)])
    assert np.array_equal(keys, want) and np.load(run / "teacher" / LOGPROBS).shape == (len(want), 20)
    log = (run / "train.log").read_text()
    assert f"distill.transfer: {len(split.transfer_idx)} training drawings of 7 classes outside data.classes" in log
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    # epoch 0: 4 drawings per class x 20 classes + as many transfer drawings (share 0.5), in batches of 32
    assert len(rows) == 2 and int(rows[0]["train/images"]) == 160
    assert all(np.isfinite(float(r["train/loss"])) and 0 <= float(r["train/acc1"]) <= 1 for r in rows)
    assert load_logits(run / "val_logits.npz")["logits"].shape[1] == 20


def test_a_transfer_set_needs_distillation_and_no_mixing(kaggle_store, tmp_path, capsys):
    train = command_module(ROOT / "src/train.py")
    for sets, message in [(["distill.enabled=false", "distill.transfer=0.25"],
                           "distill.transfer=0.25 but distill.enabled is false"),
                          (["distill.teachers=[x]", "distill.transfer=0.25", "augment.mixup=0.2"],
                           "distill.transfer with augment.mixup / augment.cutmix"),
                          (["distill.teachers=[x]", "distill.transfer=0.95"], "distill.transfer")]:
        capsys.readouterr()
        assert cli.run(train.main, _distill(kaggle_store, tmp_path, "--set", *sets)) == 2, sets
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], (sets, err[-1])
        assert not list(tmp_path.rglob("metrics.csv")), sets
