"""Training by source: data.source_weights / data.source_caps change what the sampler draws; data.exclude_folds
keeps a held-out fold out of training; pseudo-labelled drawings are never validated on."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from doodle.config import load_config
from doodle.errors import UserError
from doodle.store.format import Store
from doodle.store.prepare import prepare
from doodle.store.sources import PSEUDO_MANIFEST, row_sources
from doodle.train.data import QuotaSampler, make_split
from doodle.train.sources import apply_sources

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "input/sample"


@pytest.fixture(scope="module")
def pseudo_store(tmp_path_factory, make_opts, sample_classes) -> Path:
    """The sample's train CSVs (100 per class) plus its 270 test drawings as a pseudo-label folder `pl` (10 per
    class, labelled with their answers), prepared into one store."""
    root = tmp_path_factory.mktemp("pseudo_store")
    folder = root / "pl"
    folder.mkdir()
    test = pd.read_csv(SAMPLE / "test_simplified.csv", dtype=str)
    words = pd.read_csv(SAMPLE / "test_labels.csv", dtype=str)["word"]
    test.assign(word=words).to_csv(folder / "pseudo.csv", index=False)
    (folder / PSEUDO_MANIFEST).write_text(json.dumps({"name": "pl", "classes": sample_classes}))
    prepare([SAMPLE / "train_simplified", folder], root / "store", make_opts())
    return root / "store"


def split_for(store: Path, *sets: str, fold: int = 0):
    s = Store(store)
    cfg = load_config(None, [f"data.store={store}", *sets])
    return s, apply_sources(s, cfg, make_split(s, cfg, fold))


def pseudo_mask(s: Store) -> np.ndarray:
    source, names = row_sources(s.root, len(s))
    return source == names.index("pl")


def drawn_share(s: Store, split, per_class: int = 400) -> float:
    """Share of one epoch's draws (per_class of each class) that are pseudo-labelled drawings."""
    targets = split.targets(s, split.train_idx)
    n = len(split.classes)
    sampler = QuotaSampler(split.train_idx, targets, n, np.full(n, per_class), 64, seed=3,
                           weights=split.train_weight)
    return float(pseudo_mask(s)[sampler.epoch_indices()].mean())


def test_pseudo_drawings_are_trained_on_in_every_fold_and_validated_in_none(pseudo_store):
    s = Store(pseudo_store)
    mine = pseudo_mask(s)
    assert mine.sum() == 270 and (np.asarray(s.fold)[mine] == -1).all()
    for fold in range(s.info.n_folds):
        _, split = split_for(pseudo_store, fold=fold)
        assert not mine[split.val_idx].any() and mine[split.train_idx].sum() == 270


def test_source_weights_change_what_the_sampler_draws(pseudo_store):
    s, plain = split_for(pseudo_store)
    assert plain.train_weight is None
    base = drawn_share(s, plain)  # ~10 of ~90 training drawings per class
    assert 0.05 < base < 0.2
    _, heavy = split_for(pseudo_store, "data.source_weights={pl: 10}")
    assert drawn_share(s, heavy) > 0.45  # 100 of ~180 weight units
    _, light = split_for(pseudo_store, "data.source_weights={pl: 0.2, train_simplified: 1}")
    assert 0 < drawn_share(s, light) < base / 2
    _, none = split_for(pseudo_store, "data.source_weights={pl: 0}")
    assert not pseudo_mask(s)[none.train_idx].any() and drawn_share(s, none) == 0.0


def test_source_caps_keep_at_most_that_many_per_class_the_same_each_run(pseudo_store):
    s, capped = split_for(pseudo_store, "data.source_caps={pl: 3}")
    kept = capped.train_idx[pseudo_mask(s)[capped.train_idx]]
    per_class = np.bincount(np.asarray(s.label)[kept], minlength=len(s.classes))
    assert per_class.max() == 3 and per_class.sum() == 3 * 27
    assert np.array_equal(split_for(pseudo_store, "data.source_caps={pl: 3}")[1].train_idx, capped.train_idx)
    assert 0 < drawn_share(s, capped) < drawn_share(s, split_for(pseudo_store)[1])


def test_an_unknown_source_name_is_an_error_naming_the_stores_sources(pseudo_store):
    with pytest.raises(UserError, match=r"data.source_caps: no source named 'pseudo' in the store \(its sources: "
                                        r"pl, train_simplified\)"):
        split_for(pseudo_store, "data.source_caps={pseudo: 3}")


def test_exclude_folds_keeps_a_held_out_fold_out_of_training(pseudo_store):
    s, split = split_for(pseudo_store, "data.exclude_folds=[4]")
    folds = np.asarray(s.fold)
    assert not (folds[split.train_idx] == 4).any() and (folds[split.train_idx] == -1).sum() == 270
    assert (folds[split_for(pseudo_store)[1].train_idx] == 4).any()
    with pytest.raises(UserError, match=r"data.exclude_folds: fold 0 is the validation fold \(--fold 0\)"):
        split_for(pseudo_store, "data.exclude_folds=[0]")
    with pytest.raises(UserError, match=r"data.exclude_folds: fold 7 is not in the store \(folds 0..4\)"):
        split_for(pseudo_store, "data.exclude_folds=[7]")


def test_the_rerankers_class_prior_counts_pseudo_drawings_in_every_folds_training_share(pseudo_store):
    from doodle.predict.rerank_inputs import inputs_from_store

    s = Store(pseudo_store)
    folds, labels = np.asarray(s.fold), np.asarray(s.label)
    rows = np.flatnonzero(folds == 1)[:10]
    val = inputs_from_store(pseudo_store, np.asarray(s.key_id)[rows], list(s.classes))
    other = np.bincount(labels[folds != 1], minlength=len(s.classes))  # fold -1 included
    np.testing.assert_allclose(val.prior, np.tile(other / other.sum(), (10, 1)), rtol=1e-6)
