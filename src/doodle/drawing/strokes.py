"""Drawings as flat arrays: parse, validate and simplify every format users have.

A `Drawing` holds all points of all strokes in one array plus the stroke boundaries, which is what the
rasteriser, the store and the sequence model all want. Formats read here:

* Kaggle CSV `drawing` field: ``[[[x...], [y...]], ...]`` (simplified, integers 0..255);
* Google ndjson records, simplified (two arrays per stroke) or raw (x, y, t in ms, canvas pixels);

Raw strokes become simplified ones exactly as Google documents it (`simplify_raw`), keeping the time of
each kept point. Every failure is a `DrawingError` with a short machine-readable `reason`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from doodle.errors import DoodleError


@dataclass(frozen=True)
class Limits:
    """Caps that keep a hostile or broken drawing from eating memory or time."""

    max_strokes: int = 1000
    max_points: int = 30000
    max_chars: int = 2_000_000


DEFAULT_LIMITS = Limits()


class DrawingError(DoodleError, ValueError):
    """A drawing that cannot be used; `reason` is a short code written to rejects files."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Drawing:
    """All points of a drawing: `xy` (P, 2) float32, `ends` (S,) int64 cumulative stroke ends, `t` (P,) ms or None."""

    xy: np.ndarray
    ends: np.ndarray
    t: np.ndarray | None = None

    @property
    def n_strokes(self) -> int:
        return len(self.ends)

    @property
    def n_points(self) -> int:
        return len(self.xy)

    def strokes(self) -> list[tuple[np.ndarray, ...]]:
        """The drawing as a list of `(xs, ys)` or `(xs, ys, ts)` arrays, one per stroke."""
        starts = np.concatenate([[0], self.ends[:-1]])
        out = []
        for a, b in zip(starts, self.ends, strict=True):
            seg = (self.xy[a:b, 0], self.xy[a:b, 1])
            out.append(seg + ((self.t[a:b],) if self.t is not None else ()))
        return out

    def to_lists(self) -> list[list[list[int]]]:
        """Google/Kaggle nested-list form with integer coordinates (and times when present)."""
        return [[np.rint(a).astype(np.int64).tolist() for a in s] for s in self.strokes()]


def from_strokes(strokes: Sequence, limits: Limits = DEFAULT_LIMITS) -> Drawing:
    """Build a Drawing from `[(xs, ys[, ts]), ...]`; validates lengths, finiteness and limits.

    Coordinates must be numbers (JSON ints or floats); strings, bools and nulls are `bad_number`, even where
    numpy would convert them. Empty strokes are dropped; a drawing with no point left is `empty_drawing`.
    """
    if not isinstance(strokes, (list, tuple)):
        raise DrawingError("bad_structure", "a drawing must be a list of strokes")
    if len(strokes) > limits.max_strokes:
        raise DrawingError("too_many_strokes", f"{len(strokes)} > {limits.max_strokes}")
    arrays, n_arrays, total = [], None, 0
    for i, stroke in enumerate(strokes):
        if not isinstance(stroke, (list, tuple)) or len(stroke) not in (2, 3):
            raise DrawingError("bad_structure", f"stroke {i} must be [xs, ys] or [xs, ys, ts]")
        if n_arrays is not None and len(stroke) != n_arrays:
            raise DrawingError("bad_structure", f"stroke {i} mixes timed and untimed arrays")
        n_arrays = len(stroke)
        cols = [_numbers(a, i) for a in stroke]
        if len({len(c) for c in cols}) != 1:
            raise DrawingError("length_mismatch", f"stroke {i}: x/y/t have lengths {[len(c) for c in cols]}")
        if len(cols[0]) == 0:
            continue  # an empty stroke carries nothing; the drawing is judged on the rest
        total += len(cols[0])
        if total > limits.max_points:
            raise DrawingError("too_many_points", f"more than {limits.max_points} points")
        arrays.append(cols)
    if not arrays:
        raise DrawingError("empty_drawing", "no points")
    stacked = [np.concatenate([a[k] for a in arrays]) for k in range(n_arrays)]
    if not all(np.isfinite(c).all() for c in stacked):
        raise DrawingError("bad_number", "NaN or infinite coordinate")
    ends = np.cumsum([len(a[0]) for a in arrays]).astype(np.int64)
    xy = np.stack(stacked[:2], axis=1)
    if np.abs(xy).max() > 1e7:
        raise DrawingError("out_of_range", "coordinate beyond 1e7")
    t = stacked[2].astype(np.float64) if n_arrays == 3 else None
    return Drawing(xy.astype(np.float32), ends, t)


_NUMBER_TYPES = (int, float, np.integer, np.floating)


def _numbers(values, stroke: int) -> np.ndarray:
    """One coordinate array as float64: a flat list (or 1-D array) of real numbers; bools and strings are not."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        numbers = values.dtype.kind in "iuf"
    elif isinstance(values, (list, tuple)):
        numbers = all(issubclass(t, _NUMBER_TYPES) and t is not bool for t in set(map(type, values)))
    else:
        raise DrawingError("bad_structure", f"stroke {stroke}: coordinates must be flat lists")
    if not numbers:
        raise DrawingError("bad_number", f"stroke {stroke}: coordinates must be numbers")
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        raise DrawingError("out_of_range", f"stroke {stroke}: coordinate beyond 1e7") from None


def check_simplified(d: Drawing) -> Drawing:
    """Simplified drawings live on the integer 0..255 grid."""
    if d.xy.min() < 0 or d.xy.max() > 255:
        raise DrawingError("out_of_range", f"coordinates span {d.xy.min():g}..{d.xy.max():g}, not 0..255")
    if not np.array_equal(d.xy, np.rint(d.xy)):
        raise DrawingError("bad_number", "simplified coordinates must be integers")
    return d


def loads_drawing_json(text: str | bytes, limits: Limits):
    """JSON text within the limits -> Python object; bad bytes, size or syntax is a DrawingError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DrawingError("bad_encoding", str(e)) from None
    if not isinstance(text, str):
        raise DrawingError("bad_json", f"expected text, got {type(text).__name__}")
    if len(text) > limits.max_chars:
        raise DrawingError("too_large", f"{len(text)} characters > {limits.max_chars}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise DrawingError("bad_json", str(e)[:80]) from None


def parse_kaggle_drawing(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Drawing:
    """A Kaggle CSV `drawing` field (simplified strokes) -> Drawing. Raises DrawingError."""
    obj = loads_drawing_json(text, limits)
    d = from_strokes(obj, limits)
    if d.t is not None:
        raise DrawingError("bad_structure", "Kaggle simplified strokes have two arrays, found three")
    return check_simplified(d)


@dataclass(frozen=True)
class Record:
    """One labelled (or unlabelled) drawing with Google's metadata."""

    key_id: int
    word: str | None
    drawing: Drawing
    countrycode: str = ""
    recognized: bool | None = None
    timestamp: str = ""
    raw: bool = False


def parse_key_id(value) -> int:
    """Google/Kaggle key_id: a non-negative integer of at most 19 digits (string or number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 2**63:
            raise DrawingError("bad_key_id", "outside 0 .. 2**63-1")
        return value
    if not isinstance(value, str):  # never str() a whole nested object
        raise DrawingError("bad_key_id", f"a {type(value).__name__}, not digits")
    s = value.strip()
    if not (s.isascii() and s.isdigit()) or len(s) > 19 or int(s) >= 2**63:  # isdigit alone takes "²"
        raise DrawingError("bad_key_id", repr(value)[:40])
    return int(s)


def parse_ndjson_line(line: str | bytes, limits: Limits = DEFAULT_LIMITS, simplify: bool = True) -> Record:
    """One Google ndjson line (simplified or raw) -> Record; raw drawings are simplified when asked."""
    obj = loads_drawing_json(line, limits)
    if not isinstance(obj, dict):
        raise DrawingError("bad_structure", "an ndjson line must be a JSON object")
    if "drawing" not in obj:
        raise DrawingError("missing_field", "drawing")
    key_id = parse_key_id(obj.get("key_id", ""))
    word = obj.get("word")
    if word is not None and not isinstance(word, str):
        raise DrawingError("bad_word", f"a {type(word).__name__}, not text")
    d = from_strokes(obj["drawing"], limits)
    raw = d.t is not None
    if raw and simplify:
        d = simplify_raw(d)
    elif not raw:
        check_simplified(d)
    rec = obj.get("recognized")
    return Record(key_id, word, d, _text(obj.get("countrycode")), rec if isinstance(rec, bool) else None,
                  _text(obj.get("timestamp")), raw)


def _text(value) -> str:
    """A metadata field as text: strings and numbers as written, anything else (null, lists...) as ''."""
    return value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else ""


def _resample(xy: np.ndarray, t: np.ndarray, spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Points every `spacing` pixels along a polyline (plus its last point), times interpolated.

    A single point comes back twice, as in Google's simplified files, where every dot is a 2-point stroke.
    """
    if len(xy) < 2:
        return np.repeat(xy, 2, axis=0), np.repeat(t, 2)
    seg = np.hypot(*np.diff(xy, axis=0).T)
    dist = np.concatenate([[0.0], np.cumsum(seg)])
    if dist[-1] < 1e-6:  # a dot (or a numerically zero stroke)
        return xy, t  # a dot: Google keeps its points as they are
    at = np.arange(0.0, dist[-1], spacing)
    if dist[-1] - at[-1] > 1e-9:
        at = np.append(at, dist[-1])
    # np.interp needs increasing xp: drop repeated points (zero-length segments) first
    keep = np.concatenate([[True], seg > 0])
    d = dist[keep]
    out = np.stack([np.interp(at, d, xy[keep, 0]), np.interp(at, d, xy[keep, 1])], axis=1)
    out_t = np.interp(at, d, t[keep])
    out_t[-1] = t[-1]  # the stroke ends when the pen lifts, even if it rested on its last point
    return out, out_t


def rdp_indices(pts: np.ndarray, epsilon: float) -> np.ndarray:
    """Indices kept by the classic Ramer-Douglas-Peucker split (first/last kept, split at the farthest point).

    Not cv2.approxPolyDP: on the shared data Google's own simplification matches this classic split for 91%
    of drawings and approxPolyDP's variant for 14%. Iterative, so a long stroke cannot hit the recursion limit.
    """
    n = len(pts)
    if n < 3:
        return np.arange(n)
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        seg = pts[a + 1 : b]
        d = pts[b] - pts[a]
        norm = math.hypot(d[0], d[1])
        if norm == 0:
            dist = np.hypot(seg[:, 0] - pts[a, 0], seg[:, 1] - pts[a, 1])
        else:
            dist = np.abs(d[0] * (seg[:, 1] - pts[a, 1]) - d[1] * (seg[:, 0] - pts[a, 0])) / norm
        i = int(np.argmax(dist))
        if dist[i] > epsilon:
            keep[a + 1 + i] = True
            stack += [(a, a + 1 + i), (a + 1 + i, b)]
    return np.flatnonzero(keep)


def simplify_raw(d: Drawing, epsilon: float = 2.0) -> Drawing:
    """Google's simplification: align top-left, scale to 0..255, resample at 1 px, RDP(epsilon), round.

    The time of each kept point is kept (ms since the drawing's first point), so time channels still work.
    """
    xy = d.xy.astype(np.float64)
    xy = xy - xy.min(axis=0)
    extent = xy.max()
    if extent > 0:
        xy *= 255.0 / extent
    t = d.t if d.t is not None else np.zeros(len(xy))
    t = t - t.min()
    starts = np.concatenate([[0], d.ends[:-1]])
    out_xy, out_t, ends = [], [], []
    for a, b in zip(starts, d.ends, strict=True):
        pts, ts = _resample(xy[a:b], t[a:b])
        if len(pts) > 2:
            idx = rdp_indices(pts, epsilon)
            pts, ts = pts[idx], ts[idx]
        out_xy.append(np.rint(pts))
        out_t.append(ts)
        ends.append(len(pts))
    xy_out = np.clip(np.concatenate(out_xy), 0, 255).astype(np.float32)
    t_out = np.rint(np.concatenate(out_t)) if d.t is not None else None
    return Drawing(xy_out, np.cumsum(ends).astype(np.int64), t_out)
