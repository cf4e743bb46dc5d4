"""Compiled reader for a drawing's JSON text: ``[[[x, ...], [y, ...](, [t, ...])], ...]`` -> flat numbers.

`rasterize` accepts the text of a Kaggle `drawing` column or an ndjson `drawing` field as well as nested
lists. `json.loads` builds a Python number per coordinate (~30 ns each, more than the drawing itself on a
raw timed drawing of ~600 numbers); this reads the bytes once in compiled code into the same
(numbers, array lengths, arrays per stroke) that `render.kernels.unflatten` reads.

Only the plain form is read here: exactly three levels of arrays, JSON numbers with at most 15 significant
digits and no exponent. Anything else (other nesting, exponents, NaN, trailing text, malformed JSON)
returns None and the caller goes through `json.loads`, which either reads it or names the problem, so both
paths accept and render exactly the same drawings. Numbers are converted exactly: the digits form an
integer below 2**53 and are divided by an exact power of ten, one correctly rounded operation, the same
double `float()` gives.
"""

from __future__ import annotations

import numba
import numpy as np

_POW10 = np.array([10.0 ** k for k in range(23)])  # exact doubles up to 1e22


# Its own copy of fastparse's skipper: numba's cache does not notice a change in a function called from
# another file (tests/test_compiled_code.py), so compiled functions only call compiled code of their file.
@numba.njit(cache=True, inline="always")
def skip_ws(buf, i, end):
    while i < end and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
        i += 1
    return i


@numba.njit(cache=True, inline="always")
def _number(buf, i, pow10):
    """A JSON number at i -> (next index, value); next index -1 when not a plain number this reads."""
    n = buf.shape[0]
    neg = i < n and buf[i] == 45
    if neg:
        i += 1
    if i >= n or buf[i] < 48 or buf[i] > 57:
        return -1, 0.0
    if buf[i] == 48 and i + 1 < n and 48 <= buf[i + 1] <= 57:
        return -1, 0.0  # leading zero: not JSON
    m = 0
    digits = 0
    while i < n and 48 <= buf[i] <= 57:
        m = m * 10 + (buf[i] - 48)
        digits += 1
        i += 1
    frac = 0
    if i < n and buf[i] == 46:
        i += 1
        if i >= n or buf[i] < 48 or buf[i] > 57:
            return -1, 0.0
        while i < n and 48 <= buf[i] <= 57:
            m = m * 10 + (buf[i] - 48)
            digits += 1
            frac += 1
            i += 1
    if digits > 18 or (i < n and (buf[i] == 101 or buf[i] == 69)):
        return -1, 0.0  # too many digits for an exact integer, or an exponent: json.loads reads it
    v = m / pow10[frac] if frac else float(m)
    return i, -v if neg else v


@numba.njit(cache=True, inline="always")
def _open(buf, i):
    """`[` at i -> (index of its first element, 0), or (index after `[]`, 1) when empty; (-1, 0) if no `[`."""
    if i >= buf.shape[0] or buf[i] != 91:
        return -1, 0
    i = skip_ws(buf, i + 1, buf.shape[0])
    if i < buf.shape[0] and buf[i] == 93:
        return i + 1, 1
    return i, 0


@numba.njit(cache=True, inline="always")
def _after(buf, i):
    """After an element: `,` -> (index of the next element, 0); `]` -> (index after it, 1); else (-1, 0)."""
    i = skip_ws(buf, i, buf.shape[0])
    if i < buf.shape[0] and buf[i] == 44:
        return skip_ws(buf, i + 1, buf.shape[0]), 0
    if i < buf.shape[0] and buf[i] == 93:
        return i + 1, 1
    return -1, 0


@numba.njit(cache=True)
def _parse(buf, pow10):
    """bytes -> (ok, flat float64, length of every array, arrays per stroke)."""
    n = buf.shape[0]
    flat = np.empty(n // 2 + 1, np.float64)
    alens = np.empty(n // 2 + 1, np.int64)
    narr = np.empty(n // 2 + 1, np.int64)
    nf = na = ns = 0
    bad = (False, flat[:0], alens[:0], narr[:0])
    i, done = _open(buf, skip_ws(buf, 0, buf.shape[0]))
    if i < 0:
        return bad
    while not done:  # strokes
        i, stroke_done = _open(buf, i)
        if i < 0:
            return bad
        k = 0
        while not stroke_done:  # the arrays of a stroke
            i, array_done = _open(buf, i)
            if i < 0:
                return bad
            c = 0
            while not array_done:  # numbers
                i, v = _number(buf, i, pow10)
                if i < 0:
                    return bad
                flat[nf] = v
                nf += 1
                c += 1
                i, array_done = _after(buf, i)
                if i < 0:
                    return bad
            alens[na] = c
            na += 1
            k += 1
            i, stroke_done = _after(buf, i)
            if i < 0:
                return bad
        narr[ns] = k
        ns += 1
        i, done = _after(buf, i)
        if i < 0:
            return bad
    if skip_ws(buf, i, buf.shape[0]) != n:
        return bad
    return True, flat[:nf], alens[:na], narr[:ns]


def parse_drawing_text(text: str | bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Drawing JSON text -> (numbers in order, length of every array, arrays per stroke), or None when the
    text is not in the plain form (then `json.loads` is the reader that decides)."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    ok, flat, alens, narr = _parse(np.frombuffer(raw, np.uint8), _POW10)
    return (flat, alens, narr) if ok else None
