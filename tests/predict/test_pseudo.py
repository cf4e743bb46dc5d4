"""Pseudo-labelling: the threshold chooser, tools/pseudo.py on synthetic run folders and the bundled sample's
test file, what prepare makes of its folder (a train-only source), and the bad-input errors."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import command_module

from doodle import cli
from doodle.config import load_config
from doodle.errors import UserError
from doodle.predict.pseudo import PseudoError, choose_threshold, confident
from doodle.runs.folder import RunDir, save_logits
from doodle.store.format import Store
from doodle.store.prepare import prepare
from doodle.store.sources import PSEUDO_MANIFEST, TRAIN_ONLY_FOLD, row_sources
from doodle.train.data import make_split

ROOT = Path(__file__).resolve().parents[2]
pseudo_tool = command_module(ROOT / "tools/pseudo.py")


def probs_of(conf: list[float], right: list[bool], n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose top probability is conf[i] on class 0, with target 0 when right[i] else 1."""
    p = np.array([[c, (1 - c) / 2, (1 - c) / 2] for c in conf])[:, :n_classes]
    return p, np.where(right, 0, 1)


# ---------------------------------------------------------------- the threshold chooser


def test_threshold_is_the_lowest_that_keeps_the_target_precision():
    p, t = probs_of([0.9, 0.8, 0.7, 0.6, 0.5], [True, True, False, True, True])
    # kept precision by threshold: 0.9 -> 1, 0.8 -> 1, 0.7 -> 2/3, 0.6 -> 3/4, 0.5 -> 4/5
    assert choose_threshold(p, t, 0.75).threshold == pytest.approx(0.5)
    chosen = choose_threshold(p, t, 0.9)
    assert chosen.threshold == pytest.approx(0.8) and chosen.val_kept == 2 and chosen.val_precision == 1.0
    assert choose_threshold(p, t, 1.0).threshold == pytest.approx(0.8)


def test_tied_probabilities_are_kept_or_dropped_together():
    p, t = probs_of([0.9, 0.7, 0.7], [True, True, False])
    chosen = choose_threshold(p, t, 0.9)  # 0.7 would keep both ties at precision 2/3
    assert chosen.threshold == pytest.approx(0.9) and chosen.val_kept == 1


def test_chosen_threshold_gives_the_target_precision_on_random_calibrated_drawings():
    rng = np.random.default_rng(0)
    n, c = 4000, 10
    logits = rng.standard_normal((n, c)) * rng.uniform(0.5, 4, (n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    target = np.array([rng.choice(c, p=row) for row in probs])  # calibrated: the top class is right as often as it says
    for goal in (0.8, 0.9, 0.95):
        chosen = choose_threshold(probs, target, goal)
        kept = probs.max(1) >= chosen.threshold
        precision = (probs[kept].argmax(1) == target[kept]).mean()
        assert precision >= goal and kept.sum() == chosen.val_kept
        lower = np.sort(probs.max(1))[np.sort(probs.max(1)) < chosen.threshold][-1]
        more = probs.max(1) >= lower  # the next lower threshold misses the target
        assert (probs[more].argmax(1) == target[more]).mean() < goal
    rows, labels = confident(probs, chosen.threshold)
    assert np.array_equal(rows, np.flatnonzero(kept)) and np.array_equal(labels, probs[kept].argmax(1))


@pytest.mark.parametrize("goal", [0, -0.1, 1.01, float("nan"), 95])
def test_a_target_out_of_range_is_an_error(goal):
    p, t = probs_of([0.9], [True])
    with pytest.raises(PseudoError, match="out of range: expected a share in .0, 1."):
        choose_threshold(p, t, goal)


def test_an_unreachable_target_is_an_error():
    p, t = probs_of([0.9, 0.8], [False, True])
    with pytest.raises(PseudoError, match="no threshold reaches precision 0.99 on the 2 validation"):
        choose_threshold(p, t, 0.99)


# ---------------------------------------------------------------- tools/pseudo.py on the sample


@pytest.fixture(scope="module")
def sample_test() -> tuple[pd.DataFrame, list[str]]:
    """The bundled sample's test key_ids with their answers, and its 27 classes (in the store's order)."""
    labels = pd.read_csv(ROOT / "input/sample/test_labels.csv")
    classes = sorted(w for w in (ROOT / "input/sample/classes.txt").read_text().splitlines() if w)
    return labels, classes


def fake_run(root: Path, labels: pd.DataFrame, classes: list[str], test_keys=None, test_classes=None) -> Path:
    """A run folder with out-of-fold val logits (confident rows right 98% of the time, the rest at chance) and
    test logits for the sample's test file: its first half confident and right, the rest flat."""
    rng = np.random.default_rng(1)
    run = RunDir(root / "fold0")
    run.create()
    n_val, c = 400, len(classes)
    target = rng.integers(0, c, n_val)
    sure = rng.random(n_val) < 0.5
    guess = np.where(sure & (rng.random(n_val) < 0.98), target, rng.integers(0, c, n_val))
    val = np.where(sure[:, None], 0.0, 3.0) * rng.random((n_val, c))
    val[np.arange(n_val), guess] += np.where(sure, 8.0, 1.0)
    save_logits(run.val_logits, val.astype(np.float32), np.arange(n_val) + 10**9, classes, target)
    truth = labels["word"].map({w: i for i, w in enumerate(classes)}).to_numpy()
    test = np.zeros((len(labels), c), np.float32)
    half = np.arange(len(labels)) < len(labels) // 2
    test[np.flatnonzero(half), truth[half]] = 12.0
    keys = labels["key_id"].to_numpy() if test_keys is None else test_keys
    save_logits(run.test_logits, test[: len(keys)], keys, test_classes or classes)
    return root


def test_pseudo_labels_only_confident_drawings_and_prepare_reads_them_as_a_train_only_source(
        tmp_path, sample_test, make_opts):
    labels, classes = sample_test
    run = fake_run(tmp_path / "runs/r18", labels, classes)
    out = tmp_path / "pseudo_r18"
    assert pseudo_tool.main([str(run), "--test", str(ROOT / "input/sample/test_simplified.csv"), "--out", str(out),
                             "--precision", "0.95", "--labels", str(ROOT / "input/sample/test_labels.csv")]) == 0
    manifest = json.loads((out / PSEUDO_MANIFEST).read_text())
    assert manifest["val_precision"] >= 0.95 and manifest["kept"] == len(labels) // 2 == 135
    written = pd.read_csv(out / "pseudo.csv")
    assert list(written.columns) == ["key_id", "countrycode", "drawing", "word"]
    truth = labels.set_index("key_id")["word"]
    assert (written["word"].to_numpy() == truth[written["key_id"]].to_numpy()).all()

    store = tmp_path / "store"
    summary = prepare([out, ROOT / "input/sample/train_simplified"], store, make_opts(classes))
    assert summary["kept"] == 135 + 2700 - summary["duplicates"] and summary["rejected"] == 0
    assert str(out) in summary["pseudo"] and summary["pseudo"][str(out)]["kept"] == 135
    s = Store(store)
    source, names = row_sources(store, len(s))
    mine = source == names.index("pseudo_r18")
    assert mine.sum() == 135 and set(names) == {"pseudo_r18", "train_simplified"}
    assert (np.asarray(s.fold)[mine] == TRAIN_ONLY_FOLD).all() and (np.asarray(s.fold)[~mine] >= 0).all()
    by_key = dict(zip(written["key_id"], written["word"], strict=True))
    assert [s.classes[k] for k in np.asarray(s.label)[mine]] == [by_key[k] for k in np.asarray(s.key_id)[mine]]
    cfg = load_config(None, [f"data.store={store}"])
    for fold in range(s.info.n_folds):  # never validated on, always trained on
        split = make_split(s, cfg, fold)
        assert not mine[split.val_idx].any() and mine[split.train_idx].sum() == 135


def test_prepare_refuses_pseudo_labels_made_for_another_class_list(tmp_path, sample_test, make_opts):
    labels, classes = sample_test
    out = tmp_path / "pseudo"
    pseudo_tool.main([str(fake_run(tmp_path / "run", labels, classes)), "--test",
                      str(ROOT / "input/sample/test_simplified.csv"), "--out", str(out)])
    with pytest.raises(UserError, match=r"_pseudo.json: pseudo-labels chosen among 27 classes, this store has 26 "
                                        r"\('zigzag' is not among this store's\)"):
        prepare([out, ROOT / "input/sample/train_simplified"], tmp_path / "store", make_opts(classes[:-1]))
    assert not (tmp_path / "store").exists()  # refused before anything was written


def run_cli(capsys, *argv) -> str:
    assert cli.run(pseudo_tool.main, list(map(str, argv))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_inputs_are_one_line_errors_before_anything_is_written(tmp_path, sample_test, capsys):
    labels, classes = sample_test
    test_csv = ROOT / "input/sample/test_simplified.csv"
    out = tmp_path / "out"
    good = fake_run(tmp_path / "good", labels, classes)
    assert "precision target 1.5 is out of range" in run_cli(capsys, good, "--test", test_csv, "--out", out,
                                                             "--precision", "1.5")
    partial = fake_run(tmp_path / "partial", labels, classes, test_keys=labels["key_id"].to_numpy()[:200])
    err = run_cli(capsys, partial, "--test", test_csv, "--out", out)
    assert "the test predictions lack 70 of the 270 key_ids of" in err and "another test file" in err
    other = fake_run(tmp_path / "other", labels, classes, test_classes=classes[::-1])
    assert "test logits have other classes than its validation logits" in run_cli(capsys, other, "--test",
                                                                                    test_csv, "--out", out)
    RunDir(good / "fold0").test_logits.unlink()
    assert "has no test_logits.npz: run src/predict.py" in run_cli(capsys, good, "--test", test_csv, "--out", out)
    assert not out.exists()


def test_holdout_writes_a_fold_as_an_unlabelled_test_file_with_its_answers(tmp_path, sample_store):
    from doodle.store.readers import read_file
    from doodle.tools.holdout import write_holdout

    s = Store(sample_store[0])
    assert write_holdout(s, 2, tmp_path)["rows"] == int((np.asarray(s.fold) == 2).sum())
    rows = np.flatnonzero(np.asarray(s.fold) == 2)
    assert (tmp_path / "test_simplified.csv").read_text().startswith("key_id,countrycode,drawing\n")
    (batch, rejects), = list(read_file(tmp_path / "test_simplified.csv"))
    assert not rejects and np.array_equal(batch.key_id, np.asarray(s.key_id)[rows])
    assert np.array_equal(batch.xy, s.take(rows).xy) and batch.word == [None] * len(rows)
    answers = pd.read_csv(tmp_path / "test_labels.csv")
    assert answers["word"].tolist() == [s.classes[k] for k in np.asarray(s.label)[rows]]
    with pytest.raises(UserError, match="--fold 5: the store .* has folds 0..4"):
        write_holdout(s, 5, tmp_path)
