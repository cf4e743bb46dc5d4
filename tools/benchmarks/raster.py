"""Rasteriser speed on one core against the naive cv2.line-per-segment reference, same drawings, same run.

Cases (every row says what each side includes):

* `kaggle_json`: the Kaggle `drawing` string -> image. naive: json.loads + cv2.line per segment; ours:
  json.loads + `rasterize` (order3), one call per drawing.
* `kaggle_text`: the same string straight into `rasterize` (its compiled JSON-text reader; no Python number
  per coordinate). naive as above.
* `kaggle_parsed`: ours from strokes already parsed (json.loads outside the timing); naive as above (it
  only takes the string), so this ratio flatters ours by the json.loads cost.
* `raw_time3_fit`: Google raw timed strokes `[[xs], [ys], [ts]]` in canvas pixels, parsed outside the timing
  on both sides. naive: `naive_rasterize_raw` (bbox fit, time colour, cv2.line per segment); ours:
  `rasterize(strokes, encoding time3, fit=True)`: the same bbox fit into the 0..255 box (vectorised, in the
  compiled flattening pass), real time as a channel, one call per drawing.
* `raw_rt3_fit`: as above with the rt3 encoding (time, speed, pause).
* `raw_time3_text`: both from the ndjson `drawing` field's JSON text. naive: json.loads + `naive_rasterize_raw`;
  ours: `rasterize(text, encoding time3, fit=True)`.
* `raw_time3_store`: ours renders the same raw drawings as the store holds them (prepared outside the
  timing: Google's simplification, times kept per point), 256 per `render_batch` call from `Store.take`.

A last row checks on the real drawings that rendering twice gives identical pixels, that a drawing
flipped twice renders exactly as the original, and that a drawing's JSON text renders exactly as its lists.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks._common import import_naive, one_core, prepared_store
from doodle.drawing.flat import Drawings
from doodle.drawing.json_reader import parse_drawing_text
from doodle.render.augment import flip_x
from doodle.render.raster import RasterSpec, rasterize, render_batch
from doodle.store.format import Store


def interleaved_times(fns: list[Callable[[slice], object]], n: int, repeats: int, chunk: int = 256) -> list[float]:
    """Median over repeats of each function's total time on items 0..n, chunk by chunk.

    The functions take turns on every chunk (in alternating order), so a burst of load from other processes
    on this shared machine lands on all of them alike instead of on whichever ran at that moment.
    """
    totals: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        spent = [0.0] * len(fns)
        for c, start in enumerate(range(0, n, chunk)):
            part = slice(start, min(start + chunk, n))
            for k in (range(len(fns)) if (c + r) % 2 == 0 else reversed(range(len(fns)))):
                t0 = time.perf_counter()
                fns[k](part)
                spent[k] += time.perf_counter() - t0
        for k, t in enumerate(spent):
            totals[k].append(t)
    return [statistics.median(t) for t in totals]


def row(case: str, size: int, n: int, t_ours: float, t_naive: float, goal: float | None, notes: str,
        repeats: int) -> dict:
    return {"bench": "raster", "case": case, "size": size, "drawings": n, "ours_per_s": round(n / t_ours),
            "naive_per_s": round(n / t_naive), "ratio": round(t_naive / t_ours, 2), "goal": goal,
            "repeats": repeats, "notes": notes}


def read_raw(root: Path, limit: int) -> tuple[list[Path], list[list]]:
    """Whole ndjson files in sorted order until at least `limit` drawings: (files, parsed strokes)."""
    files, drawings = [], []
    for path in sorted(glob.glob(os.path.join(root, "*.ndjson"))):
        files.append(Path(path))
        with open(path) as f:
            drawings += [json.loads(line)["drawing"] for line in f if line.strip()]
        if len(drawings) >= limit:
            break
    return files, drawings


def kaggle_cases(naive, root: Path, n: int, repeats: int) -> Iterator[dict]:
    texts = naive.read_drawings(str(root), n)
    parsed = [json.loads(d) for d in texts]
    for size in (64, 128, 256):
        rasterize(parsed[0], size)  # compile / warm outside the timing

        def theirs(part, size=size):
            for d in texts[part]:
                naive.naive_rasterize(d, size)

        def ours_json(part, size=size):
            for d in texts[part]:
                rasterize(json.loads(d), size)

        def ours_text(part, size=size):
            for d in texts[part]:
                rasterize(d, size)

        def ours_parsed(part, size=size):
            for d in parsed[part]:
                rasterize(d, size)

        t_json, t_text, t_parsed, t_naive = interleaved_times([ours_json, ours_text, ours_parsed, theirs],
                                                              len(texts), repeats)
        goal = 2.0 if size in (64, 128) else None
        yield row("kaggle_json", size, len(texts), t_json, t_naive, goal,
                  "both: json.loads + draw (order3, line_width 2), one call per drawing", repeats)
        yield row("kaggle_text", size, len(texts), t_text, t_naive, goal,
                  "both from the drawing string; ours: rasterize(text), compiled JSON reader", repeats)
        yield row("kaggle_parsed", size, len(texts), t_parsed, t_naive, None,
                  "ours from pre-parsed lists (no json.loads); naive includes json.loads", repeats)


def raw_cases(naive, root: Path, n: int, repeats: int) -> Iterator[dict]:
    files, raws = read_raw(root, n)
    n = len(raws)
    texts = [json.dumps(d, separators=(",", ":")) for d in raws]  # the field as the ndjson line holds it
    with tempfile.TemporaryDirectory(prefix="bench_raster_") as tmp:
        store, summary, _ = prepared_store(files, Path(tmp) / "store")
        if not summary["kept"] == n == len(store):
            raise RuntimeError(f"store kept {summary['kept']} of {n} raw drawings")
        for size in (64, 128):
            fns = [fit_fn(raws, size, "time3"), fit_fn(raws, size, "rt3"), store_fn(store, size),
                   naive_raw_fn(naive, raws, size), fit_fn(texts, size, "time3"), naive_text_fn(naive, texts, size)]
            t3, trt3, tstore, t_naive, t_text, t_naive_text = interleaved_times(fns, n, repeats)
            fit_notes = "both from parsed raw strokes (canvas px): bbox fit + time channel + draw, one call each"
            yield row("raw_time3_fit", size, n, t3, t_naive, 10.0, fit_notes, repeats)
            yield row("raw_rt3_fit", size, n, trt3, t_naive, 10.0, fit_notes + "; ours rt3", repeats)
            yield row("raw_time3_store", size, n, tstore, t_naive, 10.0,
                      "ours: Store.take + render_batch of the prepared (simplified, timed) raw drawings, "
                      "256 per call; prepare outside the timing; naive from parsed raw strokes", repeats)
            yield row("raw_time3_text", size, n, t_text, t_naive_text, 10.0,
                      "both from the ndjson drawing field's JSON text: naive json.loads + naive_rasterize_raw, "
                      "ours rasterize(text, fit=True)", repeats)


def naive_raw_fn(naive, raws: list, size: int) -> Callable[[slice], None]:
    def theirs(part):
        for d in raws[part]:
            naive.naive_rasterize_raw(d, size)
    return theirs


def naive_text_fn(naive, texts: list, size: int) -> Callable[[slice], None]:
    def theirs(part):
        for d in texts[part]:
            naive.naive_rasterize_raw(json.loads(d), size)
    return theirs


def fit_fn(raws: list, size: int, encoding: str) -> Callable[[slice], None]:
    def ours(part):
        for d in raws[part]:
            rasterize(d, size, encoding, fit=True)
    rasterize(raws[0], size, encoding, fit=True)  # compile outside the timing
    return ours


def store_fn(store: Store, size: int) -> Callable[[slice], None]:
    spec = RasterSpec(size=size, encoding="time3")

    def ours(part):
        render_batch(store.take(np.arange(part.start, part.stop)), spec)
    ours(slice(0, 1))
    return ours


def checks(naive, root: Path, raw_root: Path, n: int) -> dict:
    """Rendering twice gives identical pixels; flipping twice renders exactly as the original; a drawing's
    JSON text renders exactly as its parsed lists (Kaggle drawings, and raw timed ones with time3/rt3)."""
    strings = naive.read_drawings(str(root), n)
    texts = [json.loads(t) for t in strings]
    same = all(np.array_equal(rasterize(d, 64), rasterize(d, 64)) for d in texts)
    _, raws = read_raw(raw_root, n)
    values = off = worst = 0
    for d in raws:  # reading raw text: exact up to 15 digits, longer numbers within one unit in the last place
        got = parse_drawing_text(json.dumps(d))[0]
        want = np.array([v for s in d for a in s for v in a], np.float64)
        ulps = np.abs(got.view(np.int64) - want.view(np.int64))
        values, off, worst = values + len(want), off + int((ulps > 0).sum()), max(worst, int(ulps.max(initial=0)))
    text_ok = all(np.array_equal(rasterize(s, 64), rasterize(d, 64)) for s, d in zip(strings, texts, strict=True)) and all(
        np.array_equal(rasterize(json.dumps(d), size, enc, fit=True), rasterize(d, size, enc, fit=True))
        for d in raws for size, enc in ((64, "time3"), (128, "rt3")))
    xy, slen, nst = [], [], []
    for d in texts:
        xy += [np.stack([np.asarray(s[0], np.float32), np.asarray(s[1], np.float32)], 1) for s in d]
        slen += [len(s[0]) for s in d]
        nst.append(len(d))
    d = Drawings(np.concatenate(xy), np.full(sum(slen), -1, np.int32), np.array(slen, np.int32),
                 np.array(nst, np.int32))
    spec = RasterSpec(size=64)
    flip_ok = np.array_equal(render_batch(flip_x(flip_x(d)), spec), render_batch(d, spec))
    return {"bench": "raster", "case": "checks", "size": 64, "drawings": len(texts), "raw_drawings": len(raws),
            "rendered_twice_identical": bool(same), "flipped_twice_identical": bool(flip_ok),
            "text_renders_as_lists": bool(text_ok), "raw_text_values": values, "raw_text_values_off_1ulp": off,
            "raw_text_max_ulp": worst}


def run(args) -> Iterator[dict]:
    one_core()
    naive = import_naive(args.naive)
    data = Path(args.data)
    repeats = 2 if args.quick else args.repeats
    yield from kaggle_cases(naive, data / "train_simplified", 500 if args.quick else 3000, repeats)
    yield from raw_cases(naive, data / "raw", 300 if args.quick else 2000, repeats)
    yield checks(naive, data / "train_simplified", data / "raw", 200 if args.quick else 1000)
