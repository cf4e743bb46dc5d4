"""Drawings as point sequences for sequence models: one row of features per kept point.

`encode_sequences` turns a batch of flat drawings into a zero-padded float array (B, L, F) and lengths.
Features, in order (`FEATURES`):

==============  ===========================================================================
x, y            position, the 0..255 box mapped to -1..1
dx, dy          step from the previous kept point, same units (0 at the drawing's first point)
stroke_start    1 at the first point of each stroke: the pen was lifted before it
dt              only with `use_time`: log1p(ms since the previous point / 100); 0 when the
                drawing has no time, so an untimed drawing reads as "no timing information"
==============  ===========================================================================

Drawings longer than `max_points` are evenly subsampled, always keeping each stroke's first point so
the pen lifts survive (only a drawing with more strokes than `max_points` loses some). An empty drawing
becomes one all-zero step of length 1, so every model sees at least one valid step. The work is done on
the whole batch's flat arrays at once; only drawings over the cap take a per-drawing step.
"""

from __future__ import annotations

import numpy as np

from doodle.drawing.flat import Drawings
from doodle.errors import UserError

BASE_FEATURES = ("x", "y", "dx", "dy", "stroke_start")
N_FEATURES = len(BASE_FEATURES)  # + 1 (dt) when time is on
DT_SCALE_MS = 100.0  # dt feature = log1p(dt / 100 ms): ~0.6 inside a stroke, ~1.8 at a typical pen lift


def feature_names(use_time: bool) -> tuple[str, ...]:
    return BASE_FEATURES + (("dt",) if use_time else ())


def stroke_starts(stroke_len: np.ndarray, n_points: int) -> np.ndarray:
    """(P,) bool: True at the first point of every non-empty stroke."""
    stroke_len = np.asarray(stroke_len, np.int64)
    first = np.zeros(n_points, bool)
    starts = np.cumsum(stroke_len) - stroke_len
    first[starts[stroke_len > 0]] = True
    return first


def subsample(n: int, starts: np.ndarray, cap: int) -> np.ndarray:
    """Sorted indices of at most `cap` of n points, evenly spread, every stroke start kept if it can be."""
    if n <= cap:
        return np.arange(n)
    if len(starts) >= cap:
        return np.sort(starts[np.linspace(0, len(starts) - 1, cap).round().astype(np.int64)])
    rest = np.setdiff1d(np.arange(n), starts)
    k = cap - len(starts)  # < len(rest); the middle of each of k equal slices, so no gap is half-empty
    extra = rest[((np.arange(k) + 0.5) * (len(rest) / k)).astype(np.int64)]
    return np.sort(np.concatenate([starts, extra]))


def keep_mask(per: np.ndarray, first: np.ndarray, max_points: int, point_dropout: float = 0.0,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """(P,) bool: the points that enter the sequences (dropout of non-start points, then the cap)."""
    keep = np.ones(len(first), bool)
    if point_dropout > 0:
        if rng is None:
            raise UserError("point_dropout needs a random generator")
        keep &= first | (rng.random(len(first)) >= point_dropout)
    owner = np.repeat(np.arange(len(per)), per)
    offsets = np.concatenate([[0], np.cumsum(per)]).astype(np.int64)
    for b in np.flatnonzero(np.bincount(owner[keep], minlength=len(per)) > max_points):
        lo, hi = offsets[b], offsets[b + 1]
        kept = np.flatnonzero(keep[lo:hi])
        chosen = kept[subsample(len(kept), np.flatnonzero(first[lo:hi][kept]), max_points)]
        keep[lo:hi] = False
        keep[lo + chosen] = True
    return keep


def encode_sequences(d: Drawings, max_points: int, use_time: bool = True, point_dropout: float = 0.0,
                     rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drawings -> (B, L, F) float32 zero padded, and (B,) int64 lengths (>= 1; empty drawings: 1).

    L is the longest kept drawing of the batch (at most `max_points`). `point_dropout` drops each point
    that does not start a stroke with that probability (training augmentation; needs `rng`).
    """
    if max_points < 1:
        raise UserError(f"seq.max_points must be >= 1, got {max_points}")
    per = d.points_per_drawing()
    n_feat = N_FEATURES + (1 if use_time else 0)
    first = stroke_starts(d.stroke_len, int(per.sum()))
    keep = keep_mask(per, first, max_points, point_dropout, rng)
    owner = np.repeat(np.arange(len(per)), per)[keep]
    counts = np.bincount(owner, minlength=len(per)).astype(np.int64)
    pos = np.arange(len(owner)) - (np.cumsum(counts) - counts)[owner]
    head = pos == 0

    feats = np.zeros((len(owner), n_feat), np.float32)
    xy = np.asarray(d.xy, np.float32)[keep] / 127.5 - 1.0
    feats[:, 0:2] = xy
    feats[:, 2:4] = np.diff(xy, axis=0, prepend=xy[:1])
    feats[head, 2:4] = 0.0
    feats[:, 4] = first[keep]
    if use_time:
        t = np.asarray(d.t, np.int64)[keep]
        dt = np.diff(t, prepend=t[:1])
        timed = (t >= 0) & np.concatenate([[False], t[:-1] >= 0]) & ~head
        feats[:, 5] = np.where(timed, np.log1p(np.maximum(dt, 0) / DT_SCALE_MS), 0.0)

    out = np.zeros((len(per), max(int(counts.max(initial=0)), 1), n_feat), np.float32)
    out[owner, pos] = feats
    return out, np.maximum(counts, 1)
