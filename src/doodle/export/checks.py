"""What an export proves before it is written: the exported model's logits against the run's own, on real
drawings of the run's store (its validation fold), and for int8 the agreement and MAP@3 next to fp32's.

Every check returns a dict (it goes into the file's metadata / checks.json) and raises ExportError when a
bound is broken, so a file that fails is never written.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from doodle.metrics import summarize, top_k
from doodle.predict.exported import INPUT_NAMES, OrtModule, ort_session, store_logits
from doodle.predict.loaded_run import LoadedRun
from doodle.predict.package import ExportError
from doodle.store.format import Store
from doodle.train.data import BatchDataset, Split
from doodle.train.engine import to_input


def sample_rows(idx: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """At most n of the store rows `idx`, chosen at random (fixed seed) over every class, sorted."""
    idx = np.asarray(idx)
    if n <= 0 or n >= len(idx):
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))


def calibration_feeds(lr: LoadedRun, store: Store, split: Split, n: int, batch: int = 32) -> list[dict]:
    """onnxruntime feeds of n training drawings (not augmented: rendered as prediction renders them)."""
    ds = BatchDataset(store, split, lr.cfg, lr.input_kind)
    rows = sample_rows(split.train_idx, n, seed=1)
    feeds = []
    for i in range(0, len(rows), batch):
        inputs = to_input(ds[rows[i : i + batch].tolist()], torch.device("cpu"), channels_last=False)
        feeds.append({name: x.numpy() for name, x in zip(INPUT_NAMES[lr.input_kind], inputs.values(), strict=True)})
    return feeds


def with_onnx(lr: LoadedRun, data: bytes, name: str) -> LoadedRun:
    """The run with its network replaced by the ONNX model `data` (onnxruntime, CPU)."""
    return dataclasses.replace(lr, model=OrtModule(ort_session(data, name), INPUT_NAMES[lr.input_kind]),
                               channels_last=False)  # onnxruntime takes NCHW arrays


def agreement(ref: np.ndarray, other: np.ndarray) -> dict:
    """Max abs logit difference, top-1 agreement and identical top-3 (same classes, same order)."""
    return {"drawings": int(len(ref)), "max_abs_diff": float(np.abs(ref - other).max()) if len(ref) else 0.0,
            "top1_agreement": float((ref.argmax(1) == other.argmax(1)).mean()),
            "top3_identical": float((top_k(ref, 3) == top_k(other, 3)).all(1).mean())}


def check_parity(ref: LoadedRun, other: LoadedRun, store: Store, split: Split, rows: np.ndarray,
                 max_diff: float, what: str) -> dict:
    """`other`'s logits against `ref`'s on the drawings `rows` (no TTA); ExportError above `max_diff`."""
    out = agreement(store_logits(ref, store, split, rows), store_logits(other, store, split, rows))
    if not out["max_abs_diff"] <= max_diff:
        raise ExportError(f"{what}: max abs logit difference {out['max_abs_diff']:.3g} against the run on "
                          f"{out['drawings']} validation drawings (limit {max_diff:g}); not written")
    return {**out, "limit": max_diff}


def check_int8(fp32: LoadedRun, int8: LoadedRun, store: Store, split: Split, min_top1: float,
               max_map3_drop: float, what: str) -> dict:
    """int8 vs fp32 ONNX on the whole validation fold (with the run's TTA): agreement and both MAP@3."""
    rows, tta = split.val_idx, fp32.cfg.val.tta
    target = split.targets(store, rows)
    a, b = (store_logits(m, store, split, rows, tta) for m in (fp32, int8))
    out = {**agreement(a, b), "tta": tta, **{f"fp32_{k}": v for k, v in summarize(a, target).items()},
           **{f"int8_{k}": v for k, v in summarize(b, target).items()}}
    out["map3_drop"] = out["fp32_val/map3"] - out["int8_val/map3"]
    out |= {"min_top1_agreement": min_top1, "max_map3_drop": max_map3_drop}
    if out["top1_agreement"] < min_top1 or out["map3_drop"] > max_map3_drop:
        raise ExportError(f"{what}: int8 agrees with fp32 on {out['top1_agreement']:.2%} of top-1 (need "
                          f"{min_top1:.0%}) and loses {100 * out['map3_drop']:.2f} MAP@3 points (limit "
                          f"{100 * max_map3_drop:.2f}) on the validation fold; not written")
    return out
