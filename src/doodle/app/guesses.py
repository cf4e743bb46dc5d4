"""The drawing page's logic, free of Streamlit so it can be tested and timed on its own.

A drawing from the page's pen component goes through what a stored raw drawing goes through: `pen.parse_pen`
(canvas pixels, each point's time in ms, checked) -> `strokes.simplify_raw` (Google's simplification, as
prepare does) ->
`render.raster.render_drawing` with the run's own spec for what the page shows, and
`predict.loaded_run.predict_drawings` on the store's flat form (`flat.Drawings.pack`) for the guesses. simplify_raw already puts points on
the integer 0..255 grid and keeps each kept point's time, so both are the same pixels, time channels
included (tests/app/test_page.py checks this against the store). Nothing here preprocesses on its own.
Probabilities are calibrated: each run's logits are divided by the temperature fitted on its validation
logits at the end of training (`LoadedRun.temperature`, from best.pt or an export's metrics; 1 for older runs).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from doodle import metrics
from doodle.drawing.flat import Drawings
from doodle.drawing.pen import parse_pen
from doodle.drawing.strokes import Drawing, DrawingError, Limits, simplify_raw
from doodle.errors import UserError
from doodle.predict.exported import SUFFIXES
from doodle.predict.loaded_run import LoadedRun, predict_drawings
from doodle.render.raster import ENCODINGS, RasterSpec, render_drawing
from doodle.runs.folder import RunDir, load_logits
from doodle.store.format import Store

log = logging.getLogger("page")
EMPTY = "Draw something: the guesses follow the pen."

# Caps that keep one rerun near the latency goal (p95 <= 50 ms): simplify_raw costs about 0.4 ms per stroke
# plus a numpy step per point it keeps, which grows with the ink. In the 0..255 box a real doodle has ~1,100
# px of ink (p99 ~4,300) and fewer than 40 strokes; a scribble of 12,000 px simplifies in ~25 ms on one
# core, one of 20,000 px in ~40. The canvas samples 8 points per curve segment, hence the generous point cap.
PAGE_LIMITS = Limits(max_strokes=100, max_points=30_000, max_chars=2_000_000)
MAX_INK = 12_000.0
TOO_LARGE = {"too_many_strokes", "too_many_points", "too_large", "too_much_ink"}


@dataclass
class Analysis:
    """One canvas state, judged: `status` is ok / empty / too_large / invalid, with what the page shows."""

    status: str
    message: str = ""
    raw: Drawing | None = None
    simplified: Drawing | None = None
    images: list[np.ndarray] = field(default_factory=list)  # model input per distinct spec, (H, W, C)
    specs: list[RasterSpec] = field(default_factory=list)
    probs: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    ms: dict = field(default_factory=dict)
    seq: int = -1  # the component's send number this analysis answers
    final: bool = True  # sent after a pen lift (not in the middle of a stroke)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return top_guesses(self.probs, self.classes, k) if self.probs is not None else []


def ink_length(d: Drawing) -> float:
    """Pen path length after scaling to the 0..255 box (what simplify_raw resamples at 1 px)."""
    xy = d.xy.astype(np.float64)
    extent = float((xy - xy.min(axis=0)).max()) if len(xy) else 0.0
    if extent == 0:
        return 0.0
    seg = np.hypot(*np.diff(xy, axis=0).T)
    seg[d.ends[:-1] - 1] = 0.0  # no ink between one stroke's end and the next one's start
    return float(seg.sum()) * 255.0 / extent


def simplify(raw: Drawing, max_ink: float = MAX_INK) -> Drawing:
    """Google's simplification of a canvas drawing, refused (too_much_ink) when it would be too slow."""
    ink = ink_length(raw)
    if ink > max_ink:
        raise DrawingError("too_much_ink", f"{ink:,.0f} px of ink > {max_ink:,.0f}")
    return simplify_raw(raw)


def model_image(simplified: Drawing, spec: RasterSpec) -> np.ndarray:
    """The network's input for a simplified drawing: THE rasteriser with the run's spec, (H, W, C) uint8."""
    return render_drawing(simplified, spec)


def ensemble_probs(runs: Sequence[LoadedRun], simplified: Drawing) -> np.ndarray:
    """Mean class probabilities over runs (each renders with its own spec); runs must share classes."""
    d = Drawings.pack([simplified])  # the store's flat form: uint8 box, int32 ms
    probs = [metrics.softmax(predict_drawings(lr, d)[0] / lr.temperature, np.float64) for lr in runs]
    return np.mean(probs, axis=0)


def top_guesses(probs: np.ndarray, classes: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
    """The k most probable classes of one drawing as (name, probability), best first (ties: lower index)."""
    return _named(metrics.top_k(np.asarray(probs)[None], k)[0], probs, classes)


def _named(idx: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> list[tuple[str, float]]:
    return [(classes[i], float(probs[i])) for i in idx]


def compatible(runs: Sequence[LoadedRun]) -> tuple[list[LoadedRun], list[LoadedRun]]:
    """Runs that can be averaged with the first (same class list), and the ones left out."""
    keep = [r for r in runs if r.classes == runs[0].classes]
    return keep, [r for r in runs if r.classes != runs[0].classes]


def not_sure(a: Analysis, threshold: float) -> bool:
    """The top calibrated probability is below the page's threshold (config key app.not_sure)."""
    return a.probs is not None and float(a.probs.max()) < threshold


def refused(e: DrawingError, seq: int) -> Analysis:
    """A drawing the page will not guess on: a message for the page, a line for the log."""
    log.warning("pen drawing refused: %s", e)
    if e.reason in TOO_LARGE:
        return Analysis("too_large", f"Drawing too large ({e.detail}): undo some strokes or clear the canvas.",
                        seq=seq)
    return Analysis("invalid", f"Cannot read this drawing ({str(e)[:160]}).", seq=seq)


def analyse(message, runs: Sequence[LoadedRun], limits: Limits = PAGE_LIMITS, max_ink: float = MAX_INK) -> Analysis:
    """A pen component message -> the model inputs and averaged calibrated guesses, with each step's ms."""
    t0 = time.perf_counter()
    if message is None:
        return Analysis("empty", EMPTY)
    seq = message.get("seq", -1) if isinstance(message, dict) else -1
    try:
        pen = parse_pen(message, limits)
        if pen.drawing is None:
            return Analysis("empty", EMPTY, seq=pen.seq, final=pen.final)
        t1 = time.perf_counter()
        simplified = simplify(pen.drawing, max_ink)
    except DrawingError as e:
        return refused(e, seq if isinstance(seq, int) else -1)
    t2 = time.perf_counter()
    specs = list(dict.fromkeys(lr.spec for lr in runs))
    images = [model_image(simplified, s) for s in specs]
    probs = ensemble_probs(runs, simplified) if runs else None
    t3 = time.perf_counter()
    ms = {"parse": 1e3 * (t1 - t0), "simplify": 1e3 * (t2 - t1), "model": 1e3 * (t3 - t2), "total": 1e3 * (t3 - t0)}
    return Analysis("ok", "", pen.drawing, simplified, images, specs, probs, list(runs[0].classes) if runs else [],
                    ms, pen.seq, pen.final)


def channels(image: np.ndarray, spec: RasterSpec, zoom: int = 1) -> list[tuple[str, np.ndarray]]:
    """Each channel of a model input as (feature name, grey H x W uint8), optionally enlarged."""
    names = ENCODINGS[spec.encoding]
    assert image.shape[-1] == len(names), (image.shape, spec.encoding)
    return [(n, enlarge(image[..., c], zoom)) for c, n in enumerate(names)]


def enlarge(image: np.ndarray, zoom: int) -> np.ndarray:
    """Nearest-neighbour enlargement (pixels stay sharp squares on screen)."""
    return image.repeat(zoom, axis=0).repeat(zoom, axis=1) if zoom > 1 else image


def display_image(image: np.ndarray) -> np.ndarray:
    """A model input as something to look at: RGB as is for 3 channels, otherwise the first channel."""
    return image if image.shape[-1] == 3 else image[..., 0]


# ---- runs on disk -------------------------------------------------------------------------------------

def find_runs(root: str | Path, max_depth: int = 3) -> list[Path]:
    """Finished fold folders (config.yaml + checkpoints/best.pt) and exported models (.onnx, .doodle) at or
    under `root`, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for depth in range(max_depth + 1):
        for cfg in root.glob("/".join(["*"] * depth + ["config.yaml"])):
            if RunDir(cfg.parent).best.is_file():
                found.append(cfg.parent)
        found += [f for s in SUFFIXES for f in root.glob("/".join(["*"] * depth + [f"*{s}"])) if f.is_file()]
    return sorted(set(found))


def run_label(path: Path, root: Path) -> str:
    """`r18_boost/fold0` for a run under root; the path itself otherwise."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
        return str(rel) if str(rel) != "." else Path(path).name
    except ValueError:
        return str(path)


# ---- review of validation mistakes ---------------------------------------------------------------------

@dataclass
class Mistake:
    key_id: int
    true: str
    class_acc: float
    guesses: list[tuple[str, float]]


def mistakes(lr: LoadedRun) -> list[Mistake]:
    """The run's validation drawings whose top guess is wrong, worst classes first (per-class accuracy)."""
    v = load_logits(lr.run.val_logits)
    if v["classes"] != lr.classes or v["target"] is None:
        raise UserError(f"{lr.run.val_logits}: classes or targets do not match the run's checkpoint")
    probs = metrics.softmax(v["logits"] / lr.temperature, np.float64)
    target = np.asarray(v["target"])
    pred = probs.argmax(axis=1)
    acc = metrics.per_class_accuracy(probs, target, len(lr.classes))
    wrong = np.flatnonzero(pred != target)
    # worst class first, then the most confident mistakes within it
    order = wrong[np.lexsort((-probs[wrong, pred[wrong]], acc[target[wrong]]))]
    guesses = metrics.top_k(probs[order], 3)
    return [Mistake(int(v["key_id"][i]), lr.classes[target[i]], float(acc[target[i]]),
                    _named(top, probs[i], lr.classes)) for i, top in zip(order, guesses, strict=True)]


class KeyIndex:
    """key_id -> the store's drawing. The `known` key_ids (the review's mistakes) are found together, in one pass
    over the store's key_id column (`Store.rows_of`), so memory grows with them, not with the store; any other
    key_id costs a pass of its own."""

    def __init__(self, store: Store, known: Sequence[int] = ()):
        self.store = store
        keys = np.asarray(known, np.int64).reshape(-1)
        self.rows: dict[int, int] = dict(zip(keys.tolist(), store.rows_of(keys).tolist(), strict=True))

    def drawing(self, key_id: int) -> Drawing:
        row = self.rows.get(int(key_id))
        if row is None:
            row = self.rows[int(key_id)] = int(self.store.rows_of([key_id])[0])
        if row < 0:
            raise KeyError(f"key_id {key_id} not in store {self.store.root}")
        return self.store.drawing(row)


def page_slice(n: int, page: int, per_page: int) -> tuple[slice, int]:
    """Items of one page (1-based) and the number of pages."""
    pages = max(1, math.ceil(n / per_page))
    page = min(max(page, 1), pages)
    return slice((page - 1) * per_page, min(page * per_page, n)), pages
