"""The drawing page's server time from a stroke arriving to the guesses being ready, on the CPU.

Real Google raw drawings (`--data`/raw/*.ndjson, else the bundled input/sample/raw) are scaled into the
pen's 400 px square and written as the pen component sends them (every point with its own time, from the
drawing's own clock). Every stroke of every drawing is one event: `page.analyse` on the drawing so far =
parse_pen + simplify_raw + render + ResNet18 forward at 64 px (order3, untrained weights, 340 classes: the
cost is the same; the temperature is read from the run's summary), with 2 torch threads and with 1 (the
page's default). Goal: p95 <= 50 ms. The machine's load is given with each row: the figures are only
as quiet as the cores were.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from doodle import resources
from doodle.app import guesses as page
from doodle.config import Config
from doodle.drawing.pen import pen_message
from doodle.models.factory import build_model
from doodle.predict.loaded_run import LoadedRun
from doodle.runs.folder import RunDir
from doodle.train.engine import resolve_precision

CANVAS = 400.0
MARGIN = 20.0


def to_pen(strokes: list) -> list:
    """Raw strokes (any pixel scale) -> the same strokes with times inside the pen's square, 0.1 px steps."""
    xy = [np.stack([np.asarray(s[0], float), np.asarray(s[1], float)], axis=1) for s in strokes]
    allp = np.concatenate(xy)
    lo, extent = allp.min(axis=0), max(float(np.ptp(allp, axis=0).max()), 1.0)
    scale = (CANVAS - 2 * MARGIN) / extent
    out = []
    for p, s in zip(xy, strokes, strict=True):
        q = np.round((p - lo) * scale + MARGIN, 1)
        out.append([q[:, 0].tolist(), q[:, 1].tolist(), list(s[2])])
    return out


def drawings(data: Path, n: int) -> list[list]:
    """Up to `n` raw drawings, spread over the classes (one per file in turn)."""
    folder = data / "raw" if (data / "raw").is_dir() else Path(__file__).resolve().parents[2] / "input/sample/raw"
    files = sorted(folder.glob("*.ndjson"))
    per_file = max(1, -(-n // max(len(files), 1)))
    out = []
    for f in files:
        with open(f) as fh:
            out += [json.loads(line)["drawing"] for _, line in zip(range(per_file), fh, strict=False)]
    return out[:n]


def untrained_run(size: int = 64) -> LoadedRun:
    cfg = Config()
    cfg.data.img_size = size
    classes = resources.kaggle_classes()
    model = build_model(cfg, len(classes), 3).eval()
    cpu = torch.device("cpu")
    return LoadedRun(RunDir(Path(".")), cfg, {}, classes, model, cpu, resolve_precision("off", cpu), None)


def run(args) -> Iterator[dict]:
    lr = untrained_run()
    events = []
    raw = drawings(args.data, 40 if args.quick else 150)
    for strokes in raw:
        pen = to_pen(strokes)
        events += [pen_message(pen[: k + 1], seq=len(events) + 1) for k in range(len(strokes))]
    # 2 threads: the whole machine; 1: the page's default (robust when other work shares the cores)
    for threads in (2, 1):
        torch.set_num_threads(threads)
        yield timed(events, lr, len(raw), threads)


def timed(events: list, lr: LoadedRun, n_drawings: int, threads: int) -> dict:
    for message in events[:10]:  # warm-up: numba load, first torch calls
        page.analyse(message, [lr])
    total, parts, statuses, points = [], [], [], []
    for message in events:
        t0 = time.perf_counter()
        a = page.analyse(message, [lr])
        total.append(1e3 * (time.perf_counter() - t0))
        statuses.append(a.status)
        parts.append([a.ms.get(k, 0.0) for k in ("parse", "simplify", "model")])
        points.append(a.raw.n_points if a.raw is not None else 0)
    total, parts = np.array(total), np.array(parts)
    return {"bench": "app", "events": len(events), "drawings": n_drawings, "torch_threads": threads,
           "ok": statuses.count("ok"), "model": "resnet18 64px order3, 340 classes", "input": "pen, timed",
           "pen_points_p50": int(np.median(points)), "pen_points_max": int(max(points)),
           "ms_p50": round(float(np.percentile(total, 50)), 2), "ms_p95": round(float(np.percentile(total, 95)), 2),
           "ms_max": round(float(total.max()), 2),
           "ms_p50_parse_simplify_model": [round(float(v), 2) for v in np.median(parts, axis=0)],
           "load_avg_1min": round(os.getloadavg()[0], 2), "goal_p95_ms": 50, "meets_goal": bool(np.percentile(total, 95) <= 50)}
