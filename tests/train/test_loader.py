"""BatchDataset / make_loader over a small store prepared from a few files of the bundled sample."""

from pathlib import Path

import numpy as np
import pytest
import torch

from doodle import resources
from doodle.config import load_config
from doodle.render.augment import flip_x
from doodle.render.raster import raster_spec, render_batch, render_drawing
from doodle.store.format import Store
from doodle.store.prepare import PrepareOptions, prepare
from doodle.train.data import BatchDataset, QuotaSampler, fixed_batches, make_loader, make_split

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "input" / "sample"
SIZE, BATCH = 32, 16


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """Three Kaggle CSVs (untimed) and two Google raw ndjson files (timed) of the sample."""
    files = sorted((SAMPLE / "train_simplified").glob("*.csv"))[:3] + sorted((SAMPLE / "raw").glob("*.ndjson"))[:2]
    out = tmp_path_factory.mktemp("loader") / "store"
    opts = PrepareOptions(classes=resources.kaggle_classes(), all_known=set(resources.google_classes()))
    summary = prepare(files, out, opts, workers=1)
    assert summary["kept"] > 100
    return Store(out)


@pytest.fixture(scope="module")
def cfg():
    """The real recipe, shrunk."""
    return load_config(ROOT / "configs" / "r18.yaml", [f"data.img_size={SIZE}", "data.num_workers=0",
                                                       "data.val_per_class=0", f"train.batch_size={BATCH}"])


@pytest.fixture(scope="module")
def split(store, cfg):
    return make_split(store, cfg, fold=0)


def collect(dataset, batches, workers: int) -> list[dict]:
    return list(make_loader(dataset, batches, num_workers=workers, seed=0))


def some_batches(split) -> list[list[int]]:
    idx = np.sort(np.concatenate([split.train_idx, split.val_idx]))
    return fixed_batches(idx[:: max(1, len(idx) // 80)], BATCH)  # ~80 drawings, timed ones included


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 1
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_images_are_uint8_nhwc_and_aligned_with_the_store(store, cfg, split):
    batches = some_batches(split)
    spec = raster_spec(cfg)
    out = collect(BatchDataset(store, split, cfg), batches, workers=0)
    for b, idx in zip(out, batches, strict=True):
        img = b["image"]
        assert img.dtype == torch.uint8 and tuple(img.shape) == (len(idx), SIZE, SIZE, 3)
        assert torch.equal(b["key_id"], torch.from_numpy(np.asarray(store.key_id[idx])))
        assert torch.equal(b["target"], torch.from_numpy(split.targets(store, np.asarray(idx))))
        for im, i in zip(img.numpy(), idx, strict=True):
            assert np.array_equal(im, render_drawing(store.drawing(i), spec)), f"drawing {i}"


def test_workers_give_the_same_batches_in_eval_mode(store, cfg, split):
    batches = some_batches(split)
    ds = BatchDataset(store, split, cfg)
    assert_same_batches(collect(ds, batches, 0), collect(ds, batches, 2))


def test_training_augmentation_is_the_same_with_or_without_workers(store, cfg, split):
    """The random state comes from (seed, batch indices), not from the worker that renders the batch."""
    batches = some_batches(split)
    ds = BatchDataset(store, split, cfg, train=True, seed=7)
    plain = collect(BatchDataset(store, split, cfg), batches, 0)
    aug0, aug2 = collect(ds, batches, 0), collect(ds, batches, 2)
    assert_same_batches(aug0, aug2)
    assert not all(torch.equal(a["image"], p["image"]) for a, p in zip(aug0, plain, strict=True))
    other = collect(BatchDataset(store, split, cfg, train=True, seed=8), batches, 0)
    assert not all(torch.equal(a["image"], o["image"]) for a, o in zip(aug0, other, strict=True))


def test_flip_dataset_renders_mirrored_drawings(store, cfg, split):
    idx = some_batches(split)[0]
    flipped = BatchDataset(store, split, cfg, flip=True)[idx]["image"].numpy()
    assert np.array_equal(flipped, render_batch(flip_x(store.take(idx)), raster_spec(cfg)))
    assert not np.array_equal(flipped, BatchDataset(store, split, cfg)[idx]["image"].numpy())


def test_timed_drawings_use_their_time_in_time3(store, cfg, split):
    raw = np.flatnonzero(np.asarray(store.arrays["raw"]) == 1)[:BATCH]
    untimed = np.flatnonzero(np.asarray(store.arrays["raw"]) == 0)[:BATCH]
    assert len(raw) and len(untimed)
    t3 = load_config(ROOT / "configs" / "r18.yaml", [f"data.img_size={SIZE}", "raster.encoding=time3"])
    for idx, differs in ((raw, True), (untimed, False)):
        a = BatchDataset(store, split, cfg)[idx.tolist()]["image"]
        b = BatchDataset(store, split, t3)[idx.tolist()]["image"]
        assert (not torch.equal(a, b)) == differs


def test_quota_sampler_batches_through_the_loader(store, cfg, split):
    n_classes = len(split.classes)
    sampler = QuotaSampler(split.train_idx, split.targets(store, split.train_idx), n_classes,
                           np.full(n_classes, 10), BATCH, seed=0)
    out = collect(BatchDataset(store, split, cfg, train=True), sampler, 0)
    assert len(out) == len(sampler) and all(len(b["target"]) == BATCH for b in out)
    targets = torch.cat([b["target"] for b in out])
    assert targets.min() >= 0 and targets.max() < n_classes



def test_split_indices_are_int32_and_those_of_plain_numpy(store, cfg, split):
    """4 bytes a training drawing (not int64's 8): the index arrays grow with the store."""
    label, fold = np.asarray(store.label), np.asarray(store.fold)
    used = np.isin(label, [store.classes.index(c) for c in split.classes])
    assert split.train_idx.dtype == split.val_idx.dtype == np.int32
    assert np.array_equal(split.train_idx, np.flatnonzero(used & (fold != 0)))
    assert np.array_equal(split.val_idx, np.flatnonzero(used & (fold == 0)))
    t = split.targets(store, split.train_idx)
    assert t.dtype == np.int64 and np.array_equal(split.targets(store, split.train_idx, np.int16), t)
    ds = BatchDataset(store, split, cfg)
    assert ds[split.train_idx[:4].tolist()]["target"].dtype == torch.int64  # what the loss takes


@pytest.mark.parametrize("chunk", [1, 13, 1 << 20])
def test_group_by_class_is_a_stable_sort_by_class_in_chunks(chunk, tmp_path):
    from doodle.train.data import group_by_class, scratch_array

    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(10**6, 3000, replace=False)).astype(np.int32)
    t = rng.integers(-1, 9, len(idx)).astype(np.int16)  # -1 and 7, 8: outside the 7 classes, left out
    order = np.argsort(t, kind="stable")
    expect = np.split(idx[order], np.searchsorted(t[order], np.arange(8)))[1:-1]
    of_idx = dict(zip(idx.tolist(), t.tolist(), strict=True))
    for got in (group_by_class(idx, t, 7, chunk),
                group_by_class(idx, lambda i: np.array([of_idx[k] for k in i.tolist()], np.int16), 7, chunk,
                               out=scratch_array(len(idx), idx.dtype, tmp_path))):
        assert len(got) == 7
        assert all(g.dtype == np.int32 and np.array_equal(g, e) for g, e in zip(got, expect, strict=True))


def test_cap_groups_keeps_the_smallest_key_id_hashes_of_each_group():
    """The capped validation set is the same as the plain lexsort-by-hash choice (the one every figure used)."""
    from doodle.train.data import _hash_rank, cap_groups

    rng = np.random.default_rng(1)
    keys = rng.choice(2**62, 500, replace=False).astype(np.int64)
    labels = rng.integers(0, 4, 500)
    order = np.lexsort((_hash_rank(keys), labels))
    first = np.searchsorted(labels[order], labels[order])
    expect = np.sort(order[(np.arange(500) - first) < 30])
    groups = [np.flatnonzero(labels == c).astype(np.int32) for c in range(4)]
    assert np.array_equal(cap_groups(groups, lambda i: keys[i], 30), expect)
    assert len(expect) == 4 * 30


def test_split_and_sampler_in_scratch_files_match_those_in_memory(store, cfg, tmp_path):
    """train.py keeps the split's and the sampler's index arrays memory-mapped from unnamed files (Kaggle's size:
    160 MB each, page cache rather than the process's own memory); they hold what the in-memory ones hold."""
    from doodle.train.data import train_sampler

    capped = load_config(ROOT / "configs" / "r18.yaml", [f"data.img_size={SIZE}", "data.val_per_class=3"])
    for c in (cfg, capped):
        a, b = make_split(store, c, 1), make_split(store, c, 1, tmp_path)
        assert isinstance(b.train_idx, np.memmap) and not isinstance(a.train_idx, np.memmap)
        assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.val_idx, b.val_idx)
        assert a.train_idx.dtype == b.train_idx.dtype == np.int32
        quotas = np.full(len(a.classes), 7)
        mem = QuotaSampler(a.train_idx, a.targets(store, a.train_idx), len(a.classes), quotas, 8, seed=4)
        mapped = train_sampler(store, b, quotas, 8, seed=4, scratch=tmp_path)
        assert all(isinstance(g, np.memmap) for g in mapped.by_class if len(g))
        assert list(mem) == list(mapped)
    label = np.asarray(store.label)
    val = make_split(store, capped, 1).val_idx
    assert np.bincount(label[val]).max() == 3
    assert list(tmp_path.iterdir()) == []  # nothing left behind, even by a killed run


def test_making_the_split_holds_no_store_long_array(tmp_path, monkeypatch):
    """At Kaggle's size a store-long temporary is 0.4 GB (an int16 column widened to int64: the class count of
    `data.classes: all` did that): making the split in scratch files must hold far less than one int64 per
    drawing at any moment. A store of 200,000 one-point drawings, written directly."""
    import json
    import tracemalloc

    from doodle.store import format as store_format
    from doodle.train import data

    n, classes = 200_000, resources.kaggle_classes()[:40]
    root = tmp_path / "store"
    root.mkdir()
    rng = np.random.default_rng(0)
    key_id = rng.permutation(n).astype(np.int64) + 10**15
    columns = {"xy": np.full((n, 2), 7, np.uint8), "stroke_len": np.ones(n, np.int32),
               "pt_off": np.arange(n + 1, dtype=np.int64), "st_off": np.arange(n + 1, dtype=np.int64),
               "key_id": key_id, "label": rng.integers(0, len(classes), n).astype(np.int16),
               "fold": store_format.fold_of(key_id, 5).astype(np.int8), "raw": np.zeros(n, np.uint8)}
    for name, values in columns.items():
        values.tofile(store_format.array_path(root, name))
    (root / "store.json").write_text(json.dumps({
        "format_version": store_format.FORMAT_VERSION, "n_drawings": n, "n_strokes": n, "n_points": n,
        "classes": classes, "n_folds": 5, "has_time": False}))
    store = Store(root)
    cfg = load_config(ROOT / "configs" / "r18.yaml", [f"data.img_size={SIZE}", "data.val_per_class=0"])  # classes: all
    monkeypatch.setattr(data, "CHUNK", 1 << 14)
    monkeypatch.setattr(store_format, "KEY_SCAN", 1 << 14)
    tracemalloc.start()
    try:
        split = make_split(store, cfg, 1, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(store.class_counts(), np.bincount(columns["label"], minlength=len(classes)))
    assert len(split.classes) == 40 and len(split.train_idx) == int((columns["fold"] != 1).sum())
    assert peak < 4 * n, f"making the split held {peak:,} bytes at once for {n:,} drawings"
