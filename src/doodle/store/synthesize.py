"""A Kaggle-shaped data set of any size made from real drawings, for full-size runs without Kaggle's files.

Every output drawing is a real source drawing (a Kaggle folder of `<word>.csv` files, or a prepared store)
moved in stroke space: a random affine (scale, aspect, rotation, shear, shift; no flip) plus per-point
jitter, then fitted back into the 0..255 box (shrunk about its centre only when wider than the box, shifted
inside), rounded, with repeated consecutive points dropped. Source drawings are used in turn (a shuffled
cycle per class), so a class with 20 drawings reuses each of them many times, each time moved differently.

* Rows per class follow a fixed distribution (`class_weights`): weight 100k + 200k * u**3 with u in [0, 1)
  a hash of the word, i.e. 100k..300k per class at Kaggle's size (mean ~150k, most classes near the low
  end, a few large ones, as in Kaggle's train set), scaled to the rows asked for by largest remainders.
  Test rows are spread evenly over the classes.
* key_ids are 18-digit numbers `KEY_BASE + mix(seed, row)`, a bijection of the row number: never repeated,
  and apart from real Quick, Draw! key_ids (16 digits; a source key_id in the synthetic range is an error).
* countrycode follows the 30 commonest countries of the shared Quick, Draw! copy in proportion, recognized
  is True with p = 0.928 (ditto), timestamps are uniform over 2017-01-01 .. 2017-04-01 (Kaggle's span).
* Everything is drawn from `np.random.default_rng([seed, class, batch, kind])`: the same seed gives
  byte-identical files, whatever the machine and however many worker processes (`workers`: classes are made
  in parallel, each class's train file by one process, the test rows gathered in class order).
* Speed: the move, fit, rounding and de-repeating of every point is one compiled pass (`_move_fit_round`),
  the CSV text another (`kaggle_writer`); ~170k rows/s in one process on this 2-core CPU.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from tqdm import tqdm

from doodle import resources
from doodle.config import AugmentCfg
from doodle.drawing.flat import Drawings
from doodle.errors import UserError
from doodle.render.augment import CENTRE, random_affine
from doodle.store.class_sources import ClassSource
from doodle.store.kaggle_writer import TEST_HEADER, TRAIN_HEADER, format_test_array, format_train_array

KEY_BASE = 10**17  # synthetic key_ids are KEY_BASE + a 59-bit number: 18 digits, below 2**63
KEY_BITS = 59
FULL_SIZE_MEAN = 150_000  # mean of the weights: 100k + 200k * E[u**3]
MOVE = AugmentCfg(flip=0.0, scale=0.1, stretch=0.1, shift=0.04, rotate=12.0, shear=0.12, point_jitter=0.6)
BATCH_ROWS = 32_768  # rows drawn and written at a time (bounds memory; part of the seed's stream)
COUNTRIES = ("US 8926 GB 1500 CA 770 DE 627 RU 476 AU 450 BR 371 FI 337 CZ 337 SE 328 FR 327 PL 315 IT 296 "
             "KR 288 TH 273 SA 270 PH 254 HU 248 NL 235 ID 179 SK 172 RO 166 VN 160 TW 147 IN 147 JP 144 "
             "AE 138 UA 122 NO 119 HR 108").split()
COUNTRY_CODES = np.frombuffer("".join(COUNTRIES[0::2]).encode("ascii"), np.uint8).reshape(-1, 2)
COUNTRY_P = np.array(COUNTRIES[1::2], np.float64) / sum(map(int, COUNTRIES[1::2]))
RECOGNIZED_P = 0.928
TIME_SPAN_US = (1483228800 * 10**6, 1491004800 * 10**6)  # 2017-01-01 .. 2017-04-01 UTC


def class_weights(words: list[str]) -> np.ndarray:
    """The fixed per-class weights (rows at Kaggle's full size): 100k + 200k * u**3, u = hash(word) in [0, 1)."""
    u = np.array([int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "big") / 2.0**64 for w in words])
    return 100_000 + 200_000 * u**3


def split_rows(total: int, weights: np.ndarray) -> np.ndarray:
    """`total` rows split in proportion to `weights` (largest remainders, ties to the earlier class)."""
    share = total * np.asarray(weights, np.float64) / np.sum(weights)
    counts = np.floor(share).astype(np.int64)
    left = total - int(counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:left]] += 1
    return counts


def key_ids(seed: int, start: int, n: int) -> np.ndarray:
    """key_ids of rows start .. start+n-1: KEY_BASE + a seeded bijection of the 59-bit row number."""
    mask = np.uint64(2**KEY_BITS - 1)
    salt = np.random.default_rng([seed, 2**32 - 1]).integers(0, 2**KEY_BITS, dtype=np.uint64)
    x = (np.arange(start, start + n, dtype=np.uint64) ^ salt) & mask
    with np.errstate(over="ignore"):  # multiplication mod 2**64 (then mod 2**59) by an odd number: a bijection
        x = (x * np.uint64(0x9E3779B97F4A7C15)) & mask
        x ^= x >> np.uint64(29)
        x = (x * np.uint64(0xBF58476D1CE4E5B9)) & mask
        x ^= x >> np.uint64(32)
    return (x + np.uint64(KEY_BASE)).astype(np.int64)


def move_drawings(d: Drawings, rng: np.random.Generator, idx: np.ndarray | None = None) -> Drawings:
    """Drawings `idx` of `d` (all when None), each moved by its own random affine + jitter, fitted into the
    0..255 box, rounded (uint8), repeated consecutive points dropped. One compiled pass over the points
    reads `d` in place: no gathered copy, no per-point temporaries."""
    st_off, pt_off = d.offsets()
    idx = np.arange(len(d), dtype=np.int64) if idx is None else np.asarray(idx, np.int64)
    m, shift = random_affine(len(idx), MOVE, rng)
    n_points = int((pt_off[idx + 1] - pt_off[idx]).sum())
    noise = rng.standard_normal((2, n_points), dtype=np.float32) * np.float32(MOVE.point_jitter)
    xy = np.empty((n_points, 2), np.uint8)
    n_strokes = (st_off[idx + 1] - st_off[idx]).astype(np.int32)
    slen = np.empty(int(n_strokes.sum()), np.int32)
    kept = _move_fit_round(np.ascontiguousarray(d.xy), d.stroke_len, st_off, pt_off, idx,
                           m.astype(np.float32), (shift.astype(np.float32) + np.float32(CENTRE)), noise, xy, slen)
    return Drawings(xy[:kept], np.full(kept, -1, np.int32), slen, n_strokes)


@numba.njit(cache=True)
def _move_fit_round(xy, stroke_len, st_off, pt_off, idx, m, shift, noise, out, out_slen):
    """The kernel of `move_drawings`; returns the points written to `out`. The float32 steps are numpy's
    (x' = m00 x + m01 y + shift + noise, then the fit and the shift back into the box, then rint), so the
    bytes do not depend on how the work is split."""
    c, one, two, box = np.float32(CENTRE), np.float32(1.0), np.float32(2.0), np.float32(255.0)
    big = 0
    for i in idx:
        big = max(big, pt_off[i + 1] - pt_off[i])
    f = np.empty((big, 2), np.float32)
    p_in = q = s_out = 0
    for r in range(idx.shape[0]):
        i = idx[r]
        p0, n = pt_off[i], pt_off[i + 1] - pt_off[i]
        lo0 = lo1 = np.float32(np.inf)
        hi0 = hi1 = np.float32(-np.inf)
        for k in range(n):
            x, y = np.float32(xy[p0 + k, 0]) - c, np.float32(xy[p0 + k, 1]) - c
            f[k, 0] = m[r, 0, 0] * x + m[r, 0, 1] * y + shift[r, 0] + noise[0, p_in + k]
            f[k, 1] = m[r, 1, 0] * x + m[r, 1, 1] * y + shift[r, 1] + noise[1, p_in + k]
            lo0, hi0 = min(lo0, f[k, 0]), max(hi0, f[k, 0])
            lo1, hi1 = min(lo1, f[k, 1]), max(hi1, f[k, 1])
        p_in += n
        fit = min(one, box / max(max(hi0 - lo0, hi1 - lo1), np.float32(1e-6)))
        mid0, mid1 = (lo0 + hi0) / two, (lo1 + hi1) / two
        a0, b0 = mid0 + (lo0 - mid0) * fit, mid0 + (hi0 - mid0) * fit
        a1, b1 = mid1 + (lo1 - mid1) * fit, mid1 + (hi1 - mid1) * fit
        mv0 = max(-a0, np.float32(0)) - max(b0 - box, np.float32(0))
        mv1 = max(-a1, np.float32(0)) - max(b1 - box, np.float32(0))
        k = 0
        for s in range(st_off[i], st_off[i + 1]):
            kept = 0
            for _ in range(stroke_len[s]):
                v0 = min(max(np.rint((f[k, 0] - mid0) * fit + mid0 + mv0), np.float32(0)), box)
                v1 = min(max(np.rint((f[k, 1] - mid1) * fit + mid1 + mv1), np.float32(0)), box)
                u0, u1 = np.uint8(v0), np.uint8(v1)
                if kept == 0 or u0 != out[q - 1, 0] or u1 != out[q - 1, 1]:  # a repeat comes from rounding
                    out[q, 0], out[q, 1] = u0, u1
                    q += 1
                    kept += 1
                k += 1
            out_slen[s_out] = kept
            s_out += 1
    return q


@dataclass(frozen=True)
class Rows:
    """One batch of synthetic rows of a class."""

    drawings: Drawings
    key_id: np.ndarray
    countrycode: np.ndarray  # (n, 2) uint8
    recognized: np.ndarray
    timestamp_us: np.ndarray


def class_rows(src: Drawings, n: int, first_key_row: int, seed: int, cls: int, kind: int, cycle_at: int = 0
               ) -> Iterator[Rows]:
    """`n` rows of class number `cls` from its source drawings `src`, in batches; `kind` 0 = train, 1 = test.
    Row j uses source drawing perm[(cycle_at + j) % len(src)], perm a seeded shuffle of the class."""
    if len(src) == 0:
        raise ValueError(f"class {cls}: no source drawings")
    perm = np.random.default_rng([seed, cls, 2**32 - 2]).permutation(len(src))
    for b, start in enumerate(range(0, n, BATCH_ROWS)):
        m = min(BATCH_ROWS, n - start)
        rng = np.random.default_rng([seed, cls, b, kind])
        picked = perm[(cycle_at + start + np.arange(m)) % len(src)]
        yield Rows(move_drawings(src, rng, picked), key_ids(seed, first_key_row + start, m),
                   COUNTRY_CODES[rng.choice(len(COUNTRY_CODES), m, p=COUNTRY_P)],
                   rng.random(m) < RECOGNIZED_P, rng.integers(*TIME_SPAN_US, m, dtype=np.int64))


# --- the data set on disk -------------------------------------------------------------------------------------


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_disk(out: Path, n_rows: int, row_bytes: float) -> int:
    """Estimated bytes of `n_rows` rows (+5%); a one-line UserError when the disk at `out` has less free."""
    need = int(n_rows * row_bytes * 1.05)
    free = free_bytes(out)
    if need > free:
        raise UserError(f"--out {out}: {n_rows:,} rows need about {need / 1e9:.1f} GB "
                        f"(~{row_bytes:.0f} bytes a row), only {free / 1e9:.1f} GB free there")
    return need


class ClassJob(NamedTuple):
    """One class's share of the data set: its train file, and its test rows (returned, written in order)."""

    c: int
    word: str
    rows: int
    first_row: int  # the key_id row number of its first train row
    test_rows: int
    first_test_row: int
    seed: int
    train_dir: Path


def write_class(source: ClassSource, job: ClassJob) -> tuple[int, bytes, bytes]:
    """Write `<train_dir>/<word>.csv.tmp`; (rows made, the class's test rows, their label lines)."""
    src, src_keys = source.drawings(job.word)
    if not len(src):
        raise UserError(f"{source.root}: class {job.word!r}: no usable drawing in the source")
    if (src_keys >= KEY_BASE).any():
        raise UserError(f"{source.root}: class {job.word!r}: source key_id {src_keys.max()} lies in the synthetic "
                        f"range (>= {KEY_BASE}); synthesize from real drawings, not a synthetic set")
    with open(job.train_dir / f"{job.word}.csv.tmp", "wb") as f:
        f.write(TRAIN_HEADER)
        for r in class_rows(src, job.rows, job.first_row, job.seed, job.c, 0):
            f.write(format_train_array(r.drawings, r.key_id, r.countrycode, r.recognized, r.timestamp_us, job.word))
    test, labels = [], []
    for r in class_rows(src, job.test_rows, job.first_test_row, job.seed, job.c, 1, cycle_at=job.rows):
        test.append(format_test_array(r.drawings, r.key_id, r.countrycode).tobytes())
        labels.append("".join(f"{k},{job.word}\n" for k in r.key_id.tolist()).encode())
    return job.rows + job.test_rows, b"".join(test), b"".join(labels)


_worker_source: ClassSource | None = None  # a pool worker's source (forked from the parent's)


def _set_worker_source(source: ClassSource) -> None:
    global _worker_source
    _worker_source = source


def _write_class_in_worker(job: ClassJob) -> tuple[int, bytes, bytes]:
    return write_class(_worker_source, job)


def class_results(source: ClassSource, jobs: list[ClassJob], workers: int) -> Iterator[tuple[int, bytes, bytes]]:
    """`write_class` of every job, in order; with `workers` > 1 in that many forked processes (a class
    at a time each; the bytes of a class never depend on which process made them)."""
    if workers <= 1:
        yield from (write_class(source, j) for j in jobs)
        return
    with mp.get_context("fork").Pool(workers, _set_worker_source, (source,)) as pool:
        yield from pool.imap(_write_class_in_worker, jobs)


def synthesize(source: ClassSource, out: Path, rows: int, test_rows: int, seed: int = 0,
               words: list[str] | None = None, progress: bool = True, workers: int = 1) -> dict:
    """Write `<out>/train_simplified/<word>.csv` (`rows` in all), `<out>/test_simplified.csv` and
    `<out>/test_labels.csv` (`test_rows`), with `workers` processes; every file is written under a temporary
    name and renamed at the end. Returns the summary (rows, bytes, seconds, rows_per_s)."""
    words = list(words or resources.kaggle_classes())
    have = source.counts(words)
    missing = [w for w in words if not have[w]]
    if missing:
        raise UserError(f"{source.root}: no source drawings for {len(missing)} of {len(words)} classes: "
                        f"{', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
    check_disk(out, rows + test_rows, source.mean_row_bytes())
    counts, tests = split_rows(rows, class_weights(words)), split_rows(test_rows, np.ones(len(words)))
    first, first_test = np.cumsum(counts) - counts, rows + np.cumsum(tests) - tests
    train_dir = out / "train_simplified"
    train_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*train_dir.glob("*.csv.tmp"), *out.glob("*.csv.tmp")]:  # an interrupted run's
        stale.unlink()
    jobs = [ClassJob(c, w, int(counts[c]), int(first[c]), int(tests[c]), int(first_test[c]), seed, train_dir)
            for c, w in enumerate(words)]
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    bar = tqdm(total=rows + test_rows, desc="synthesize", unit="row", unit_scale=True, disable=not progress)
    with open(out / "test_simplified.csv.tmp", "wb") as test_f, open(out / "test_labels.csv.tmp", "wb") as lab_f:
        test_f.write(TEST_HEADER)
        lab_f.write(b"key_id,word\n")
        for n, test, labels in class_results(source, jobs, workers):
            test_f.write(test)
            lab_f.write(labels)
            bar.update(n)
    bar.close()
    written = 0
    for path in [*(train_dir / f"{w}.csv.tmp" for w in words), out / "test_simplified.csv.tmp",
                 out / "test_labels.csv.tmp"]:
        written += path.stat().st_size
        os.replace(path, path.with_suffix(""))
    seconds = time.perf_counter() - t0
    return {"out": str(out), "rows": rows, "test_rows": test_rows, "classes": len(words), "seed": seed,
            "workers": workers, "bytes": written, "seconds": round(seconds, 2),
            "cpu_seconds": round(_cpu_seconds() - cpu0, 2), "rows_per_s": round((rows + test_rows) / max(seconds, 1e-9)),
            "mb_per_s": round(written / 1e6 / max(seconds, 1e-9), 1)}


def _cpu_seconds() -> float:
    """CPU time of this process and its ended (waited-for) children, such as a pool's workers."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
