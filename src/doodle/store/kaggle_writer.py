"""Write drawings as Kaggle CSV rows, compiled: the inverse of `doodle.drawing.kaggle_fields`.

Formatting a drawing with `json.dumps` builds a Python int and a string per coordinate; here a numba loop
writes whole batches of rows straight into one byte buffer. The text is exactly what Kaggle's files hold
(and `json.dumps(strokes, separators=(", ", ": "))` gives): ``"[[[x, x], [y, y]], [[x], [y]]]"`` quoted,
the other fields unquoted, `\\n` line ends.

    train layout  countrycode,drawing,key_id,recognized,timestamp,word   (`TRAIN_HEADER`)
    test layout   key_id,countrycode,drawing                            (`TEST_HEADER`)
"""

from __future__ import annotations

import numba
import numpy as np

from doodle.drawing.flat import Drawings

TRAIN_HEADER = b"countrycode,drawing,key_id,recognized,timestamp,word\n"
TEST_HEADER = b"key_id,countrycode,drawing\n"


@numba.njit(cache=True, inline="always")
def _put_uint(buf, i, v):
    """Decimal digits of v >= 0 at buf[i:]; returns the index after them."""
    n = 1
    t = v // 10
    while t > 0:
        n += 1
        t //= 10
    j = i + n
    while True:
        j -= 1
        buf[j] = 48 + v % 10
        v //= 10
        if j == i:
            return i + n


@numba.njit(cache=True, inline="always")
def _put_coord(buf, i, v):
    """Decimal digits of a coordinate 0 <= v <= 255, without the general loop (most of a row's bytes)."""
    if v >= 100:
        buf[i] = 48 + v // 100
        buf[i + 1] = 48 + (v // 10) % 10
        buf[i + 2] = 48 + v % 10
        return i + 3
    if v >= 10:
        buf[i] = 48 + v // 10
        buf[i + 1] = 48 + v % 10
        return i + 2
    buf[i] = 48 + v
    return i + 1


@numba.njit(cache=True, inline="always")
def _put_padded(buf, i, v, width):
    """v >= 0 as exactly `width` digits (zero-padded)."""
    for k in range(width - 1, -1, -1):
        buf[i + k] = 48 + v % 10
        v //= 10
    return i + width


@numba.njit(cache=True, inline="always")
def _put_bytes(buf, i, src):
    for k in range(src.shape[0]):
        buf[i + k] = src[k]
    return i + src.shape[0]


@numba.njit(cache=True)
def _put_drawing(buf, i, xy, slen, s0, s1, p):
    """`"[[[x, ...], [y, ...]], ...]"` (quotes included) of strokes s0:s1 whose first point is p."""
    buf[i] = 34
    buf[i + 1] = 91
    i += 2
    for s in range(s0, s1):
        if s > s0:
            buf[i] = 44
            buf[i + 1] = 32
            i += 2
        n = slen[s]
        buf[i] = 91
        buf[i + 1] = 91
        i += 2
        for c in range(2):
            if c == 1:
                buf[i] = 93
                buf[i + 1] = 44
                buf[i + 2] = 32
                buf[i + 3] = 91
                i += 4
            for k in range(n):
                if k > 0:
                    buf[i] = 44
                    buf[i + 1] = 32
                    i += 2
                i = _put_coord(buf, i, np.int32(xy[p + k, c]))
        buf[i] = 93
        buf[i + 1] = 93
        i += 2
        p += n
    buf[i] = 93
    buf[i + 1] = 34
    return i + 2


@numba.njit(cache=True)
def _put_timestamp(buf, i, us):
    """Microseconds since 1970-01-01 as Kaggle writes a timestamp: `2017-03-01 20:34:55.244100`."""
    secs = us // 1000000
    days = secs // 86400
    rem = secs - days * 86400
    z = days + 719468  # civil_from_days (H. Hinnant): the proleptic Gregorian date of a day number
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    i = _put_padded(buf, i, year, 4)
    buf[i] = 45
    i = _put_padded(buf, i + 1, month, 2)
    buf[i] = 45
    i = _put_padded(buf, i + 1, day, 2)
    buf[i] = 32
    i = _put_padded(buf, i + 1, rem // 3600, 2)
    buf[i] = 58
    i = _put_padded(buf, i + 1, (rem // 60) % 60, 2)
    buf[i] = 58
    i = _put_padded(buf, i + 1, rem % 60, 2)
    buf[i] = 46
    return _put_padded(buf, i + 1, us % 1000000, 6)


@numba.njit(cache=True)
def _format_rows(xy, slen, nst, key_id, country, recognized, ts_us, word, test, cap):
    buf = np.empty(cap, np.uint8)
    i = 0
    s = 0
    p = 0
    true_ = np.array([84, 114, 117, 101], np.uint8)
    false_ = np.array([70, 97, 108, 115, 101], np.uint8)
    for r in range(nst.shape[0]):
        s1 = s + nst[r]
        if test:
            i = _put_uint(buf, i, key_id[r])
            buf[i] = 44
            buf[i + 1] = country[r, 0]
            buf[i + 2] = country[r, 1]
            buf[i + 3] = 44
            i = _put_drawing(buf, i + 4, xy, slen, s, s1, p)
        else:
            buf[i] = country[r, 0]
            buf[i + 1] = country[r, 1]
            buf[i + 2] = 44
            i = _put_drawing(buf, i + 3, xy, slen, s, s1, p)
            buf[i] = 44
            i = _put_uint(buf, i + 1, key_id[r])
            buf[i] = 44
            i = _put_bytes(buf, i + 1, true_ if recognized[r] else false_)
            buf[i] = 44
            i = _put_timestamp(buf, i + 1, ts_us[r])
            buf[i] = 44
            i = _put_bytes(buf, i + 1, word)
        buf[i] = 10
        i += 1
        for k in range(s, s1):
            p += slen[k]
        s = s1
    return buf[:i]


def _codes(countrycode: np.ndarray) -> np.ndarray:
    codes = np.asarray(countrycode)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != 2:
        raise ValueError("countrycode must be (n, 2) uint8 ASCII letters")
    return np.ascontiguousarray(codes)


def _coords(d: Drawings) -> np.ndarray:
    if d.xy.dtype != np.uint8:  # the simplified 0..255 grid; 3 digits at most (`_capacity`, `_put_coord`)
        raise ValueError(f"drawings to write must be uint8 points, got {d.xy.dtype}")
    return d.xy


def _capacity(d: Drawings, extra_per_row: int) -> int:
    # a coordinate takes at most 3 digits + ", ", a stroke at most 10 brackets and separators
    return 10 * len(d.xy) + 10 * len(d.stroke_len) + len(d) * extra_per_row + 16


def format_train_array(d: Drawings, key_id: np.ndarray, countrycode: np.ndarray, recognized: np.ndarray,
                      timestamp_us: np.ndarray, word: str) -> np.ndarray:
    """`format_train_rows` as a uint8 array, to write without a copy (`file.write(array)`)."""
    w = np.frombuffer(word.encode("utf-8"), np.uint8)
    n = len(d)
    assert len(key_id) == len(countrycode) == len(recognized) == len(timestamp_us) == n
    assert (np.asarray(key_id) >= 0).all() and (np.asarray(timestamp_us) >= 0).all()
    return _format_rows(_coords(d), d.stroke_len, d.n_strokes, np.asarray(key_id, np.int64), _codes(countrycode),
                        np.asarray(recognized, np.bool_), np.asarray(timestamp_us, np.int64), w, False,
                        _capacity(d, 80 + len(w)))


def format_train_rows(d: Drawings, key_id: np.ndarray, countrycode: np.ndarray, recognized: np.ndarray,
               timestamp_us: np.ndarray, word: str) -> bytes:
    """Kaggle train rows (no header) of uint8 drawings `d`; `countrycode` (n, 2) uint8, `recognized` (n,)
    bool, `timestamp_us` (n,) int64 microseconds since 1970 (UTC)."""
    return format_train_array(d, key_id, countrycode, recognized, timestamp_us, word).tobytes()


def format_test_array(d: Drawings, key_id: np.ndarray, countrycode: np.ndarray) -> np.ndarray:
    """`format_test_rows` as a uint8 array, to write without a copy."""
    n = len(d)
    assert len(key_id) == len(countrycode) == n and (np.asarray(key_id) >= 0).all()
    none = np.zeros(n, np.int64)
    return _format_rows(_coords(d), d.stroke_len, d.n_strokes, np.asarray(key_id, np.int64), _codes(countrycode),
                        none.astype(np.bool_), none, np.zeros(0, np.uint8), True, _capacity(d, 40))


def format_test_rows(d: Drawings, key_id: np.ndarray, countrycode: np.ndarray) -> bytes:
    """Kaggle test rows (`key_id,countrycode,drawing`, no header) of uint8 drawings `d`."""
    return format_test_array(d, key_id, countrycode).tobytes()
