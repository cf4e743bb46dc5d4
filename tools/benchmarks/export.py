"""Batch-1 CPU latency of an exported model (image or sequence): torch fp32 vs ONNX fp32 vs ONNX int8, and file sizes.

    python tools/bench.py export [--run outputs/ref27/r18_boost/fold0 --store input/store27] [--quick]

With --run, that run is exported (its checks run too: parity, int8 agreement and MAP@3 on its validation
fold) and timed; without, an untrained ResNet18 at 64 px with 340 classes (the same cost), calibrated on
the bundled sample prepared into a temporary store. One thread everywhere (`one_core`): the figures are per
core. Each latency is the median of single-drawing forwards on real drawings, after a warm-up; the
rendering is not included (the same for all three).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from benchmarks._common import ROOT, one_core, prepared_store
from doodle import resources
from doodle.config import Config
from doodle.export import checks
from doodle.export.bounds import Bounds
from doodle.export.make import make_onnx
from doodle.models.factory import build_model
from doodle.predict.exported import INPUT_NAMES, fold_split, ort_session
from doodle.predict.loaded_run import LoadedRun, load_run
from doodle.runs.folder import RunDir
from doodle.train.data import BatchDataset
from doodle.train.engine import forward, resolve_precision, to_input


def untrained_run(store: Path, size: int = 64) -> LoadedRun:
    cfg = Config()
    cfg.data.img_size, cfg.data.store = size, str(store)
    classes = resources.kaggle_classes()
    cpu = torch.device("cpu")
    model = build_model(cfg, len(classes), 3).eval()
    return LoadedRun(RunDir(Path("untrained/fold0")), cfg, {"fold": 0}, classes, model, cpu,
                     resolve_precision("off", cpu), None)


def latency_ms(fn, inputs: list, repeats: int) -> float:
    """Median ms of fn(x) over `repeats` passes of the inputs, after one warm-up pass."""
    for x in inputs[:5]:
        fn(x)
    times = []
    for _ in range(repeats):
        for x in inputs:
            t0 = time.perf_counter()
            fn(x)
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def run(args) -> Iterator[dict]:
    one_core()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            lr = load_run(args.run, "cpu")
            store, split = fold_split(lr.cfg, lr.run.fold, getattr(args, "store", None))
            bounds = Bounds()
        else:
            st, _, _ = prepared_store([ROOT / "input/sample/train_simplified"], Path(tmp) / "store")
            lr = untrained_run(st.root)
            store, split = fold_split(lr.cfg, 0)
            bounds = Bounds(check_rows=128, calib_rows=128, min_top1=0.0, max_map3_drop=1.0)
        fp32, report32 = make_onnx(lr, store, split, False, bounds, "fp32")
        int8, report8 = make_onnx(lr, store, split, True, bounds, "int8")
        ds = BatchDataset(store, split, lr.cfg, lr.input_kind)
        rows = checks.sample_rows(split.val_idx, 20 if args.quick else 50)
        inputs = [to_input(ds[[int(r)]], torch.device("cpu"), False) for r in rows]
        names = INPUT_NAMES[lr.input_kind]
        sessions = {k: ort_session(d, k, threads=1) for k, d in (("fp32", fp32), ("int8", int8))}
        repeats = 2 if args.quick else max(args.repeats, 4)
        with torch.no_grad():
            ms = {"torch_fp32": latency_ms(lambda x: forward(lr.model, x), inputs, repeats)}
        for k, s in sessions.items():
            ms[f"onnx_{k}"] = latency_ms(
                lambda x, s=s: s.run(None, {n: v.numpy() for n, v in zip(names, x.values(), strict=True)}),
                inputs, repeats)
    shape = f"{lr.spec.size}px {lr.spec.encoding}" if lr.input_kind == "image" else f"{lr.cfg.seq.max_points} points"
    yield {"bench": "export", "model": f"{lr.cfg.model.name} {shape}, "
           f"{len(lr.classes)} classes" + ("" if args.run else " (untrained)"), "run": str(args.run or ""),
           "batch": 1, "threads": 1, **{f"ms_{k}": round(v, 3) for k, v in ms.items()},
           "speedup_onnx_fp32": round(ms["torch_fp32"] / ms["onnx_fp32"], 2),
           "speedup_onnx_int8": round(ms["torch_fp32"] / ms["onnx_int8"], 2),
           "bytes_onnx_fp32": len(fp32), "bytes_onnx_int8": len(int8),
           "int8_size_ratio": round(len(int8) / len(fp32), 3),
           "fp32_max_abs_diff": report32["fp32_vs_torch"]["max_abs_diff"],
           "fp32_top3_identical": report32["fp32_vs_torch"]["top3_identical"],
           **{f"int8_{k}": v for k, v in report8["int8_vs_fp32"].items()
              if k in ("top1_agreement", "fp32_val/map3", "int8_val/map3", "drawings", "float_nodes")},
           "load_avg_1min": round(os.getloadavg()[0], 2)}

