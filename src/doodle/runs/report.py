"""Finished runs read back and drawn: the library behind tools/report.py and tools/compare.py.

A *run* is outputs/<run>/ with fold<k>/ subfolders, or one fold folder on its own. Each fold needs its
config.yaml and metrics.csv; summary.json is used when present (a killed run has none: its numbers are
then taken from metrics.csv). The per-class and confusion views use the folds' val_logits.npz, joined
into one out-of-fold (OOF) set. The figures drawn from them are `figures`'.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from doodle.config import Config, load_resolved
from doodle.errors import DoodleError
from doodle.metrics import accuracy, map_at_k
from doodle.runs.folder import RunDir, find_folds, join_val_logits, load_logits, run_summary
from doodle.store.format import Store

log = logging.getLogger("report")


class RunError(DoodleError, ValueError):
    """A folder that is not a run, or a run that lacks what was asked of it."""


@dataclass
class Fold:
    dir: RunDir
    cfg: Config
    facts: dict
    metrics: pd.DataFrame
    summary: dict

    @property
    def k(self) -> int:
        return int(self.facts.get("fold", self.summary.get("fold", 0)))


@dataclass
class Run:
    path: Path
    name: str
    folds: list[Fold]

    @property
    def cfg(self) -> Config:
        return self.folds[0].cfg


def load_fold(path: Path) -> Fold | None:
    """One fold folder; None (with a warning) when it has not finished an epoch yet."""
    rd = RunDir(Path(path))
    try:
        cfg, facts = load_resolved(rd.config)
    except ValueError as e:
        raise RunError(f"{rd.config}: {e}") from None
    if not rd.metrics.is_file() or rd.metrics.stat().st_size == 0:
        log.warning("%s: no metrics.csv yet (no finished epoch); left out", rd.root)
        return None
    metrics = pd.read_csv(rd.metrics)
    missing = {"epoch", "train/loss", "val/loss", "val/map3", "val/acc1"} - set(metrics.columns)
    if missing or metrics.empty:
        raise RunError(f"{rd.metrics}: no epoch rows or missing columns {sorted(missing)}")
    if rd.summary.is_file():
        summary = json.loads(rd.summary.read_text())
    else:
        log.warning("%s: no summary.json (killed or still running?); numbers taken from metrics.csv", rd.root)
        summary = run_summary(metrics.to_dict("records"), float(metrics["time/seconds"].iloc[-1]),
                              fold=facts.get("fold", 0), device=facts.get("device", "?"),
                              world_size=facts.get("world_size", 1), partial=True)
    return Fold(rd, cfg, facts, metrics, summary)


def load_run_records(path: Path) -> Run:
    """The records (config, metrics.csv, summary.json) of a run folder or a single fold folder, for every fold
    that finished at least one epoch. Models are loaded by `doodle.predict.loaded_run.load_run`."""
    path = Path(path)
    dirs = [f.root for f in find_folds(path)]
    folds = [f for d in dirs if (f := load_fold(d)) is not None]
    if not folds:
        raise RunError(f"{path}: no fold has finished an epoch (no metrics.csv)")
    name = path.name if dirs[0] != path else f"{path.parent.name}/{path.name}"
    return Run(path, name, sorted(folds, key=lambda f: f.k))


def oof_logits(run: Run) -> dict | None:
    """The folds' val logits joined into one out-of-fold set (key_ids disjoint, one class order)."""
    parts = []
    for f in run.folds:
        if not f.dir.val_logits.is_file():
            log.warning("%s: no val_logits.npz; left out of the out-of-fold views", f.dir.root)
            continue
        val = load_logits(f.dir.val_logits)
        parts.append({**val, "name": str(f.dir.val_logits), "fold": np.full(len(val["key_id"]), f.k)})
    if not parts:
        return None
    out = join_val_logits(parts, run.path)
    return {**out, "pred": out["logits"].argmax(axis=1)}


# ---------------------------------------------------------------- tables


def confusion_pairs(target: np.ndarray, pred: np.ndarray, classes: list[str], n: int = 15) -> list[dict]:
    """The n most frequent (true, predicted) mistakes: count and share of the true class's drawings."""
    totals = np.bincount(target, minlength=len(classes))
    wrong = Counter(zip(target[target != pred].tolist(), pred[target != pred].tolist(), strict=True))
    pairs = sorted(wrong.items(), key=lambda kv: (-kv[1], classes[kv[0][0]], classes[kv[0][1]]))[:n]
    return [{"true": classes[t], "pred": classes[p], "t": t, "p": p, "count": c, "share": c / totals[t]}
            for (t, p), c in pairs]


def _mean(values) -> float:
    return float(np.mean([float(v) for v in values]))


def run_row(run: Run, oof: dict | None) -> dict:
    """One line of the comparison: quality (mean over folds, OOF), cost per fold, and the settings."""
    from doodle.models.factory import input_kind_of  # torch + timm: only when a table is made

    s = [f.summary for f in run.folds]
    cfg = run.cfg
    devices = sorted({f"{x.get('device', '?')}" + (f" x{x['world_size']}" if x.get("world_size", 1) > 1 else "")
                      for x in s})
    row = {"run": run.name, "path": str(run.path), "folds": [f.k for f in run.folds],
           "acc1": _mean(x["val/acc1"] for x in s), "map3": _mean(x["val/map3"] for x in s),
           "oof_map3": None, "oof_acc1": None, "epochs": _mean(x["epochs_run"] for x in s),
           "images_seen": _mean(x["images_seen"] for x in s),
           "wall_minutes": _mean(x["wall_seconds"] for x in s) / 60,
           "images_per_second": _mean(x["train_images_per_second"] for x in s), "device": ", ".join(devices),
           "encoding": (f"sequence, {cfg.seq.max_points} points" if input_kind_of(cfg) == "sequence"
                        else f"{cfg.raster.encoding} {cfg.data.img_size}px"),
           "boost": f"on ({cfg.train.boost_floor:g})" if cfg.train.boost else "off", "model": cfg.model.name,
           "partial": any(x.get("partial") for x in s)}
    if oof is not None and len(run.folds) > 1:
        row["oof_map3"] = map_at_k(oof["logits"], oof["target"], 3)
        row["oof_acc1"] = accuracy(oof["logits"], oof["target"])
    return row


def markdown_table(header: list[str], rows: list[list], align: str = "") -> str:
    """A GitHub markdown table; `align` is one letter per column (l/r), default left for the first."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = [header, rule, *[[str(v) for v in r] for r in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def quota_table(run: Run) -> pd.DataFrame | None:
    """Drawings per class per epoch (rows: epochs, columns: classes), averaged over folds' common epochs."""
    tables = [pd.read_csv(f.dir.quotas).set_index("epoch") for f in run.folds if f.dir.quotas.is_file()]
    if not tables:
        return None
    common = sorted(set.intersection(*(set(t.index) for t in tables)))
    return sum(t.loc[common] for t in tables) / len(tables)


# ---------------------------------------------------------------- drawings


class Drawings:
    """Renders a run's drawings by key_id from its store, with the run's own raster spec."""

    def __init__(self, cfg: Config, store_path: str | Path | None = None):
        # doodle.train.data pulls in torch; only reports that draw need it, so it is imported here.
        from doodle.render.raster import raster_spec

        self.spec = raster_spec(cfg)
        self.store = Store(store_path or cfg.data.store)
        self.rows: dict[int, int] = {}

    def index(self, key_ids: np.ndarray) -> None:
        """Look up the store rows of these key_ids once (one pass over the store's key_id column)."""
        keys = np.asarray(key_ids, np.int64)
        rows = self.store.rows_of(keys)
        self.rows.update(zip(keys[rows >= 0].tolist(), rows[rows >= 0].tolist(), strict=True))

    def render(self, key_id: int) -> np.ndarray | None:
        """(H, W, C) uint8 as the model sees it at validation (no augmentation); None if not in the store."""
        from doodle.render.raster import render_drawing

        row = self.rows.get(int(key_id))
        return None if row is None else render_drawing(self.store.drawing(row), self.spec)
