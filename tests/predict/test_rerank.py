"""The rerank second stage: candidates, out-of-fold discipline (no drawing's label reaches its own score), use of
metadata, the inputs from a store and a test file, and `tools/ensemble.py --method rerank`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import command_module
from sklearn.model_selection import KFold

from doodle.drawing.flat import Drawings
from doodle.metrics import map_at_k, softmax
from doodle.predict import rerank
from doodle.predict.rerank_inputs import (
    Inputs,
    common_features,
    drawing_stats,
    inputs_from_store,
    inputs_from_test_file,
)
from doodle.runs.folder import RunDir, save_logits
from doodle.store.format import Store

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TEST = ROOT / "input/sample/test_simplified.csv"


def noisy_probs(target, n_classes, rng, signal=1.5, noise=1.0):
    x = rng.standard_normal((len(target), n_classes)) * noise
    x[np.arange(len(target)), target] += signal
    return softmax(x)


def test_candidates_are_the_union_of_each_members_top_k():
    a = np.array([[0.5, 0.3, 0.1, 0.05, 0.05], [0.1, 0.2, 0.3, 0.4, 0.0]])
    b = np.array([[0.0, 0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4, 0.0]])
    cand = rerank.Candidates.of([a, b], k=3)
    assert list(zip(cand.drawing.tolist(), cand.cls.tolist(), strict=True)) == [
        (0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (1, 2), (1, 3)]
    assert cand.recall(np.array([4, 0])) == 0.5


def test_out_of_fold_scores_never_see_their_own_labels():
    """Perturb the labels of one fold's drawings only: those drawings' out-of-fold scores must not move (their
    model was fitted on the other folds), while the other drawings' scores move (their models saw the changed
    labels). A reranker fitted on all rows fails the first half."""
    rng = np.random.default_rng(0)
    n, c = 400, 8
    target = rng.integers(0, c, n)
    probs = [noisy_probs(target, c, rng), noisy_probs(target, c, rng, signal=1.0)]
    meta = {"n_strokes": rng.integers(1, 9, n), "countrycode": rng.choice(["US", "DE", "BR"], n)}
    prior = np.full(c, 1 / c, np.float32)
    kw = {"prior": prior, "meta": meta, "k": 4, "n_splits": 4, "seed": 3, "threads": 1}
    before, _, _ = rerank.rerank_oof(probs, target, **kw)
    held = next(iter(KFold(n_splits=4, shuffle=True, random_state=3).split(np.arange(n))))[1]
    changed = target.copy()
    changed[held] = rng.permutation(changed[held]) + 1
    changed[held] %= c
    after, _, _ = rerank.rerank_oof(probs, changed, **kw)
    others = np.setdiff1d(np.arange(n), held)
    np.testing.assert_array_equal(after[held], before[held])
    assert not np.allclose(after[others], before[others])
    # the refitted model sees every label: it is the one for the test set
    _, refit, _ = rerank.rerank_oof(probs, target, **kw)
    _, refit_changed, _ = rerank.rerank_oof(probs, changed, **kw)
    assert not np.allclose(refit.predict(probs, prior, meta)[held], refit_changed.predict(probs, prior, meta)[held])


def test_metadata_lets_the_reranker_separate_what_the_members_confuse():
    """Classes 0 and 1 look alike to both members (equal probabilities) but differ in stroke count: with the
    metadata the reranker beats the plain mean; with probabilities only it cannot."""
    rng = np.random.default_rng(1)
    n, c = 600, 6
    target = rng.integers(0, c, n)
    probs = []
    for _ in range(2):
        p = noisy_probs(target, c, rng, signal=2.5)
        pair = p[:, 0] + p[:, 1]
        p[:, 0] = p[:, 1] = pair / 2
        probs.append(p)
    strokes = np.where(target == 0, 1, np.where(target == 1, 6, rng.integers(1, 7, n)))
    mean = (probs[0] + probs[1]) / 2
    with_meta, model, info = rerank.rerank_oof(probs, target, meta={"n_strokes": strokes}, k=3, threads=1)
    plain, _, _ = rerank.rerank_oof(probs, target, k=3, threads=1)
    assert "n_strokes" in info["features"] and "prior" not in info["features"]
    assert map_at_k(with_meta, target) > map_at_k(mean, target) + 0.05
    assert map_at_k(plain, target) < map_at_k(with_meta, target) - 0.05
    np.testing.assert_allclose(with_meta.sum(axis=1), 1, rtol=1e-5)
    test = model.predict([p[:9] for p in probs], meta={"n_strokes": strokes[:9]})
    assert test.shape == (9, c) and ((test > 0).sum(axis=1) >= 3).all()


def test_rerank_is_deterministic_and_checks_its_arguments():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 5, 100)
    probs = [noisy_probs(target, 5, rng)]
    a = rerank.rerank_oof(probs, target, k=3, objective="binary")[0]
    np.testing.assert_array_equal(a, rerank.rerank_oof(probs, target, k=3, objective="binary")[0])
    with pytest.raises(ValueError, match="k >= 3"):
        rerank.rerank_oof(probs, target, k=2)
    with pytest.raises(ValueError, match="not one of lambdarank, binary"):
        rerank.rerank_oof(probs, target, objective="xendcg")


def test_drawing_stats_count_strokes_points_and_time():
    d = Drawings(np.zeros((5, 2), np.uint8), np.array([0, 40, 90, -1, -1], np.int32), np.array([2, 1, 2], np.int32),
                 np.array([2, 1], np.int32))
    s = drawing_stats(d)
    assert s["n_strokes"].tolist() == [2, 1] and s["n_points"].tolist() == [3, 2]
    assert s["duration_ms"].tolist() == [90, -1]


def test_store_inputs_give_each_drawing_the_prior_of_the_other_folds(kaggle_store):
    store = Store(kaggle_store)
    folds, labels = np.asarray(store.fold), np.asarray(store.label)
    rows = np.flatnonzero(folds == 1)[:20]
    classes = list(store.classes)
    val = inputs_from_store(kaggle_store, store.key_id[rows], classes)
    other = np.bincount(labels[folds != 1], minlength=len(classes))
    np.testing.assert_allclose(val.prior, np.tile(other / other.sum(), (20, 1)), rtol=1e-6)
    assert val.meta["n_strokes"].tolist() == np.asarray(store.take(rows).n_strokes).tolist()
    assert set(val.meta["recognized"].tolist()) <= {0, 1} and all(val.meta["countrycode"])
    assert not val.notes
    missing = inputs_from_store(kaggle_store, np.array([1, 2]), classes)
    assert missing.meta is None and missing.prior is not None and "no drawing metadata" in missing.notes[0]
    nothing = inputs_from_store(None, store.key_id[rows], classes)
    assert nothing.prior is None and nothing.meta is None and "probability features only" in nothing.notes[0]


def test_test_inputs_from_kaggles_test_csv_lack_recognized(kaggle_store):
    keys = np.array([int(line.split(",")[0]) for line in SAMPLE_TEST.read_text().splitlines()[1:]][::-1])
    classes = list(Store(kaggle_store).classes)
    test = inputs_from_test_file(kaggle_store, SAMPLE_TEST, keys, classes)
    assert test.prior.shape == (len(classes),) and len(test.meta["n_points"]) == len(keys)
    assert (test.meta["n_points"] > 0).all() and (test.meta["recognized"] == -1).all()
    val = Inputs(np.zeros((3, len(classes))), {k: np.zeros(3) for k in rerank.META_COLUMNS})
    val_c, test_c, notes = common_features(val, test)
    assert set(val_c.meta) == set(test_c.meta) == {"n_strokes", "n_points", "duration_ms", "countrycode"}
    assert any("recognized" in n for n in notes)


# ---------------------------------------------------------------- tools/ensemble.py --method rerank


def fake_run(root: Path, name: str, keys, target, classes, test_keys, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    rd = RunDir.make(root, name, 0)
    rd.root.mkdir(parents=True)
    x = rng.standard_normal((len(keys), len(classes))).astype(np.float32)
    x[np.arange(len(keys)), target] += 2.0
    save_logits(rd.val_logits, x, keys, classes, target)
    save_logits(rd.test_logits, rng.standard_normal((len(test_keys), len(classes))), test_keys, classes)
    return rd.root


def test_ensemble_tool_reranks_with_the_stores_metadata(kaggle_store, tmp_path, capsys):
    store = Store(kaggle_store)
    rows = np.flatnonzero(np.asarray(store.fold) == 0)
    keys, target, classes = store.key_id[rows], np.asarray(store.label[rows], np.int64), list(store.classes)
    test_keys = np.array([int(line.split(",")[0]) for line in SAMPLE_TEST.read_text().splitlines()[1:]])
    runs = [fake_run(tmp_path / "out", f"run{i}", keys, target, classes, test_keys, i) for i in range(2)]
    out = tmp_path / "rerank.csv"
    tool = command_module(ROOT / "tools/ensemble.py")
    assert tool.main([*map(str, runs), "--method", "rerank", "--store", str(kaggle_store), "--test", str(SAMPLE_TEST),
                      "--out", str(out), "--rerank-k", "3"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report == json.loads(capsys.readouterr().out)
    scores = report["scores"]
    assert {"blend", "prob_mean", "stack", "rerank"} <= set(scores) and scores["rows"] == len(rows)
    assert {"prior", "n_strokes", "n_points", "countrycode"} <= set(scores["rerank"]["features"])
    assert "recognized" not in scores["rerank"]["features"]  # the test CSV has no such column
    assert any("recognized" in n for n in scores["rerank"]["notes"])
    assert scores["blend"]["val/map3"] > 0.5 and report["test_rows"] == len(test_keys)
    assert len(out.read_text().splitlines()) == len(test_keys) + 1


def test_ensemble_tool_rerank_without_a_store_says_it_uses_probabilities_only(tmp_path, capsys):
    rng = np.random.default_rng(5)
    classes = ["cat", "dog", "fish", "eye"]
    keys, target = np.arange(200) + 10, rng.integers(0, 4, 200)
    runs = [fake_run(tmp_path / "out", f"run{i}", keys, target, classes, np.arange(5), i) for i in range(2)]
    out = tmp_path / "rerank.csv"
    tool = command_module(ROOT / "tools/ensemble.py")
    assert tool.main([*map(str, runs), "--method", "rerank", "--out", str(out), "--rerank-k", "3"]) == 0
    captured = capsys.readouterr()
    assert "rerank: no store at None (set --store): no class prior and no drawing metadata" in captured.err
    report = json.loads(captured.out)
    assert report["scores"]["rerank"]["features"] == ["p_0", "rank_0", "p_1", "rank_1", "p_mean"]
    assert "probability features only" in report["scores"]["rerank"]["notes"][0]
