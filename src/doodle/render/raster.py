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
(`render_batch`); `rasterize` takes one drawing as nested lists or as its JSON text (`flat_input` reads every
number once; text through the compiled `drawing.json_reader`, no Python number per coordinate) and draws it in a
single compiled call, and with `fit=True` first maps raw canvas pixels into the box. Drawing is done by one
compiled kernel (`render.kernels`): every segment is walked at 1-pixel steps, each step stamps a `line_width`
square, and the channel values are interpolated along the segment. Later ink overwrites earlier ink, as
cv2.line would. (cv2.line draws one colour per call, so a per-point colour ramp costs a Python call per
segment; the kernel does the same drawing without that overhead.) Anti-aliasing renders at 2x and averages
down with cv2.INTER_AREA.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from doodle.config import Config
from doodle.drawing.flat import Drawings
from doodle.errors import UserError
from doodle.render.flat_input import FLATTEN_ERRORS, flat_values
from doodle.render.kernels import rasterize_one, render_points

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
            raise UserError(f"raster encoding {self.encoding!r} unknown; choose one of {sorted(ENCODINGS)}")
        if not 8 <= self.size <= 1024:
            raise UserError(f"raster size {self.size} outside 8..1024")
        if not 1 <= self.line_width <= 32 or not 0 <= self.margin < self.size // 2:
            raise UserError(f"raster line_width {self.line_width} / margin {self.margin} out of range")
        if not 0 <= self.floor <= 254:
            raise UserError(f"raster floor {self.floor} outside 0..254")

    @property
    def channels(self) -> int:
        return len(ENCODINGS[self.encoding])

    def feature_ids(self) -> np.ndarray:
        return _feature_ids(self.encoding)


def render_batch(d: Drawings, spec: RasterSpec) -> np.ndarray:
    """Flat drawings (points in the 0..255 box, may lie outside after augmentation) -> (B, H, W, C) uint8."""
    d.check()
    xy = np.ascontiguousarray(d.xy, dtype=np.float32)
    t = np.ascontiguousarray(d.t, dtype=np.int32)
    slen = np.ascontiguousarray(d.stroke_len, dtype=np.int32)
    nst = np.ascontiguousarray(d.n_strokes, dtype=np.int32)
    out = _canvas(len(nst), spec)
    render_points(xy, t, slen, nst, spec.feature_ids(), out.shape[1], *_scaled(spec), out)
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


@functools.lru_cache(maxsize=64)
def _spec(size: int, encoding: str, line_width: int, margin: int, antialias: bool) -> RasterSpec:
    return RasterSpec(size=size, encoding=encoding, line_width=line_width, margin=margin, antialias=antialias)


def rasterize(strokes: Sequence | str, size: int = 64, channels: str = "order3", line_width: int = 2,
              margin: int = 1, antialias: bool = False, fit: bool = False) -> np.ndarray:
    """One drawing `[(xs, ys[, ts]), ...]`, or its JSON text (a Kaggle `drawing` cell, an ndjson `drawing`
    field), -> (size, size, C) uint8.

    Points are in the simplified 0..255 box; with `fit=True` they may be raw canvas pixels and are first
    mapped into the box (see `flat_input.flatten_strokes`). Times, when every stroke has them, feed the time channels.
    """
    spec = _spec(size, channels, line_width, margin, antialias)
    out = _canvas(1, spec)
    err = rasterize_one(*flat_values(strokes), fit, spec.feature_ids(), out.shape[1], *_scaled(spec), out)
    if err:
        raise UserError(FLATTEN_ERRORS[err])
    return _downsample(out, spec)[0]


def render_drawing(drawing, spec: RasterSpec) -> np.ndarray:
    """A `strokes.Drawing` (simplified box) -> (H, W, C) uint8 with the given spec."""
    lens = np.diff(drawing.ends, prepend=0).astype(np.int32)
    t = (np.full(drawing.n_points, -1, np.int32) if drawing.t is None
         else np.rint(drawing.t - drawing.t.min()).astype(np.int32))
    return render_batch(Drawings(drawing.xy, t, lens, np.array([len(lens)], np.int32)), spec)[0]


def raster_spec(cfg: Config) -> RasterSpec:
    """The rasteriser settings of a config (the one place they are assembled)."""
    r = cfg.raster
    return RasterSpec(size=cfg.data.img_size, encoding=r.encoding, line_width=r.line_width, margin=r.margin,
                      antialias=r.antialias, floor=r.floor)
