"""The drawing page's canvas (fabric.js objects) -> a raw `Drawing` in canvas pixels.

Each `path` object is one stroke; quadratic curves are sampled into points. Everything comes from a
browser, so anything malformed is a `DrawingError`, as with the other parsers in `strokes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from doodle.drawing.strokes import (
    DEFAULT_LIMITS,
    Drawing,
    DrawingError,
    Limits,
    from_strokes,
    loads_drawing_json,
)

_CANVAS_SAMPLES_PER_CURVE = 8


def _canvas_number(value, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise DrawingError("bad_number", f"{what}: expected a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float64
        raise DrawingError("out_of_range", f"{what}: number too large") from None


def _path_points(path, budget: int) -> list[tuple[float, float]]:
    """fabric.js path commands (M, L, Q) -> polyline points (at most `budget`); quadratic curves are sampled."""
    if not isinstance(path, list):
        raise DrawingError("bad_structure", "a canvas path must be a list of commands")
    pts: list[tuple[float, float]] = []
    for cmd in path:
        if not isinstance(cmd, (list, tuple)) or not cmd or not isinstance(cmd[0], str):
            raise DrawingError("bad_structure", "a canvas path command must be [letter, numbers...]")
        op = cmd[0].upper()[:8]
        nums = [_canvas_number(a, f"canvas command {op}") for a in cmd[1:]]
        if op in ("M", "L") and len(nums) == 2:
            pts.append((nums[0], nums[1]))
        elif op == "Q" and len(nums) == 4 and pts:
            (x0, y0), (cx, cy, x1, y1) = pts[-1], nums
            for k in range(1, _CANVAS_SAMPLES_PER_CURVE + 1):
                u = k / _CANVAS_SAMPLES_PER_CURVE
                pts.append(((1 - u) ** 2 * x0 + 2 * (1 - u) * u * cx + u * u * x1,
                            (1 - u) ** 2 * y0 + 2 * (1 - u) * u * cy + u * u * y1))
        else:
            raise DrawingError("bad_structure", f"unsupported canvas command {op} with {len(nums)} numbers")
        if len(pts) > budget:
            raise DrawingError("too_many_points", "canvas paths hold too many points")
    return pts


def is_canvas_path(obj) -> bool:
    """A fabric.js stroke: an object typed "path" (fabric.js 6+ writes "Path"); other canvas objects are not."""
    return isinstance(obj, dict) and str(obj.get("type", "")).lower() == "path"


def parse_canvas(data, limits: Limits = DEFAULT_LIMITS, times: Sequence[float] | None = None) -> Drawing:
    """The drawing page's canvas JSON (fabric.js objects) -> raw Drawing in canvas pixels.

    Each `path` object is one stroke, in the order it was drawn. The canvas records no time, so the page
    passes `times` (ms at which each stroke arrived); points inside a stroke are spread evenly between the
    stroke's arrival and the next one's, which keeps stroke order and pace as the time channels expect.
    Both come from a browser, so anything malformed is a DrawingError, like the other parsers.
    """
    if isinstance(data, (str, bytes)):
        data = loads_drawing_json(data, limits)
    if not isinstance(data, dict):
        raise DrawingError("bad_structure", "canvas data must be a JSON object")
    objects = data.get("objects", [])
    if not isinstance(objects, list):
        raise DrawingError("bad_structure", "canvas 'objects' must be a list")
    if times is not None and not isinstance(times, (list, tuple, np.ndarray)):
        raise DrawingError("bad_structure", "stroke times must be a list of numbers")
    times = None if times is None else [_canvas_number(t, "stroke time") for t in list(times)[: limits.max_strokes + 1]]
    paths = [o for o in objects if is_canvas_path(o)]
    if len(paths) > limits.max_strokes:
        raise DrawingError("too_many_strokes", f"{len(paths)} > {limits.max_strokes}")
    strokes, budget = [], limits.max_points
    for k, obj in enumerate(paths):
        pts = _path_points(obj.get("path") or [], budget)
        budget -= len(pts)
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        t0 = times[k] if times is not None and k < len(times) else 1000.0 * k
        t1 = times[k + 1] if times is not None and k + 1 < len(times) else t0 + 10.0 * len(pts)
        step = max(t1 - t0, 1.0) / len(pts)
        strokes.append([xs, ys, [t0 + step * i for i in range(len(pts))]])
    return from_strokes(strokes, limits)
