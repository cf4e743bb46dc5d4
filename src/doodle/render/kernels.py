"""The compiled half of the rasteriser: numbers -> points (`unflatten`) -> pixels (`render_points`).

Every numba function that calls another lives in this one file on purpose: numba's on-disk cache
(`cache=True`) is invalidated only when the caller's own file changes, never when a function it calls
from another file does, so a kernel split across files could keep running stale compiled code
(tests/test_compiled_code.py checks this rule for the whole package). `raster` and `flat_input` are the
Python API around these functions.
"""

from __future__ import annotations

import numba
import numpy as np


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
    """The step loop of `render_points` for 3 channels and line width 2, same pixels as the general loop."""
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
def render_points(xy, t, slen, nst, fids, size, lw, margin, floor, out):
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


@numba.njit(cache=True)
def unflatten(values, times, alens, narr, split, fit):
    """A drawing's numbers -> (error, xy (P, 2) float32, t (P,) int32, stroke_len (S,)).

    `values` holds every array of every stroke in order (x, y[, t] per stroke), or, when `split`, only the
    x and y arrays, the t arrays being in `times`. `alens` is the length of every array, `narr` the number
    of arrays per stroke. error 1: a stroke is not 2 or 3 arrays; 2: the arrays of a stroke differ in
    length; 3: a value is NaN or infinite; 4: the lengths do not add up to the numbers given (an object
    whose len() disagrees with its items). Empty strokes are dropped. t is ms since the first point, or -1
    everywhere unless every stroke has times. With `fit`, points move to the top-left corner and scale so
    the longer side spans 0..255: raw canvas pixels -> the simplified box, as Google's simplification (and
    the naive reference) does.
    """
    S = narr.shape[0]
    timed = S > 0
    P = a = need_v = need_t = 0
    for s in range(S):
        k = narr[s]
        if k < 2 or k > 3:
            return 1, np.empty((0, 2), np.float32), np.empty(0, np.int32), np.empty(0, np.int32)
        if alens[a + 1] != alens[a] or (k == 3 and alens[a + 2] != alens[a]):
            return 2, np.empty((0, 2), np.float32), np.empty(0, np.int32), np.empty(0, np.int32)
        timed = timed and k == 3
        P += alens[a]
        need_v += (2 if split else k) * alens[a]  # what the lengths promise must be what was read
        need_t += alens[a] if split and k == 3 else 0
        a += k
    if need_v != values.shape[0] or need_t != (times.shape[0] if split else 0):
        return 4, np.empty((0, 2), np.float32), np.empty(0, np.int32), np.empty(0, np.int32)
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


@numba.njit(cache=True)
def rasterize_one(values, times, alens, narr, split, fit, fids, size, lw, margin, floor, out):
    """`unflatten` + `render_points` of one drawing in one compiled call (a dispatch costs microseconds)."""
    err, xy, t, lens = unflatten(values, times, alens, narr, split, fit)
    if err == 0:
        render_points(xy, t, lens, np.full(1, lens.shape[0], np.int32), fids, size, lw, margin, floor, out)
    return err
