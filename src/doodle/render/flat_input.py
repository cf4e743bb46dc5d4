"""A drawing as Python lists or JSON text -> flat arrays: the front half of `raster.rasterize`.

`flat_values` reads every number once (the compiled `drawing.json_reader` for text; for lists one `struct`
conversion of the x/y numbers and one of the times) into what `kernels.unflatten` takes; that checks
the shape, optionally fits raw canvas pixels into the 0..255 box, and returns the point arrays the
renderer draws. `flatten_strokes` is both steps for Python callers.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

from doodle.drawing.json_reader import parse_drawing_text
from doodle.errors import UserError
from doodle.render.kernels import unflatten

FLATTEN_ERRORS = {1: "a stroke must be 2 or 3 arrays (xs, ys[, ts])",
                   2: "a stroke has x, y (and t) arrays of different lengths",
                   3: "a stroke has a NaN or infinite value",
                   4: "a stroke's arrays hold other than their length in numbers"}


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
            raise UserError(f"a drawing's text is not valid JSON: {e}") from None
        if not isinstance(strokes, list):
            raise UserError(f"a drawing's text must be a JSON list of strokes, not {type(strokes).__name__}")
    try:
        narr, alens, xy, ts = [], [], [], []
        for s in strokes:
            narr.append(len(s))
            for a in s:
                alens.append(len(a))
            if len(s) == 3:
                xs, ys, t = s
                xy.extend(xs)  # extend, not +=: a numpy array on the right would add element-wise
                xy.extend(ys)
                ts.extend(t)
            else:  # two arrays, or a wrong count that unflatten reports
                for a in s:
                    xy.extend(a)
        values, times = _float64(xy), (_float64(ts) if ts else _NO_TIMES)
    except (TypeError, ValueError) as e:
        raise UserError(f"a drawing must be a list of strokes [xs, ys(, ts)] of numbers: {e}") from None
    return values, times, np.array(alens, np.int64), np.array(narr, np.int64), True


def _float64(numbers: list) -> np.ndarray:
    """Python numbers -> float64 in one C loop (`struct`; np.fromiter and np.array are slower). A Python int
    reads ~2x faster as int64 than as a double, and raw files hold mostly ints (times always, most x/y), so
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
    try:
        struct.pack_into(f"{n}d", out, 0, *numbers)
    except struct.error:
        raise UserError(_not_a_float(numbers)) from None
    return out


def _not_a_float(numbers: list) -> str:
    """What is wrong with the first value struct refused (the error path only)."""
    for v in numbers:
        if isinstance(v, (str, bytes, bytearray)):
            return f"{type(v).__name__} {str(v)[:40]!r} is not a number"
        try:
            float(v)
        except OverflowError:
            return f"{str(v)[:40]}... is too large for a float"
        except (TypeError, ValueError):
            return f"{type(v).__name__} {str(v)[:40]!r} is not a number"
    return "a value is not a number"


def flatten_strokes(strokes: Sequence, fit: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """`[(xs, ys[, ts]), ...]` -> xy (P, 2) float32, t (P,) int32 ms since the first point or None, stroke_len.

    `fit=True` maps raw canvas pixels into the 0..255 box (top-left aligned, longer side 255).
    """
    err, xy, t, lens = unflatten(*flat_values(strokes), fit)
    if err:
        raise UserError(FLATTEN_ERRORS[err])
    return xy, (t if len(t) and t[0] >= 0 else None), lens
