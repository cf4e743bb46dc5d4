"""Drawings one class at a time, from a folder of Kaggle `<word>.csv` files or from a prepared store.

`open_class_source(path)` picks the kind: a folder holding `store.json` is a store (memory-mapped; a class is
one gather), a folder with `train_simplified/` or `*.csv` files is a Kaggle folder (the file name is the
word, as in Kaggle's `train_simplified/`; a class is its file read in chunks, rejected rows left out).
Either holds at most one class's drawings in memory. `mean_row_bytes()` estimates the size of a Kaggle
row from the source, without reading it all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from doodle.drawing.flat import Drawings
from doodle.errors import UserError
from doodle.store.format import Store
from doodle.store.kaggle_csv import read_csv
from doodle.store.kaggle_writer import format_train_rows

PREFIX_BYTES = 256 * 1024  # bytes read from the start of each CSV to estimate its mean row size


@dataclass
class KaggleFolder:
    """`<word>.csv` Kaggle train files (only `drawing` and `key_id` are used)."""

    root: Path
    files: dict[str, Path] = field(init=False)

    def __post_init__(self):
        self.files = {p.stem: p for p in sorted(self.root.glob("*.csv"))}

    def counts(self, words: list[str]) -> dict[str, int]:
        """Which words have a file (1) or none (0); rows are only known once read."""
        return {w: int(w in self.files and self.files[w].stat().st_size > 0) for w in words}

    def drawings(self, word: str) -> tuple[Drawings, np.ndarray]:
        """All usable drawings of a class and their key_ids."""
        parts = [batch for batch, _ in read_csv(self.files[word])]
        parts = [b for b in parts if len(b)]
        if not parts:
            return Drawings.pack([]), np.zeros(0, np.int64)
        return Drawings.concat(parts), np.concatenate([b.key_id for b in parts])

    def mean_row_bytes(self) -> float:
        """Mean row size over the first PREFIX_BYTES of every file (the header left out)."""
        size = rows = 0
        for p in self.files.values():
            with open(p, "rb") as f:
                head = f.read(PREFIX_BYTES)
            body = head[head.find(b"\n") + 1 : head.rfind(b"\n") + 1]
            size, rows = size + len(body), rows + body.count(b"\n")
        if not rows:
            raise UserError(f"{self.root}: no drawing rows in its .csv files")
        return size / rows


@dataclass
class StoreClasses:
    """A prepared store's drawings by class (memory-mapped; one class gathered at a time)."""

    store: Store

    @property
    def root(self) -> Path:
        return self.store.root

    def counts(self, words: list[str]) -> dict[str, int]:
        have = dict(zip(self.store.classes, self.store.class_counts().tolist(), strict=True))
        return {w: have.get(w, 0) for w in words}

    def drawings(self, word: str) -> tuple[Drawings, np.ndarray]:
        if word not in self.store.classes:
            return Drawings.pack([]), np.zeros(0, np.int64)
        idx = np.flatnonzero(np.asarray(self.store.label) == self.store.classes.index(word))
        d = self.store.take(idx)
        return Drawings(d.xy, np.full(len(d.xy), -1, np.int32), d.stroke_len, d.n_strokes), \
            np.asarray(self.store.key_id[idx])

    def mean_row_bytes(self, sample: int = 2000) -> float:
        """Mean size of a Kaggle row of up to `sample` evenly spaced drawings, formatted."""
        n = len(self.store)
        if not n:
            raise UserError(f"{self.store.root}: the store holds no drawings")
        idx = np.unique(np.linspace(0, n - 1, min(sample, n)).astype(np.int64))
        d = self.store.take(idx)
        zeros = np.zeros(len(d), np.int64)
        text = format_train_rows(d, zeros + 10**17, np.full((len(d), 2), 65, np.uint8), zeros.astype(bool),
                                 zeros, "")
        word_len = np.mean([len(w.encode()) for w in self.store.classes])
        return len(text) / len(d) + word_len


ClassSource = KaggleFolder | StoreClasses


def open_class_source(path: Path) -> ClassSource:
    """A store (`store.json`), a folder with `train_simplified/`, or a folder of `<word>.csv` files."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    if (path / "store.json").is_file():
        return StoreClasses(Store(path))
    if (path / "train_simplified").is_dir():
        path = path / "train_simplified"
    if not any(path.glob("*.csv")):
        raise UserError(f"{path}: neither a prepared store (store.json) nor a folder of Kaggle <word>.csv files")
    return KaggleFolder(path)
