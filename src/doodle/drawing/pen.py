"""The drawing page's pen component: its messages -> a raw timed `Drawing`, checked like any other input.

The component (doodle/app/pen/) records every point as (x, y, t) in canvas pixels, t in ms since the
drawing's first point, strokes kept apart, and sends

    {"v": 1, "seq": 17, "final": false, "strokes": [[[x...], [y...], [t...]], ...]}

`seq` counts the component's sends (a newer drawing has a larger one); `final` marks the send after a pen
lift, undo or clear. The strokes are Google's raw ndjson format exactly, so they go through
`strokes.simplify_raw` as prepare sends raw files through it. A message comes from a browser: anything off
(types, sizes, too many points or strokes, times that go backwards) is a `DrawingError` with a short reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from doodle.drawing.strokes import DEFAULT_LIMITS, Drawing, DrawingError, Limits, from_strokes

VERSION = 1
KEYS = {"v", "seq", "final", "strokes"}
MAX_COORD = 100_000.0  # canvas pixels; the component clamps to its box, this only bounds nonsense
MAX_MS = 30 * 60 * 1000  # half an hour of drawing


@dataclass(frozen=True)
class PenMessage:
    """One checked message: the raw drawing (None when the canvas is empty), its send number, pen lifted."""

    drawing: Drawing | None
    seq: int
    final: bool


def _seq(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise DrawingError("bad_message", f"seq must be a non-negative integer, got {type(value).__name__}")
    return value


def _count_points(strokes: list, limits: Limits) -> None:
    """Caps checked on the list lengths, before any number is converted."""
    if len(strokes) > limits.max_strokes:
        raise DrawingError("too_many_strokes", f"{len(strokes)} > {limits.max_strokes}")
    total = 0
    for i, s in enumerate(strokes):
        if not isinstance(s, list) or len(s) != 3 or not all(isinstance(a, list) for a in s):
            raise DrawingError("bad_structure", f"stroke {i} must be [xs, ys, ts]")
        total += len(s[0])
        if total > limits.max_points:
            raise DrawingError("too_many_points", f"more than {limits.max_points} points")


def check_times(d: Drawing) -> None:
    """Times in 0..MAX_MS that never go backwards, within a stroke or from one stroke to the next."""
    t = d.t
    if t.min() < 0 or t.max() > MAX_MS:
        raise DrawingError("bad_time", f"times span {t.min():g}..{t.max():g} ms, not 0..{MAX_MS}")
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        stroke = int(np.searchsorted(d.ends, back[0] + 1, side="right"))
        raise DrawingError("time_backwards", f"at point {back[0] + 1} (stroke {stroke})")


def parse_pen(message, limits: Limits = DEFAULT_LIMITS) -> PenMessage:
    """A component message (already JSON-decoded) -> PenMessage; raises DrawingError on anything off."""
    if not isinstance(message, dict):
        raise DrawingError("bad_message", f"expected an object, got {type(message).__name__}")
    extra = set(message) - KEYS
    if extra or message.get("v") != VERSION:
        raise DrawingError("bad_message", f"unknown keys {sorted(map(str, extra))[:3]} or version "
                                          f"{str(message.get('v'))[:10]} (expected {VERSION})")
    seq = _seq(message.get("seq"))
    final = message.get("final")
    if not isinstance(final, bool):
        raise DrawingError("bad_message", "final must be true or false")
    strokes = message.get("strokes")
    if not isinstance(strokes, list):
        raise DrawingError("bad_structure", "strokes must be a list")
    _count_points(strokes, limits)
    if not any(s[0] for s in strokes):
        return PenMessage(None, seq, final)
    d = from_strokes(strokes, limits)
    if np.abs(d.xy).max() > MAX_COORD:
        raise DrawingError("out_of_range", f"coordinate beyond {MAX_COORD:g} px")
    check_times(d)
    return PenMessage(d, seq, final)


def pen_message(strokes: Sequence, seq: int = 1, final: bool = True) -> dict:
    """Raw strokes `[(xs, ys, ts), ...]` as the component sends them (for tests and benchmarks)."""
    return {"v": VERSION, "seq": seq, "final": final,
            "strokes": [[[float(v) for v in a] for a in s[:2]] + [[int(v) for v in s[2]]] for s in strokes]}
