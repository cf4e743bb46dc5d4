"""Build an exported file from a loaded run: ONNX (fp32 or int8) or a package, checked, as bytes + a report.

The caller writes the bytes (atomically); nothing is written here, so a failed check leaves no file.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from doodle.export import checks
from doodle.export.bounds import Bounds
from doodle.export.onnx_export import export_metadata, onnx_bytes, quantize_int8, with_metadata
from doodle.predict.exported import load_package
from doodle.predict.loaded_run import LoadedRun
from doodle.predict.package import Package, package_bytes, read_package
from doodle.store.format import Store
from doodle.train.data import Split
from doodle.train.records import git_commit

log = logging.getLogger("export")


def run_metrics(lr: LoadedRun) -> dict:
    """The run's summary.json (empty when it has none), plus its per-class validation accuracy."""
    metrics = json.loads(lr.run.summary.read_text()) if lr.run.summary.is_file() else {}
    if lr.per_class_acc is not None:
        metrics["per_class_acc"] = [round(float(a), 6) for a in np.nan_to_num(lr.per_class_acc, nan=-1.0)]
    return metrics


def make_onnx(lr: LoadedRun, store: Store, split: Split, int8: bool, bounds: Bounds, name: str) -> tuple[bytes, dict]:
    """ONNX bytes with metadata, after fp32 parity (and the int8 checks); ExportError when a check fails."""
    t0 = time.perf_counter()
    fp32 = onnx_bytes(lr)
    rows = checks.sample_rows(split.val_idx, bounds.check_rows)
    fp32_lr = checks.with_onnx(lr, fp32, name)
    report = {"fp32_vs_torch": checks.check_parity(lr, fp32_lr, store, split, rows, bounds.max_diff, name)}
    log.info("fp32 ONNX vs torch on %d drawings: max abs diff %.3g, top-3 identical %.2f%%", len(rows),
             report["fp32_vs_torch"]["max_abs_diff"], 100 * report["fp32_vs_torch"]["top3_identical"])
    data, precision = fp32, "fp32"
    if int8:
        feeds = checks.calibration_feeds(lr, store, split, bounds.calib_rows)
        data, kept, weight_only = quantize_int8(fp32, feeds)
        report["int8_vs_fp32"] = checks.check_int8(fp32_lr, checks.with_onnx(lr, data, name), store, split,
                                                   bounds.min_top1, bounds.max_map3_drop, name)
        report["int8_vs_fp32"] |= {"calibration_drawings": sum(len(next(iter(f.values()))) for f in feeds),
                                   "float_nodes": kept, "int8_weight_only_nodes": weight_only,
                                   "fp32_bytes": len(fp32), "int8_bytes": len(data)}
        precision = "int8"
        r = report["int8_vs_fp32"]
        log.info("int8 vs fp32 on %d validation drawings: top-1 agreement %.2f%%, MAP@3 %.4f vs %.4f; %d -> %d bytes",
                 r["drawings"], 100 * r["top1_agreement"], r["int8_val/map3"], r["fp32_val/map3"], len(fp32), len(data))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    meta = export_metadata(lr, precision, run_metrics(lr), report, git_commit())
    return with_metadata(data, meta), report


def make_package(lr: LoadedRun, store: Store, split: Split, bounds: Bounds, name: str) -> tuple[bytes, dict]:
    """Package bytes, after reading them back and comparing the package's logits with the run's."""
    import tempfile
    from pathlib import Path

    pkg = Package(lr.cfg.to_dict(), dict(lr.facts, fold=lr.run.fold), lr.classes, run_metrics(lr), {},
                  lr.model.state_dict())
    rows = checks.sample_rows(split.val_idx, bounds.check_rows)
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "trial.doodle"
        trial.write_bytes(package_bytes(pkg))
        read_package(trial)  # the format's own checks (entries, checksums, JSON) on what was written
        report = {"package_vs_run": checks.check_parity(lr, load_package(trial), store, split, rows, 0.0, name)}
    log.info("package vs run on %d drawings: max abs diff %.3g", len(rows), report["package_vs_run"]["max_abs_diff"])
    pkg.checks = report
    return package_bytes(pkg), report
