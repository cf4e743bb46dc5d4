"""The prepared store: drawings as vectors in flat memory-mapped arrays, plus metadata and folds.

Layout of a store folder::

    store.json        format version, counts, classes, folds, which array files exist
    xy.u8             (P, 2) uint8   all points, simplified 0..255 box
    t.i32             (P,)   int32   ms since the drawing's first point; -1 for untimed drawings
    stroke_len.i32    (S,)   int32   points per stroke
    pt_off.i64        (N+1,) int64   first point of each drawing
    st_off.i64        (N+1,) int64   first stroke of each drawing
    key_id.i64 label.i16 fold.i8 raw.u1     (N,) per-drawing columns used by training (fold -1: train-only,
                                            a pseudo-labelled drawing, see doodle.store.sources)
    meta.parquet      key_id, countrycode, recognized, timestamp, source, line (for tools and reports)
    summary.json      kept / rejected / duplicates, per class and per reason
    rejects.csv       every row that did not make it in, with file, line, key_id and reason

Arrays are opened with np.memmap, so DataLoader workers share the page cache instead of each holding a
copy. Folds come from a fixed hash of key_id: the same drawing lands in the same fold on every machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from doodle.drawing.flat import Drawings, take_rows
from doodle.drawing.strokes import Drawing
from doodle.errors import UserError, nearest_path

FORMAT_VERSION = 1
ARRAYS = {  # name -> (dtype, trailing shape)
    "xy": (np.uint8, (2,)),
    "t": (np.int32, ()),
    "stroke_len": (np.int32, ()),
    "pt_off": (np.int64, ()),
    "st_off": (np.int64, ()),
    "key_id": (np.int64, ()),
    "label": (np.int16, ()),
    "fold": (np.int8, ()),
    "raw": (np.uint8, ()),
}
KEY_SCAN = 1 << 20  # key_ids read at a time by Store.rows_of (8 MB)
SUFFIX = {np.uint8: "u8", np.int32: "i32", np.int64: "i64", np.int16: "i16", np.int8: "i8"}


def array_path(root: Path, name: str) -> Path:
    dtype, _ = ARRAYS[name]
    return Path(root) / f"{name}.{SUFFIX[dtype] if name != 'raw' else 'u1'}"


def fold_of(key_id: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold of each key_id from a fixed 64-bit mix (splitmix64), independent of order and machine."""
    z = np.asarray(key_id, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_folds)).astype(np.int8)


class ArrayAppender:
    """Append-only binary files for the store's arrays (one open handle per array).

    `sync` flushes them to disk on close (the final store); temporary shards skip it, as it costs more
    than writing them.
    """

    def __init__(self, root: Path, names: list[str], sync: bool = True):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.files = {n: open(array_path(self.root, n), "wb") for n in names}
        self.counts = dict.fromkeys(names, 0)
        self.sync = sync

    def append(self, name: str, values: np.ndarray) -> None:
        dtype, tail = ARRAYS[name]
        arr = np.ascontiguousarray(values, dtype=dtype)
        assert arr.shape[1:] == tail, (name, arr.shape)
        self.files[name].write(arr.tobytes())
        self.counts[name] += len(arr)

    def close(self) -> None:
        for f in self.files.values():
            f.flush()
            if self.sync:
                os.fsync(f.fileno())
            f.close()


def open_array(root: Path, name: str, count: int) -> np.ndarray:
    """Memory-map one array of a store (read-only); empty arrays come back as empty ndarrays."""
    dtype, tail = ARRAYS[name]
    if count == 0:
        return np.zeros((0, *tail), dtype=dtype)
    return np.memmap(array_path(root, name), dtype=dtype, mode="r", shape=(count, *tail))


@dataclass
class StoreInfo:
    n_drawings: int
    n_strokes: int
    n_points: int
    classes: list[str]
    n_folds: int
    has_time: bool


class Store:
    """Read access to a prepared store; cheap to pickle (workers re-open the memory maps lazily)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / "store.json"
        if not manifest.is_file():
            if hint := nearest_path(self.root):  # '' when the folder exists (it only lacks store.json)
                raise FileNotFoundError(f"{self.root}: not found{hint}")
            raise FileNotFoundError(f"{self.root}: not a prepared store (no store.json); "
                                    "run `python tools/prepare.py --src input/ --out input/store` first")
        meta = json.loads(manifest.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{manifest}: format_version {meta.get('format_version')}, "
                             f"this code reads {FORMAT_VERSION}; prepare the store again")
        self.info = StoreInfo(meta["n_drawings"], meta["n_strokes"], meta["n_points"], meta["classes"],
                              meta["n_folds"], meta["has_time"])
        self._arrays: dict[str, np.ndarray] | None = None
        self._class_counts: np.ndarray | None = None

    def __getstate__(self):
        return {"root": self.root, "info": self.info, "_arrays": None, "_class_counts": self._class_counts}

    def rows_of(self, key_ids) -> np.ndarray:
        """The rows holding these key_ids, -1 where one is not in the store (the first row, were one repeated).

        One pass over the key_id column, KEY_SCAN at a time, against the sorted queries: memory grows with the
        queries, not with the store (a sorted index of every key_id would hold 16 bytes a drawing, 0.8 GB at
        Kaggle's 50M). Ask for many key_ids in one call: each call reads the whole column."""
        q = np.asarray(key_ids, np.int64).reshape(-1)
        want, back = np.unique(q, return_inverse=True)
        rows = np.full(len(want), -1, np.int64)
        keys, left = self.key_id, len(want)
        for a in range(0, len(keys) if left else 0, KEY_SCAN):
            chunk = np.asarray(keys[a : a + KEY_SCAN])
            i = np.minimum(np.searchsorted(want, chunk), len(want) - 1)
            hit = np.flatnonzero(want[i] == chunk)
            hit = hit[rows[i[hit]] < 0][::-1]  # reversed: of a key repeated in the chunk, its first row is set last
            rows[i[hit]] = a + hit
            left = int((rows < 0).sum())
            if not left:
                break
        return rows[back.reshape(-1)]

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    def __len__(self) -> int:
        return self.info.n_drawings

    def _counts(self) -> dict[str, int]:
        n, s, p = self.info.n_drawings, self.info.n_strokes, self.info.n_points
        return {"xy": p, "t": p if self.info.has_time else 0, "stroke_len": s, "pt_off": n + 1,
                "st_off": n + 1, "key_id": n, "label": n, "fold": n, "raw": n}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {k: open_array(self.root, k, c) for k, c in self._counts().items()}
        return self._arrays

    @property
    def key_id(self) -> np.ndarray:
        return self.arrays["key_id"]

    @property
    def label(self) -> np.ndarray:
        return self.arrays["label"]

    @property
    def fold(self) -> np.ndarray:
        return self.arrays["fold"]

    def class_counts(self) -> np.ndarray:
        """Drawings per class (int64, one per `classes`), read KEY_SCAN labels at a time: a bincount of the whole
        column would first widen it to int64, 0.4 GB at Kaggle's 50M."""
        if self._class_counts is None:
            counts, label = np.zeros(len(self.classes), np.int64), self.label
            for a in range(0, len(label), KEY_SCAN):
                counts += np.bincount(np.asarray(label[a : a + KEY_SCAN]), minlength=len(self.classes))
            self._class_counts = counts
        return self._class_counts

    def drawing(self, i: int) -> Drawing:
        """Drawing i (float32 points in the 0..255 box; times when the drawing had them)."""
        return self.take([i]).drawing(0)

    def take(self, idx: np.ndarray) -> Drawings:
        """Drawings `idx` (any order) in memory: xy uint8, t int32 (-1 for untimed drawings)."""
        a, timed = self.arrays, self.info.has_time
        d = take_rows(a["xy"], a["t"] if timed else None, a["stroke_len"], a["st_off"], a["pt_off"], idx)
        if timed:  # a shard without times wrote none; its drawings may sit among timed ones
            d.t[~np.repeat(a["raw"][np.asarray(idx, np.int64)].astype(bool), d.points_per_drawing())] = -1
        return d
