"""What the reranker (`predict.rerank`) knows about drawings beyond the members' probabilities: the class prior
and each drawing's metadata, from the store (validation drawings) or the test file (test drawings).

Whatever cannot be reached (no store, key_ids missing from it, no test file, a column the test file lacks) is
left out of the features of both sides, and each omission is said in `notes` (the tool logs and reports them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from doodle.drawing.batch import concat_batches
from doodle.drawing.flat import Drawings
from doodle.store.format import Store
from doodle.store.readers import read_file


@dataclass
class Inputs:
    """Prior ((C,) or (N, C) class shares, or None) and metadata (name -> (N,) array, or None) of N drawings."""

    prior: np.ndarray | None = None
    meta: dict | None = None
    notes: list[str] = field(default_factory=list)

    def rows(self, idx: np.ndarray) -> Inputs:
        """The same for drawings `idx` only."""
        prior = self.prior[idx] if self.prior is not None and self.prior.ndim == 2 else self.prior
        meta = {k: np.asarray(v)[idx] for k, v in self.meta.items()} if self.meta is not None else None
        return Inputs(prior, meta, self.notes)


def drawing_stats(d: Drawings) -> dict[str, np.ndarray]:
    """Stroke count, point count and duration (ms from the first to the last point; -1 untimed) per drawing."""
    pt_off = d.offsets()[1]
    n_points = np.diff(pt_off)
    last = np.maximum(pt_off[1:] - 1, 0)
    t_last = np.asarray(d.t)[last] if len(d.t) else np.full(len(d), -1)
    return {"n_strokes": np.asarray(d.n_strokes, np.int64), "n_points": n_points.astype(np.int64),
            "duration_ms": np.where(n_points > 0, t_last, -1).astype(np.int64)}


def _class_counts(store: Store, classes: list[str], groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, C) store drawings per member class, by group (fold); classes the store lacks count 0."""
    labels = np.asarray(store.label, np.int64)
    n_store = len(store.classes)
    counts = np.bincount(groups * n_store + labels, minlength=n_groups * n_store).reshape(n_groups, n_store)
    where = {c: i for i, c in enumerate(store.classes)}
    out = np.zeros((n_groups, len(classes)), np.float64)
    for j, c in enumerate(classes):
        if c in where:
            out[:, j] = counts[:, where[c]]
    return out


def _shares(counts: np.ndarray) -> np.ndarray:
    return (counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1)).astype(np.float32)


def _store_meta(store: Store, rows: np.ndarray, key_ids: np.ndarray, notes: list[str]) -> dict:
    meta = drawing_stats(store.take(rows))
    path = store.root / "meta.parquet"
    if not path.is_file():
        notes.append(f"{path} not found: no countrycode / recognized features")
        return meta
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["key_id", "countrycode", "recognized"]).to_pydict()
    keys = np.asarray(table["key_id"], np.int64)
    order = np.argsort(keys)
    at = order[np.minimum(np.searchsorted(keys[order], key_ids), len(keys) - 1)]
    if not np.array_equal(keys[at], key_ids):
        notes.append(f"{path} lacks some key_ids: no countrycode / recognized features")
        return meta
    meta["countrycode"] = np.array([table["countrycode"][i] or "" for i in at], dtype=object)
    meta["recognized"] = np.asarray(table["recognized"], np.int64)[at]
    return meta


def inputs_from_store(store_path: Path | None, key_ids: np.ndarray, classes: list[str]) -> Inputs:
    """Validation drawings: a drawing of store fold f gets the class shares of the store's other folds (what
    the member models of that fold trained on; never its own label) and its metadata from the store."""
    out = Inputs()
    if store_path is None or not (Path(store_path) / "store.json").is_file():
        out.notes.append(f"no store at {store_path} (set --store): no class prior and no drawing metadata, "
                         "probability features only")
        return out
    store = Store(store_path)
    key_ids = np.asarray(key_ids, np.int64)
    rows = store.rows_of(key_ids)
    if (rows < 0).all():  # other drawings: the whole store is their training data
        out.prior = _shares(_class_counts(store, classes, np.zeros(len(store), np.int64), 1)[0])
        out.notes.append(f"no validation key_id is in {store_path}: no drawing metadata")
        return out
    if (rows < 0).any():
        out.notes.append(f"{int((rows < 0).sum())} of {len(rows)} validation key_ids are not in {store_path}: "
                         "no class prior and no drawing metadata, probability features only")
        return out
    folds = np.asarray(store.fold, np.int64)
    n = int(folds.max()) + 1  # train-only drawings (fold -1, pseudo-labels) count as group n: in no fold
    counts = _class_counts(store, classes, np.where(folds < 0, n, folds), n + 1)
    out.prior = _shares(counts.sum(axis=0) - counts[:n])[folds[rows]]
    out.meta = _store_meta(store, rows, key_ids, out.notes)
    return out


def inputs_from_test_file(store_path: Path | None, test_file: Path | None, key_ids: np.ndarray, classes: list[str]) -> Inputs:
    """Test drawings: the class shares of the whole store, metadata from the test file (Kaggle's test CSV:
    key_id, countrycode, drawing)."""
    out = Inputs()
    if store_path is not None and (Path(store_path) / "store.json").is_file():
        store = Store(store_path)
        out.prior = _shares(_class_counts(store, classes, np.zeros(len(store), np.int64), 1)[0])
    if test_file is None or not Path(test_file).is_file():
        out.notes.append(f"test file {test_file} not found: no drawing metadata for the test drawings")
        return out
    batch = concat_batches([b for b, _ in read_file(Path(test_file))])
    key_ids = np.asarray(key_ids, np.int64)
    order = np.argsort(batch.key_id)
    at = order[np.minimum(np.searchsorted(batch.key_id[order], key_ids), max(len(order) - 1, 0))]
    found = batch.key_id[at] == key_ids if len(order) else np.zeros(len(key_ids), bool)
    if not found.any():
        out.notes.append(f"{test_file} holds none of the test key_ids: no drawing metadata for the test drawings")
        return out
    if not found.all():  # rows predict.py read as blank drawings (listed in its predict_rejects.csv)
        out.notes.append(f"{int((~found).sum())} test key_ids have no readable drawing in {test_file}: their "
                         "metadata are those of an empty drawing")
    stats = drawing_stats(batch.take(at))
    out.meta = {k: np.where(found, v, 0 if k != "duration_ms" else -1) for k, v in stats.items()}
    out.meta["countrycode"] = np.array([batch.countrycode[i] or "" if f else "" for i, f in zip(at, found, strict=True)],
                                       dtype=object)
    out.meta["recognized"] = np.where(found, np.asarray(batch.recognized, np.int64)[at], -1)
    return out


def common_features(val: Inputs, test: Inputs | None) -> tuple[Inputs, Inputs | None, list[str]]:
    """Both sides restricted to what both have (a feature the test drawings lack is useless to learn), a column
    known for no drawing (recognized = -1 everywhere: Kaggle's test CSV) left out; with the notes."""
    notes = [*val.notes, *(test.notes if test else [])]
    sides = [val] + ([test] if test else [])
    have_meta = all(s.meta is not None for s in sides)
    columns = set(val.meta or {}) if have_meta else set()
    for s in sides if have_meta else []:
        columns &= set(s.meta)
        if "recognized" in s.meta and (np.asarray(s.meta["recognized"]) < 0).all():
            columns.discard("recognized")
    for s in sides:
        if s.meta and (dropped := sorted(set(s.meta) - columns)):
            notes.append(f"left out for lack of it on the other side or anywhere: {', '.join(dropped)}")
            break
    prior = all(s.prior is not None for s in sides)
    if not prior and any(s.prior is not None for s in sides):
        notes.append("class prior left out (not known for every side)")
    out = [Inputs(s.prior if prior else None, {k: s.meta[k] for k in columns} if columns else None, s.notes)
           for s in sides]
    return out[0], (out[1] if test else None), notes
