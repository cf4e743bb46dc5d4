"""Compiled parser for many Kaggle `drawing` fields at once.

`json.loads` builds a Python int per coordinate, which is what makes the public pipelines slow. Here the
fields of a chunk are joined into one byte buffer and a numba state machine reads them straight into flat
arrays. It accepts only the plain form ``[[[d, d, ...], [d, d, ...]], ...]`` with integers 0..255 and
equal x/y lengths; any other field is flagged, and the caller parses it with the careful path
(`strokes.parse_kaggle_drawing`), which either accepts it or names the reason for rejecting it.
"""

from __future__ import annotations

import numba
import numpy as np

from doodle.drawing.flat import Drawings
from doodle.drawing.strokes import DEFAULT_LIMITS, Limits


@numba.njit(cache=True, inline="always")
def skip_ws(buf, i, end):
    while i < end and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
        i += 1
    return i


@numba.njit(cache=True)
def _parse_array(buf, i, end, out, col, p0, cap):
    """Parse `[d, d, ...]` at i into out[p0:, col]; returns (next index, count) or (-1, 0)."""
    if i >= end or buf[i] != 91:
        return -1, 0
    i = skip_ws(buf, i + 1, end)
    n = 0
    while True:
        if i >= end or buf[i] < 48 or buf[i] > 57:
            return -1, 0
        v = 0
        d0 = i
        while i < end and 48 <= buf[i] <= 57:
            v = v * 10 + (buf[i] - 48)
            i += 1
            if i - d0 > 3:
                return -1, 0
        if v > 255 or (buf[d0] == 48 and i - d0 > 1):
            return -1, 0
        if p0 + n >= cap:
            return -1, 0
        out[p0 + n, col] = v
        n += 1
        i = skip_ws(buf, i, end)
        if i < end and buf[i] == 44:
            i = skip_ws(buf, i + 1, end)
        elif i < end and buf[i] == 93:
            return i + 1, n
        else:
            return -1, 0


@numba.njit(cache=True)
def _parse_row(buf, start, end, xy, p, slen, s, max_strokes, max_points):
    """One drawing; returns (points, strokes) written, or (-1, -1) when the careful parser must decide."""
    i = skip_ws(buf, start, end)
    if i >= end or buf[i] != 91:
        return -1, -1
    i = skip_ws(buf, i + 1, end)
    n_pts = 0
    n_st = 0
    cap = min(xy.shape[0], p + max_points)
    while True:
        if i >= end or buf[i] != 91 or n_st >= max_strokes or s + n_st >= slen.shape[0]:
            return -1, -1
        i = skip_ws(buf, i + 1, end)
        i, nx = _parse_array(buf, i, end, xy, 0, p + n_pts, cap)
        if i < 0:
            return -1, -1
        i = skip_ws(buf, i, end)
        if i >= end or buf[i] != 44:
            return -1, -1
        i = skip_ws(buf, i + 1, end)
        i, ny = _parse_array(buf, i, end, xy, 1, p + n_pts, cap)
        if i < 0 or ny != nx:
            return -1, -1
        i = skip_ws(buf, i, end)
        if i >= end or buf[i] != 93:
            return -1, -1
        slen[s + n_st] = nx
        n_st += 1
        n_pts += nx
        i = skip_ws(buf, i + 1, end)
        if i < end and buf[i] == 44:
            i = skip_ws(buf, i + 1, end)
        elif i < end and buf[i] == 93:
            i = skip_ws(buf, i + 1, end)
            break
        else:
            return -1, -1
    if i != end:
        return -1, -1
    return n_pts, n_st


@numba.njit(cache=True)
def _parse_all(buf, offsets, max_strokes, max_points):
    n = offsets.shape[0] - 1
    ok = np.zeros(n, dtype=np.bool_)
    nst = np.zeros(n, dtype=np.int32)
    xy = np.empty((buf.shape[0] // 4 + 1, 2), dtype=np.uint8)
    slen = np.empty(buf.shape[0] // 10 + 1, dtype=np.int32)
    p = 0
    s = 0
    for r in range(n):
        dp, ds = _parse_row(buf, offsets[r], offsets[r + 1], xy, p, slen, s, max_strokes, max_points)
        if dp >= 0:
            ok[r] = True
            nst[r] = ds
            p += dp
            s += ds
    return ok, xy[:p], slen[:s], nst


def join_fields(fields: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> one uint8 buffer and (n+1,) offsets; non-ASCII fields become empty (parsed carefully later)."""
    joined = "".join(fields)
    if not joined.isascii():
        fields = [f if f.isascii() else "" for f in fields]
        joined = "".join(fields)
    lens = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields))
    offsets = np.zeros(len(fields) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    return np.frombuffer(joined.encode("ascii"), dtype=np.uint8), offsets


def parse_kaggle_fields(fields: list[str], limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, Drawings]:
    """Parse Kaggle simplified drawing strings -> (ok, drawings): `ok` (n,) bool marks the rows parsed here,
    `drawings` holds those rows in input order (untimed, uint8 box); the others are left to the caller."""
    buf, offsets = join_fields(fields)
    ok, xy, slen, nst = _parse_all(buf, offsets, limits.max_strokes, limits.max_points)
    return ok, Drawings(xy, np.full(len(xy), -1, np.int32), slen, nst[ok])
