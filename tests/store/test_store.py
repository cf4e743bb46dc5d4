"""The prepared store reads back exactly the source drawings, hands out batches, and travels to workers cheaply."""

import csv
import json
import pickle
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from doodle.drawing.strokes import parse_kaggle_drawing, parse_ndjson_line
from doodle.store.format import Store, fold_of


@cache
def source_lines(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


def test_every_drawing_reads_back_as_its_source_row(sample_store, sample_classes):
    store = Store(sample_store[0])
    meta = pq.read_table(sample_store[0] / "meta.parquet").to_pydict()
    assert meta["key_id"] == np.asarray(store.key_id).tolist() and len(store) == sample_store[1]["kept"]
    n_raw = 0
    for i in range(len(store)):
        src, line = meta["source"][i], meta["line"][i]
        text = source_lines(src)[line - 1]
        if src.endswith(".ndjson"):
            rec = parse_ndjson_line(text)
            expected, word, key = rec.drawing, rec.word, rec.key_id
            n_raw += 1
        else:
            fields = next(csv.reader([text]))
            expected, word, key = parse_kaggle_drawing(fields[1]), fields[5], int(fields[2])
        got = store.drawing(i)
        assert store.key_id[i] == key and store.classes[store.label[i]] == word
        assert np.array_equal(got.xy, expected.xy) and np.array_equal(got.ends, expected.ends)
        assert (got.t is None) == (expected.t is None) == (not store.arrays["raw"][i])
        if got.t is not None:
            assert np.array_equal(got.t, expected.t)
    assert n_raw > 150 and store.classes == sample_classes


def test_take_equals_drawing_by_drawing(sample_store):
    store = Store(sample_store[0])
    raw = np.flatnonzero(np.asarray(store.arrays["raw"]))
    idx = np.array([5, 0, raw[0], len(store) - 1, 5, raw[-1], 1234])
    d = store.take(idx)
    assert d.xy.dtype == np.uint8 and d.t.dtype == np.int32 and d.n_strokes.dtype == np.int32
    d.check()
    assert len(d) == len(idx) and d.points_per_drawing().sum() == len(d.xy)
    for j, i in enumerate(idx):
        got, want = d.drawing(j), store.drawing(int(i))
        assert np.array_equal(got.xy, want.xy) and np.array_equal(got.ends, want.ends)
        assert (got.t is None) == (not store.arrays["raw"][i])
        assert got.t is None or np.array_equal(got.t, want.t)
    empty = store.take(np.zeros(0, np.int64))
    assert len(empty) == 0 and [len(a) for a in (empty.xy, empty.t, empty.stroke_len)] == [0, 0, 0]


def test_store_pickles_without_its_arrays(sample_store):
    store = Store(sample_store[0])
    store.take(np.arange(10))  # maps opened: they must not travel
    blob = pickle.dumps(store)
    assert len(blob) < 4096
    copy = pickle.loads(blob)
    assert copy._arrays is None and len(copy) == len(store)
    assert np.array_equal(copy.drawing(7).xy, store.drawing(7).xy)
    assert isinstance(store.arrays["xy"], np.memmap)


class _Drawings:
    """A minimal map-style dataset over the store: (index, key_id, number of points)."""

    def __init__(self, store: Store):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int):
        return i, int(self.store.key_id[i]), self.store.drawing(i).n_points


def test_dataloader_with_two_forked_workers(sample_store):
    import torch  # a requirement: a skip here would hide a missing install
    store = Store(sample_store[0])
    store.drawing(0)  # opened in the parent before forking, as training does
    loader = torch.utils.data.DataLoader(_Drawings(store), batch_size=256, num_workers=2,
                                         multiprocessing_context="fork")
    seen = {}
    for idx, keys, n_points in loader:
        seen.update(zip(idx.tolist(), zip(keys.tolist(), n_points.tolist(), strict=True), strict=True))
    assert sorted(seen) == list(range(len(store)))
    pt_off = np.asarray(store.arrays["pt_off"])
    assert all(seen[i] == (int(store.key_id[i]), int(pt_off[i + 1] - pt_off[i])) for i in range(len(store)))


def test_not_a_store_and_a_newer_format_are_clear_errors(sample_store, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a prepared store"):
        Store(tmp_path)
    manifest = json.loads((sample_store[0] / "store.json").read_text())
    (tmp_path / "store.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        Store(tmp_path)


def test_fold_of_is_fixed_and_spread():
    keys = np.array([0, 1, 2, 5_000_000_000_000_000, 9_223_372_036_854_775_807])
    assert fold_of(keys, 5).tolist() == fold_of(keys[::-1], 5).tolist()[::-1]
    assert fold_of(keys, 5).dtype == np.int8
    many = fold_of(np.arange(100_000) * 7919 + 4_500_000_000_000_000, 5)
    assert np.abs(np.bincount(many) / 100_000 - 0.2).max() < 0.01


def test_rows_of_finds_each_key_id_and_marks_the_missing(sample_store):
    store = Store(sample_store[0])
    keys = np.asarray(store.key_id)
    pick = np.array([len(keys) - 1, 0, 5])
    assert store.rows_of(keys[pick]).tolist() == pick.tolist()
    assert store.rows_of([1, keys[3], -7]).tolist() == [-1, 3, -1]


def key_column_store(root: Path, keys: np.ndarray) -> Store:
    """A store holding only key_ids (drawings without points): enough for `rows_of`, at any size."""
    root.mkdir()
    n = len(keys)
    keys.astype(np.int64).tofile(root / "key_id.i64")
    for name, dtype, count in (("pt_off.i64", np.int64, n + 1), ("st_off.i64", np.int64, n + 1),
                               ("label.i16", np.int16, n), ("fold.i8", np.int8, n), ("raw.u1", np.uint8, n)):
        np.zeros(count, dtype).tofile(root / name)
    (root / "store.json").write_text(json.dumps({"format_version": 1, "n_drawings": n, "n_strokes": 0, "n_points": 0,
                                                 "classes": ["cat"], "n_folds": 5, "has_time": False}))
    return Store(root)


def test_rows_of_reads_the_key_column_in_slices(tmp_path, monkeypatch):
    """Across slice edges, for repeated queries and a key_id the store repeats (its first row), and with memory
    that grows with the queries, not with the store (no sorted copy of every key_id: 16 bytes a drawing)."""
    import tracemalloc

    from doodle.store import format as store_format

    keys = np.random.default_rng(0).permutation(300_000).astype(np.int64) * 7 + 10**15
    keys[250_000] = keys[10]  # a repeat: row 10 is its first
    store = key_column_store(tmp_path / "s", keys)
    monkeypatch.setattr(store_format, "KEY_SCAN", 1 << 14)
    pick = np.array([299_999, 0, 65_535, 65_536, 10, 123_456, 0])
    q = np.concatenate([keys[pick], [3, keys[10]]])
    tracemalloc.start()
    got = store.rows_of(q)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got.tolist() == [*pick.tolist(), -1, 10]
    assert peak < 1_000_000, f"rows_of held {peak:,} bytes for 9 queries over 300,000 key_ids"
    assert store.rows_of([]).tolist() == [] and store.rows_of(np.array([[keys[7]]])).tolist() == [7]
