"""`Drawings`: a batch of drawings as flat row-aligned arrays, the one form every stage passes around.

The store holds its drawings this way, the readers and the Kaggle parser produce it, augmentation maps it
to itself, and the rasteriser and the sequence encoder read it. Drawing i owns strokes
`st_off[i]:st_off[i + 1]` and points `pt_off[i]:pt_off[i + 1]` (`offsets()`); every operation here is
vectorised over the batch, never a Python loop over drawings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from doodle.drawing.strokes import Drawing
from doodle.errors import UserError


@dataclass(eq=False)
class Drawings:
    """Drawings as flat arrays; treat as immutable (the offsets are cached on first use)."""

    xy: np.ndarray  # (P, 2) uint8 in the store's 0..255 box, or float32 once augmented
    t: np.ndarray  # (P,) int32 ms since the drawing's first point, -1 when untimed
    stroke_len: np.ndarray  # (S,) int32 points per stroke
    n_strokes: np.ndarray  # (B,) int32 strokes per drawing
    _offsets: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.n_strokes)

    @classmethod
    def pack(cls, drawings: Sequence[Drawing]) -> Drawings:
        """Single drawings (already on the simplified 0..255 grid) -> the store's form (uint8, int32 ms)."""
        if not drawings:
            return cls(np.zeros((0, 2), np.uint8), np.zeros(0, np.int32), np.zeros(0, np.int32),
                       np.zeros(0, np.int32))
        xy = [np.clip(np.rint(d.xy), 0, 255).astype(np.uint8) for d in drawings]
        t = [(np.asarray(d.t, dtype=np.int64).clip(0, 2**31 - 1).astype(np.int32) if d.t is not None
              else np.full(d.n_points, -1, np.int32)) for d in drawings]
        lens = [np.diff(d.ends, prepend=0).astype(np.int32) for d in drawings]
        return cls(np.concatenate(xy), np.concatenate(t), np.concatenate(lens),
                   np.array([d.n_strokes for d in drawings], dtype=np.int32))

    @classmethod
    def concat(cls, parts: Sequence[Drawings]) -> Drawings:
        """Row-wise concatenation (the flat arrays only)."""
        return cls(np.concatenate([d.xy for d in parts]), np.concatenate([d.t for d in parts]),
                   np.concatenate([d.stroke_len for d in parts]), np.concatenate([d.n_strokes for d in parts]))

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(st_off, pt_off), each (B + 1,) int64: drawing i owns strokes st_off[i]:st_off[i + 1] and
        points pt_off[i]:pt_off[i + 1]."""
        if self._offsets is None:
            st_off = np.concatenate([[0], np.cumsum(self.n_strokes, dtype=np.int64)])
            pt_off = np.concatenate([[0], np.cumsum(self.stroke_len, dtype=np.int64)])[st_off]
            self._offsets = st_off, pt_off
        return self._offsets

    def points_per_drawing(self) -> np.ndarray:
        """(B,) int64 points of each drawing."""
        return np.diff(self.offsets()[1])

    def take(self, idx: np.ndarray) -> Drawings:
        """Drawings `idx` (integer indices, any order, repeats allowed)."""
        st_off, pt_off = self.offsets()
        return take_rows(self.xy, self.t, self.stroke_len, st_off, pt_off, idx)

    def drawing(self, i: int) -> Drawing:
        """Drawing i on its own (float32 points; times, or None when untimed)."""
        st_off, pt_off = self.offsets()
        p0, p1 = pt_off[i], pt_off[i + 1]
        t = self.t[p0:p1]
        return Drawing(np.asarray(self.xy[p0:p1], np.float32),
                       np.cumsum(self.stroke_len[st_off[i] : st_off[i + 1]], dtype=np.int64),
                       t.astype(np.float64) if len(t) and t[0] >= 0 else None)

    def check(self) -> None:
        """Raise UserError unless the arrays describe drawings (shapes agree, counts add up, points finite)."""
        xy, t, slen, nst = map(np.asarray, (self.xy, self.t, self.stroke_len, self.n_strokes))
        if (xy.ndim != 2 or xy.shape[1:] != (2,) or t.shape != (len(xy),) or slen.ndim != 1 or nst.ndim != 1
                or slen.sum() != len(xy) or nst.sum() != len(slen) or (slen < 0).any() or (nst < 0).any()):
            raise UserError(f"inconsistent drawing arrays: xy {xy.shape}, t {t.shape}, "
                             f"{slen.sum()} points in strokes, {nst.sum()} strokes in drawings")
        if not np.isfinite(xy).all():  # a NaN would make the step count of a segment meaningless
            raise UserError("drawing points must be finite (found NaN or infinity)")


def take_rows(xy: np.ndarray, t: np.ndarray | None, stroke_len: np.ndarray, st_off: np.ndarray,
              pt_off: np.ndarray, idx: np.ndarray) -> Drawings:
    """Drawings `idx` of flat arrays with their (B + 1,) offsets, in memory or memory-mapped (`t` None: no
    drawing is timed)."""
    idx = np.asarray(idx, dtype=np.int64)
    s0, s1 = st_off[idx], st_off[idx + 1]
    pts = ranges(pt_off[idx], pt_off[idx + 1])
    return Drawings(xy[pts], t[pts] if t is not None else np.full(len(pts), -1, np.int32),
                    stroke_len[ranges(s0, s1)], (s1 - s0).astype(np.int32))


def ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, e) for each pair, without a Python loop."""
    lens = (ends - starts).astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return np.arange(total, dtype=np.int64) + offs
