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
  byte-identical files, whatever the machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from doodle import resources
from doodle.config import AugmentCfg
from doodle.drawing.flat import Drawings
from doodle.errors import UserError
from doodle.render.augment import CENTRE, random_affine
from doodle.store.class_sources import ClassSource
from doodle.store.kaggle_writer import TEST_HEADER, TRAIN_HEADER, format_test_rows, format_train_rows

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


def move_drawings(d: Drawings, rng: np.random.Generator) -> Drawings:
    """Each drawing moved by its own random affine + jitter, fitted into the 0..255 box, rounded (uint8)."""
    m, shift = random_affine(len(d), MOVE, rng)
    own = np.repeat(np.arange(len(d)), d.points_per_drawing())
    x = d.xy[:, 0].astype(np.float32) - CENTRE
    y = d.xy[:, 1].astype(np.float32) - CENTRE
    m, shift = m.astype(np.float32)[own], (shift.astype(np.float32) + CENTRE)[own]
    noise = rng.standard_normal((2, len(x)), dtype=np.float32) * np.float32(MOVE.point_jitter)
    xy = np.stack([m[:, 0, 0] * x + m[:, 0, 1] * y + shift[:, 0] + noise[0],
                   m[:, 1, 0] * x + m[:, 1, 1] * y + shift[:, 1] + noise[1]], axis=1)
    starts = d.offsets()[1][:-1]
    lo, hi = np.minimum.reduceat(xy, starts, axis=0), np.maximum.reduceat(xy, starts, axis=0)
    fit = np.minimum(np.float32(1.0), np.float32(255.0) / np.maximum((hi - lo).max(axis=1), 1e-6))
    mid = (lo + hi) / 2
    lo, hi = mid + (lo - mid) * fit[:, None], mid + (hi - mid) * fit[:, None]
    move = np.maximum(-lo, 0) - np.maximum(hi - 255, 0)  # shift back inside the box
    xy = (xy - mid[own]) * fit[own, None] + mid[own] + move[own]
    q = np.clip(np.rint(xy), 0, 255).astype(np.uint8)
    return _drop_repeats(Drawings(q, np.full(len(q), -1, np.int32), d.stroke_len, d.n_strokes))


def _drop_repeats(d: Drawings) -> Drawings:
    """Drop a point equal to the one before it in its stroke (rounding made it so; Google's simplified
    drawings have none). A stroke keeps its first point, so none is emptied."""
    first = np.zeros(len(d.xy), bool)
    stroke_starts = np.concatenate([[0], np.cumsum(d.stroke_len[:-1], dtype=np.int64)])
    first[stroke_starts] = True
    keep = first.copy()
    keep[1:] |= (d.xy[1:] != d.xy[:-1]).any(axis=1)
    if keep.all():
        return d
    slen = np.add.reduceat(keep.astype(np.int32), stroke_starts).astype(np.int32)
    return Drawings(d.xy[keep], d.t[keep], slen, d.n_strokes)


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
        picked = src.take(perm[(cycle_at + start + np.arange(m)) % len(src)])
        yield Rows(move_drawings(picked, rng), key_ids(seed, first_key_row + start, m),
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


def synthesize(source: ClassSource, out: Path, rows: int, test_rows: int, seed: int = 0,
               words: list[str] | None = None, progress: bool = True) -> dict:
    """Write `<out>/train_simplified/<word>.csv` (`rows` in all), `<out>/test_simplified.csv` and
    `<out>/test_labels.csv` (`test_rows`); every file is written under a temporary name and renamed at the
    end. Returns the summary (rows, bytes, seconds, rows_per_s)."""
    words = list(words or resources.kaggle_classes())
    have = source.counts(words)
    missing = [w for w in words if not have[w]]
    if missing:
        raise UserError(f"{source.root}: no source drawings for {len(missing)} of {len(words)} classes: "
                        f"{', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
    check_disk(out, rows + test_rows, source.mean_row_bytes())
    counts, tests = split_rows(rows, class_weights(words)), split_rows(test_rows, np.ones(len(words)))
    train_dir = out / "train_simplified"
    train_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*train_dir.glob("*.csv.tmp"), *out.glob("*.csv.tmp")]:  # an interrupted run's
        stale.unlink()
    done, written, t0, cpu0 = [], 0, time.perf_counter(), time.process_time()
    bar = tqdm(total=rows + test_rows, desc="synthesize", unit="row", unit_scale=True, disable=not progress)
    with open(out / "test_simplified.csv.tmp", "wb") as test_f, open(out / "test_labels.csv.tmp", "wb") as lab_f:
        test_f.write(TEST_HEADER)
        lab_f.write(b"key_id,word\n")
        for c, word in enumerate(words):
            src, src_keys = source.drawings(word)
            if not len(src):
                raise UserError(f"{source.root}: class {word!r}: no usable drawing in the source")
            if (src_keys >= KEY_BASE).any():
                raise UserError(f"{source.root}: class {word!r}: source key_id {src_keys.max()} lies in the synthetic range "
                                f"(>= {KEY_BASE}); synthesize from real drawings, not a synthetic set")
            path = train_dir / f"{word}.csv.tmp"
            with open(path, "wb") as f:
                f.write(TRAIN_HEADER)
                for r in class_rows(src, int(counts[c]), int(counts[:c].sum()), seed, c, 0):
                    f.write(format_train_rows(r.drawings, r.key_id, r.countrycode, r.recognized,
                                              r.timestamp_us, word))
                    bar.update(len(r.key_id))
            done.append(path)
            first = rows + int(tests[:c].sum())
            for r in class_rows(src, int(tests[c]), first, seed, c, 1, cycle_at=int(counts[c])):
                test_f.write(format_test_rows(r.drawings, r.key_id, r.countrycode))
                lab_f.write("".join(f"{k},{word}\n" for k in r.key_id.tolist()).encode())
                bar.update(len(r.key_id))
    bar.close()
    done += [out / "test_simplified.csv.tmp", out / "test_labels.csv.tmp"]
    for path in done:
        written += path.stat().st_size
        os.replace(path, path.with_suffix(""))
    seconds = time.perf_counter() - t0
    return {"out": str(out), "rows": rows, "test_rows": test_rows, "classes": len(words), "seed": seed,
            "bytes": written, "seconds": round(seconds, 2), "cpu_seconds": round(time.process_time() - cpu0, 2),
            "rows_per_s": round((rows + test_rows) / max(seconds, 1e-9)),
            "mb_per_s": round(written / 1e6 / max(seconds, 1e-9), 1)}
