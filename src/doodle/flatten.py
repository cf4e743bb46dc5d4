"""A drawing as Python lists or JSON text -> flat arrays: the front half of `raster.rasterize`.

`flat_values` reads every number once (the compiled `jsontext` reader for text, one `struct` conversion for
lists) into (numbers, array lengths, arrays per stroke); `unflatten` checks the shape, optionally fits raw
canvas pixels into the 0..255 box, and returns the point arrays the renderer draws.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numba
import numpy as np

from doodle.jsontext import parse_drawing_text


@numba.njit(cache=True)
def unflatten(values, times, alens, narr, split, fit):
    """A drawing's numbers -> (error, xy (P, 2) float32, t (P,) int32, stroke_len (S,)).

    `values` holds every array of every stroke in order (x, y[, t] per stroke), or, when `split`, only the
    x and y arrays, the t arrays being in `times`. `alens` is the length of every array, `narr` the number
    of arrays per stroke. error 1: a stroke is not 2 or 3 arrays; 2: the arrays of a stroke differ in
    length; 3: a value is NaN or infinite. Empty strokes are dropped. t is ms since the first point, or -1
    everywhere unless every stroke has times. With `fit`, points move to the top-left corner and scale so
    the longer side spans 0..255: raw canvas pixels -> the simplified box, as Google's simplification (and
    the naive reference) does.
    """
    S = narr.shape[0]
    timed = S > 0
    P = 0
    a = 0
    for s in range(S):
        k = narr[s]
        if k < 2 or k > 3:
            return 1, np.empty((0, 2), np.float32), np.empty(0, np.int32), np.empty(0, np.int32)
        if alens[a + 1] != alens[a] or (k == 3 and alens[a + 2] != alens[a]):
            return 2, np.empty((0, 2), np.float32), np.empty(0, np.int32), np.empty(0, np.int32)
        timed = timed and k == 3
        P += alens[a]
        a += k
    tarr = times if split else values
    # first pass: bounding box, first time, non-empty strokes; second pass: write the points
    x0, y0, x1, y1, t0 = np.inf, np.inf, -np.inf, -np.inf, np.inf
    lens = np.empty(S, np.int32)
    ns = a = off = toff = 0
    for s in range(S):
        k, L = narr[s], alens[a]
        to = toff if split else off + 2 * L
        for i in range(2 * L):
            if not np.isfinite(values[off + i]):
                return 3, np.empty((0, 2), np.float32), np.empty(0, np.int32), np.empty(0, np.int32)
        for i in range(L if k == 3 else 0):
            if not np.isfinite(tarr[to + i]):
                return 3, np.empty((0, 2), np.float32), np.empty(0, np.int32), np.empty(0, np.int32)
        for i in range(L):
            x0, x1 = min(x0, values[off + i]), max(x1, values[off + i])
            y0, y1 = min(y0, values[off + L + i]), max(y1, values[off + L + i])
            if timed:
                t0 = min(t0, tarr[to + i])
        if L > 0:
            lens[ns] = L
            ns += 1
        off += (2 if split else k) * L
        toff += L if k == 3 else 0
        a += k
    sx, sy, scale = (x0, y0, 255.0 / max(x1 - x0, y1 - y0, 1.0)) if fit else (0.0, 0.0, 1.0)
    xy = np.empty((P, 2), np.float32)
    t = np.full(P, -1, np.int32)
    p = a = off = toff = 0
    for s in range(S):
        k, L = narr[s], alens[a]
        to = toff if split else off + 2 * L
        for i in range(L):
            xy[p + i, 0] = (values[off + i] - sx) * scale
            xy[p + i, 1] = (values[off + L + i] - sy) * scale
            if timed:
                t[p + i] = np.int32(np.rint(tarr[to + i] - t0))
        p += L
        off += (2 if split else k) * L
        toff += L if k == 3 else 0
        a += k
    return 0, xy, t, lens[:ns]


FLATTEN_ERRORS = {1: "a stroke must be 2 or 3 arrays (xs, ys[, ts])",
                   2: "a stroke has x, y (and t) arrays of different lengths",
                   3: "a stroke has a NaN or infinite value"}


_NO_TIMES = np.empty(0, np.float64)


def flat_values(strokes: Sequence | str | bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Python strokes or their JSON text -> `unflatten`'s (values, times, array lengths, arrays per stroke,
    split): text gives every number in one array; lists give x/y and t apart, each read in one C loop."""
    if isinstance(strokes, (str, bytes, bytearray)):
        parsed = parse_drawing_text(strokes)
        if parsed is not None:
            flat, alens, narr = parsed
            return flat, _NO_TIMES, alens, narr, False
        try:
            strokes = json.loads(strokes)
        except ValueError as e:
            raise ValueError(f"a drawing's text is not valid JSON: {e}") from None
        if not isinstance(strokes, list):
            raise ValueError(f"a drawing's text must be a JSON list of strokes, not {type(strokes).__name__}")
    try:
        narr, alens, xy, ts = [], [], [], []
        for s in strokes:
            narr.append(len(s))
            for a in s:
                alens.append(len(a))
            if len(s) == 3:
                xs, ys, t = s
                xy += xs
                xy += ys
                ts += t
            else:  # two arrays, or a wrong count that unflatten reports
                for a in s:
                    xy += a
        values, times = _float64(xy), (_float64(ts) if ts else _NO_TIMES)
    except (TypeError, ValueError, OverflowError, struct.error) as e:
        raise ValueError(f"a drawing must be a list of strokes [xs, ys(, ts)] of numbers: {e}") from None
    return values, times, np.array(alens, np.int64), np.array(narr, np.int64), True


def _float64(numbers: list) -> np.ndarray:
    """Python numbers -> float64 in one C loop (`struct`; np.fromiter and np.array are slower). A Python int
    reads ~4x faster as int64 than as a double, and raw files hold mostly ints (times always, most x/y), so
    a list that starts with one is read as int64 first; a float or a huge int among them falls back."""
    n = len(numbers)
    if n and type(numbers[0]) is int:
        out = np.empty(n, np.int64)
        try:
            struct.pack_into(f"{n}q", out, 0, *numbers)
            return out.astype(np.float64)
        except struct.error:
            pass
    out = np.empty(n, np.float64)
    struct.pack_into(f"{n}d", out, 0, *numbers)
    return out


def flatten_strokes(strokes: Sequence, fit: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """`[(xs, ys[, ts]), ...]` -> xy (P, 2) float32, t (P,) int32 ms since the first point or None, stroke_len.

    `fit=True` maps raw canvas pixels into the 0..255 box (top-left aligned, longer side 255).
    """
    err, xy, t, lens = unflatten(*flat_values(strokes), fit)
    if err:
        raise ValueError(FLATTEN_ERRORS[err])
    return xy, (t if len(t) and t[0] >= 0 else None), lens
