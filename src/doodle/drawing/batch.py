"""The types every drawing reader yields or raises, and the helpers that build batches.

`Batch` holds a chunk of drawings as flat row-aligned arrays, `Reject` an input row that did not make it
(its line and reason), `FileFormatError` says a whole file is unusable. `batch_from_drawings` packs
Drawings into a Batch; `concat_batches` joins batches row-wise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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


@dataclass
class Batch:
    """Drawings of one chunk as flat arrays plus their metadata, row-aligned."""

    key_id: np.ndarray  # (n,) int64
    word: list  # (n,) str or None (unlabelled test rows)
    countrycode: list
    recognized: np.ndarray  # (n,) int8: 1, 0, or -1 unknown
    timestamp: list
    line: np.ndarray  # (n,) int64, 1-based line in the source file
    xy: np.ndarray  # (P, 2) uint8, simplified 0..255 box
    t: np.ndarray  # (P,) int32 ms since the drawing's first point, -1 when untimed
    stroke_len: np.ndarray  # (S,) int32
    n_strokes: np.ndarray  # (n,) int32
    raw: np.ndarray = field(default=None)  # (n,) bool: came from raw (timed) strokes

    def __len__(self) -> int:
        return len(self.key_id)

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(st_off, pt_off), each (n + 1,) int64: drawing i owns strokes st_off[i]:st_off[i + 1] and
        points pt_off[i]:pt_off[i + 1]."""
        st_off = np.concatenate([[0], np.cumsum(self.n_strokes, dtype=np.int64)])
        pt_off = np.concatenate([[0], np.cumsum(self.stroke_len, dtype=np.int64)])[st_off]
        return st_off, pt_off

    def select(self, keep: np.ndarray) -> Batch:
        """The rows where `keep` (bool mask) is True."""
        return self.take(np.flatnonzero(keep))

    def take(self, idx: np.ndarray) -> Batch:
        """Rows `idx` (integer indices, any order)."""
        st_off, pt_off = self.offsets()
        strokes = ranges(st_off[idx], st_off[idx + 1])
        pts = ranges(pt_off[idx], pt_off[idx + 1])
        return Batch(self.key_id[idx], [self.word[i] for i in idx], [self.countrycode[i] for i in idx],
                     self.recognized[idx], [self.timestamp[i] for i in idx], self.line[idx], self.xy[pts],
                     self.t[pts], self.stroke_len[strokes], self.n_strokes[idx], self.raw[idx])

    def drawing(self, i: int) -> Drawing:
        """Row i as a Drawing (float coordinates, times or None)."""
        s0 = int(self.n_strokes[:i].sum())
        lens = self.stroke_len[s0 : s0 + self.n_strokes[i]]
        p0 = int(self.stroke_len[:s0].sum())
        p1 = p0 + int(lens.sum())
        t = self.t[p0:p1].astype(np.float64) if self.t[p0:p1].size and self.t[p0] >= 0 else None
        return Drawing(self.xy[p0:p1].astype(np.float32), np.cumsum(lens).astype(np.int64), t)


def batch_from_drawings(rows: list[dict], drawings: list[Drawing]) -> Batch:
    """Rows of metadata + Drawings (already simplified to the 0..255 grid) -> Batch."""
    n = len(rows)
    xy = [np.clip(np.rint(d.xy), 0, 255).astype(np.uint8) for d in drawings]
    t = [(np.asarray(d.t, dtype=np.int64).clip(0, 2**31 - 1).astype(np.int32) if d.t is not None
          else np.full(d.n_points, -1, np.int32)) for d in drawings]
    lens = [np.diff(np.concatenate([[0], d.ends])).astype(np.int32) for d in drawings]
    return Batch(
        key_id=np.array([r["key_id"] for r in rows], dtype=np.int64),
        word=[r.get("word") for r in rows],
        countrycode=[r.get("countrycode", "") for r in rows],
        recognized=np.array([r.get("recognized", -1) for r in rows], dtype=np.int8),
        timestamp=[r.get("timestamp", "") for r in rows],
        line=np.array([r["line"] for r in rows], dtype=np.int64),
        xy=np.concatenate(xy) if n else np.zeros((0, 2), np.uint8),
        t=np.concatenate(t) if n else np.zeros(0, np.int32),
        stroke_len=np.concatenate(lens) if n else np.zeros(0, np.int32),
        n_strokes=np.array([d.n_strokes for d in drawings], dtype=np.int32),
        raw=np.array([d.t is not None for d in drawings], dtype=bool),
    )


def concat_batches(parts: list[Batch]) -> Batch:
    """Row-wise concatenation of batches."""
    return Batch(
        key_id=np.concatenate([b.key_id for b in parts]),
        word=[w for b in parts for w in b.word],
        countrycode=[c for b in parts for c in b.countrycode],
        recognized=np.concatenate([b.recognized for b in parts]),
        timestamp=[s for b in parts for s in b.timestamp],
        line=np.concatenate([b.line for b in parts]),
        xy=np.concatenate([b.xy for b in parts]),
        t=np.concatenate([b.t for b in parts]),
        stroke_len=np.concatenate([b.stroke_len for b in parts]),
        n_strokes=np.concatenate([b.n_strokes for b in parts]),
        raw=np.concatenate([b.raw for b in parts]),
    )


def ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, e) for each pair, without a Python loop."""
    lens = (ends - starts).astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return np.arange(total, dtype=np.int64) + offs
