"""The types every drawing reader yields or raises, and the helpers that build batches.

`Batch` is a chunk of drawings (`flat.Drawings`, flat row-aligned arrays) with their metadata, `Reject` an
input row that did not make it (its line and reason), `FileFormatError` says a whole file is unusable.
`batch_from_drawings` packs single Drawings into a Batch; `concat_batches` joins batches row-wise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from doodle.drawing.flat import Drawings
from doodle.drawing.strokes import Drawing
from doodle.errors import DoodleError


class FileFormatError(DoodleError, ValueError):
    """A whole file is unusable (unreadable, wrong header, not a drawing file)."""


@dataclass
class Reject:
    line: int
    key_id: str
    reason: str
    detail: str = ""


@dataclass(eq=False, kw_only=True)
class Batch(Drawings):
    """Drawings of one chunk (flat arrays, `Drawings`) plus their metadata, row-aligned."""

    key_id: np.ndarray  # (n,) int64
    word: list  # (n,) str or None (unlabelled test rows)
    countrycode: list
    recognized: np.ndarray  # (n,) int8: 1, 0, or -1 unknown
    timestamp: list
    line: np.ndarray  # (n,) int64, 1-based line in the source file
    raw: np.ndarray  # (n,) bool: came from raw (timed) strokes

    @classmethod
    def of(cls, d: Drawings, **meta) -> Batch:
        """Flat drawings `d` with their metadata columns."""
        return cls(d.xy, d.t, d.stroke_len, d.n_strokes, **meta)

    def select(self, keep: np.ndarray) -> Batch:
        """The rows where `keep` (bool mask) is True."""
        return self.take(np.flatnonzero(keep))

    def take(self, idx: np.ndarray) -> Batch:
        """Rows `idx` (integer indices, any order), metadata included."""
        idx = np.asarray(idx, dtype=np.int64)
        return Batch.of(super().take(idx), key_id=self.key_id[idx], word=[self.word[i] for i in idx],
                        countrycode=[self.countrycode[i] for i in idx], recognized=self.recognized[idx],
                        timestamp=[self.timestamp[i] for i in idx], line=self.line[idx], raw=self.raw[idx])


def batch_from_drawings(rows: list[dict], drawings: list[Drawing]) -> Batch:
    """Rows of metadata + Drawings (already simplified to the 0..255 grid) -> Batch."""
    return Batch.of(
        Drawings.pack(drawings),
        key_id=np.array([r["key_id"] for r in rows], dtype=np.int64),
        word=[r.get("word") for r in rows],
        countrycode=[r.get("countrycode", "") for r in rows],
        recognized=np.array([r.get("recognized", -1) for r in rows], dtype=np.int8),
        timestamp=[r.get("timestamp", "") for r in rows],
        line=np.array([r["line"] for r in rows], dtype=np.int64),
        raw=np.array([d.t is not None for d in drawings], dtype=bool),
    )


def concat_batches(parts: list[Batch]) -> Batch:
    """Row-wise concatenation of batches."""
    return Batch.of(
        Drawings.concat(parts),
        key_id=np.concatenate([b.key_id for b in parts]),
        word=[w for b in parts for w in b.word],
        countrycode=[c for b in parts for c in b.countrycode],
        recognized=np.concatenate([b.recognized for b in parts]),
        timestamp=[s for b in parts for s in b.timestamp],
        line=np.concatenate([b.line for b in parts]),
        raw=np.concatenate([b.raw for b in parts]),
    )
