"""Drawings as point sequences for sequence models: (dx, dy, pen_down_start, dt) per point.

`encode_sequences` turns a batch of flat drawings into a padded float array (B, L, F) and lengths.
Coordinates are scaled to about -1..1 (the 0..255 box / 255); dx, dy are steps from the previous point;
`stroke_start` is 1 at the first point of each stroke (the pen was lifted before it); dt is the time step in
seconds when the drawing has time, else 0. Drawings longer than `max_points` are evenly subsampled,
always keeping each stroke's first point so the pen lifts survive.
"""

from __future__ import annotations

import numpy as np

N_FEATURES = 5  # x, y, dx, dy, stroke_start (+ dt when time is on)


def _subsample(n: int, starts: np.ndarray, cap: int) -> np.ndarray:
    """Indices of at most `cap` of n points, evenly spread, stroke starts first."""
    if n <= cap:
        return np.arange(n)
    if len(starts) >= cap:
        return np.sort(starts[np.linspace(0, len(starts) - 1, cap).round().astype(np.int64)])
    rest = np.setdiff1d(np.arange(n), starts)
    extra = rest[np.linspace(0, len(rest) - 1, cap - len(starts)).round().astype(np.int64)]
    return np.sort(np.concatenate([starts, extra]))


def encode_sequences(pts, max_points: int, use_time: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Points batch -> (B, L, F) float32 (zero padded) and (B,) int64 lengths (>= 1 for empty drawings)."""
    per = pts.points_per_drawing()
    n_feat = N_FEATURES + (1 if use_time else 0)
    lengths = np.minimum(per, max_points).astype(np.int64)
    out = np.zeros((len(per), max(int(lengths.max(initial=1)), 1), n_feat), np.float32)
    stroke_first = np.zeros(len(pts.xy), bool)
    stroke_first[np.concatenate([[0], np.cumsum(pts.stroke_len)[:-1]]).astype(np.int64)[pts.stroke_len > 0]] = True
    p0 = 0
    for b, n in enumerate(per):
        n = int(n)
        if n == 0:
            lengths[b] = 1  # one all-zero step; the model sees "nothing drawn"
            continue
        xy = pts.xy[p0 : p0 + n].astype(np.float32) / 255.0
        first = stroke_first[p0 : p0 + n]
        keep = _subsample(n, np.flatnonzero(first), max_points)
        xy, first = xy[keep], first[keep]
        d = np.diff(xy, axis=0, prepend=xy[:1])
        feats = [xy[:, 0] - 0.5, xy[:, 1] - 0.5, d[:, 0], d[:, 1], first.astype(np.float32)]
        if use_time:
            t = pts.t[p0 : p0 + n][keep].astype(np.float32)
            feats.append(np.diff(t, prepend=t[:1]) / 1000.0 if t[0] >= 0 else np.zeros(len(keep), np.float32))
        out[b, : len(keep)] = np.stack(feats, axis=1)
        p0 += n
    return out, lengths
