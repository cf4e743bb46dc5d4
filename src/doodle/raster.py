"""Strokes -> time-encoded image. THE one preprocessing: training, prediction and the page all call it.

Each channel is a named per-point feature in 0..1, drawn along the pen path and mapped to
`floor..255` (0 stays background, so a faint feature is still ink):

==============  =======================================================================
ink             1 everywhere there is ink
stroke_order    1 for the first stroke, 1/n for the last of n (when, coarsely)
point_order     0 at the drawing's first point up to 1 at its last (when, finely)
time            real time since the first point / duration (raw timed drawings);
                falls back to point_order when the drawing has no time
speed           pen speed on each segment, 1 - exp(-v / 0.5 px/ms); falls back to ink
pause           pause before the stroke began / (pause + 500 ms); falls back to stroke_order
==============  =======================================================================

Encodings name channel tuples (`ENCODINGS`); `order3` is the default. Training renders whole batches
(`render_batch`); `rasterize` takes one drawing as nested lists or as its JSON text (`flatten` reads every number
once; text through the compiled `jsontext` reader, no Python number per coordinate) and draws it in a
single compiled call, and with `fit=True` first maps raw canvas pixels into the box. Drawing is
done by one compiled kernel: every segment is walked at 1-pixel steps, each step stamps a `line_width`
square, and the channel values are interpolated along the segment. Later ink overwrites earlier ink,
as cv2.line would. (cv2.line draws one colour per call, so a per-point colour ramp costs a Python call
per segment; the kernel does the same drawing without that overhead.) Anti-aliasing renders at 2x and
averages down with cv2.INTER_AREA.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numba
import numpy as np

from doodle.flatten import FLATTEN_ERRORS, flat_values, unflatten

FEATURES = {"ink": 0, "stroke_order": 1, "point_order": 2, "time": 3, "speed": 4, "pause": 5}
ENCODINGS: dict[str, tuple[str, ...]] = {
    "grey": ("ink",),
    "order3": ("stroke_order", "point_order", "ink"),
    "time3": ("stroke_order", "time", "ink"),
    "rt3": ("time", "speed", "pause"),
}


@functools.cache
def _feature_ids(encoding: str) -> np.ndarray:
    return np.array([FEATURES[c] for c in ENCODINGS[encoding]], dtype=np.int64)


@dataclass(frozen=True)
class RasterSpec:
    """How strokes become pixels; saved in every run's config so the page renders as training did."""

    size: int = 64
    encoding: str = "order3"
    line_width: int = 2
    margin: int = 1
    antialias: bool = False
    floor: int = 55

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"raster encoding {self.encoding!r} unknown; choose one of {sorted(ENCODINGS)}")
        if not 8 <= self.size <= 1024:
            raise ValueError(f"raster size {self.size} outside 8..1024")
        if not 1 <= self.line_width <= 32 or not 0 <= self.margin < self.size // 2:
            raise ValueError(f"raster line_width {self.line_width} / margin {self.margin} out of range")
        if not 0 <= self.floor <= 254:
            raise ValueError(f"raster floor {self.floor} outside 0..254")

    @property
    def channels(self) -> int:
        return len(ENCODINGS[self.encoding])

    def feature_ids(self) -> np.ndarray:
        return _feature_ids(self.encoding)


@numba.njit(cache=True, inline="always")
def _feature(fid, k, ns, gi, npts, timed, tj, t_end, seg_speed, pause):
    if fid == 0:
        return 1.0
    if fid == 1:
        return 1.0 - k / ns
    if fid == 2 or (fid == 3 and not timed):
        return gi / max(npts - 1, 1)
    if fid == 3:
        return tj / t_end
    if fid == 4:
        return 1.0 - np.exp(-seg_speed / 0.5) if timed else 1.0
    # pause
    return pause / (pause + 500.0) if timed else 1.0 - k / ns


@numba.njit(cache=True, inline="always")
def _stamp(img, x, y, v, C, lw, size):
    x0 = int(np.floor(x + 0.5)) - (lw - 1) // 2
    y0 = int(np.floor(y + 0.5)) - (lw - 1) // 2
    for yy in range(max(y0, 0), min(y0 + lw, size)):
        for xx in range(max(x0, 0), min(x0 + lw, size)):
            for c in range(C):
                img[yy, xx, c] = v[c]


@numba.njit(cache=True, inline="always")
def _steps_lw2_c3(img, xa, ya, dx, dy, inv, last, v0, dv, vv, size):
    """The step loop of `_render` for 3 channels and line width 2, same pixels as the general loop."""
    a0, a1, a2, d0, d1, d2 = v0[0], v0[1], v0[2], dv[0], dv[1], dv[2]
    for i in range(last):
        u = i * inv
        x0 = int(np.floor(xa + dx * u + 0.5))
        y0 = int(np.floor(ya + dy * u + 0.5))
        c0, c1, c2 = np.uint8(a0 + d0 * u), np.uint8(a1 + d1 * u), np.uint8(a2 + d2 * u)
        if 0 <= x0 < size - 1 and 0 <= y0 < size - 1:
            for yy in range(y0, y0 + 2):
                for xx in range(x0, x0 + 2):
                    img[yy, xx, 0] = c0
                    img[yy, xx, 1] = c1
                    img[yy, xx, 2] = c2
        else:  # clipped at the border
            vv[0], vv[1], vv[2] = c0, c1, c2
            _stamp(img, xa + dx * u, ya + dy * u, vv, 3, 2, size)


@numba.njit(cache=True, fastmath=True)
def _render(xy, t, slen, nst, fids, size, lw, margin, floor, out):
    """Draw B drawings into the zeroed `out` (B, size, size, C): points xy (P, 2) in the 0..255 box, t (P,)
    ms (-1 = untimed), stroke lengths slen (S,), strokes per drawing nst (B,), channel features fids (C,)."""
    B = nst.shape[0]
    C = fids.shape[0]
    scale = (size - 1 - 2 * margin) / 255.0
    v0 = np.empty(C, np.float64)
    dv = np.empty(C, np.float64)
    vv = np.empty(C, np.uint8)
    span = 255.0 - floor
    need_speed = False  # a hypot and a division per segment, worth skipping for the other encodings
    for c in range(C):
        need_speed = need_speed or fids[c] == 4
    s = 0
    p = 0
    for b in range(B):
        img = out[b]
        ns = nst[b]
        npts = 0
        for k in range(ns):
            npts += slen[s + k]
        timed = npts > 0 and t[p] >= 0
        t_end = 1.0
        if timed:
            for j in range(p, p + npts):
                t_end = max(t_end, float(t[j]))
        gi = 0
        prev_end = 0.0
        for k in range(ns):
            L = slen[s + k]
            pause = max(float(t[p]) - prev_end, 0.0) if timed and k > 0 else 0.0
            for j in range(max(L - 1, 1)):
                a = p + j
                e = p + min(j + 1, L - 1)
                xa = margin + xy[a, 0] * scale
                ya = margin + xy[a, 1] * scale
                dx = margin + xy[e, 0] * scale - xa
                dy = margin + xy[e, 1] * scale - ya
                speed = 0.0
                if need_speed and timed and e != a:
                    dt = max(float(t[e] - t[a]), 1.0)
                    speed = np.hypot(xy[e, 0] - xy[a, 0], xy[e, 1] - xy[a, 1]) / dt
                for c in range(C):
                    f0 = _feature(fids[c], k, ns, gi + j, npts, timed, float(t[a]), t_end, speed, pause)
                    f1 = _feature(fids[c], k, ns, gi + (e - p), npts, timed, float(t[e]), t_end, speed, pause)
                    v0[c] = floor + span * f0 + 0.5
                    dv[c] = span * (f1 - f0)
                n = int(max(abs(dx), abs(dy))) + 1
                inv = 1.0 / n
                # the segment's last step is the next segment's first: draw it only at the stroke's end
                last = n + 1 if j == max(L - 1, 1) - 1 else n
                if lw == 2 and C == 3:  # the default: values and stamp in registers, ~1.6x faster
                    _steps_lw2_c3(img, xa, ya, dx, dy, inv, last, v0, dv, vv, size)
                else:
                    for i in range(last):
                        u = i * inv
                        for c in range(C):
                            vv[c] = np.uint8(v0[c] + dv[c] * u)
                        _stamp(img, xa + dx * u, ya + dy * u, vv, C, lw, size)
            if timed:
                prev_end = float(t[p + L - 1])
            gi += L
            p += L
        s += ns


def render_batch(xy: np.ndarray, t: np.ndarray | None, stroke_len: np.ndarray, n_strokes: np.ndarray,
                 spec: RasterSpec) -> np.ndarray:
    """Flat drawings (points in the 0..255 box, may lie outside after augmentation) -> (B, H, W, C) uint8.

    `t` is ms since each drawing's first point, -1 (or None for the whole batch) for untimed drawings.
    """
    xy = np.ascontiguousarray(xy, dtype=np.float32)
    t = np.full(len(xy), -1, np.int32) if t is None else np.ascontiguousarray(t, dtype=np.int32)
    slen = np.ascontiguousarray(stroke_len, dtype=np.int32)
    nst = np.ascontiguousarray(n_strokes, dtype=np.int32)
    if (xy.ndim != 2 or xy.shape[1:] != (2,) or t.shape != (len(xy),) or slen.ndim != 1 or nst.ndim != 1
            or slen.sum() != len(xy) or nst.sum() != len(slen) or (slen < 0).any() or (nst < 0).any()):
        raise ValueError(f"inconsistent drawing arrays: xy {xy.shape}, t {t.shape}, "
                         f"{slen.sum()} points in strokes, {nst.sum()} strokes in drawings")
    if not np.isfinite(xy).all():  # a NaN would make the step count of a segment meaningless
        raise ValueError("drawing points must be finite (found NaN or infinity)")
    out = _canvas(len(nst), spec)
    _render(xy, t, slen, nst, spec.feature_ids(), out.shape[1], *_scaled(spec), out)
    return _downsample(out, spec)


def _canvas(n: int, spec: RasterSpec) -> np.ndarray:
    size = spec.size * (2 if spec.antialias else 1)
    return np.zeros((n, size, size, spec.channels), dtype=np.uint8)


@functools.cache
def _scaled(spec: RasterSpec) -> tuple[int, int, int]:
    """line_width, margin, floor at the drawing resolution (twice the size when anti-aliasing)."""
    factor = 2 if spec.antialias else 1
    return spec.line_width * factor, spec.margin * factor, spec.floor


def _downsample(out: np.ndarray, spec: RasterSpec) -> np.ndarray:
    if not spec.antialias:
        return out
    return np.stack([cv2.resize(im, (spec.size, spec.size), interpolation=cv2.INTER_AREA).reshape(
        spec.size, spec.size, spec.channels) for im in out])


@numba.njit(cache=True)
def _rasterize_one(values, times, alens, narr, split, fit, fids, size, lw, margin, floor, out):
    """`flatten.unflatten` + `_render` of one drawing in one compiled call (a dispatch costs microseconds)."""
    err, xy, t, lens = unflatten(values, times, alens, narr, split, fit)
    if err == 0:
        _render(xy, t, lens, np.full(1, lens.shape[0], np.int32), fids, size, lw, margin, floor, out)
    return err


@functools.lru_cache(maxsize=64)
def _spec(size: int, encoding: str, line_width: int, margin: int, antialias: bool) -> RasterSpec:
    return RasterSpec(size=size, encoding=encoding, line_width=line_width, margin=margin, antialias=antialias)


def rasterize(strokes: Sequence | str, size: int = 64, channels: str = "order3", line_width: int = 2,
              margin: int = 1, antialias: bool = False, fit: bool = False) -> np.ndarray:
    """One drawing `[(xs, ys[, ts]), ...]`, or its JSON text (a Kaggle `drawing` cell, an ndjson `drawing`
    field), -> (size, size, C) uint8.

    Points are in the simplified 0..255 box; with `fit=True` they may be raw canvas pixels and are first
    mapped into the box (see `flatten_strokes`). Times, when every stroke has them, feed the time channels.
    """
    spec = _spec(size, channels, line_width, margin, antialias)
    out = _canvas(1, spec)
    err = _rasterize_one(*flat_values(strokes), fit, spec.feature_ids(), out.shape[1], *_scaled(spec), out)
    if err:
        raise ValueError(FLATTEN_ERRORS[err])
    return _downsample(out, spec)[0]


def render_drawing(drawing, spec: RasterSpec) -> np.ndarray:
    """A `strokes.Drawing` (simplified box) -> (H, W, C) uint8 with the given spec."""
    lens = np.diff(np.concatenate([[0], drawing.ends])).astype(np.int32)
    t = None if drawing.t is None else np.rint(drawing.t - drawing.t.min()).astype(np.int32)
    return render_batch(drawing.xy, t, lens, np.array([len(lens)], np.int32), spec)[0]
