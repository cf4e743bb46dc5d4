"""Every path under outputs/<run>/fold<k>/, and checkpoints written atomically and loaded safely.

    outputs/<run>/fold<k>/
        config.yaml           resolved config + run facts (fold, seed, commit, argv)
        train.log  metrics.csv  summary.json  quotas.csv
        tb/                   TensorBoard
        checkpoints/last.pt   checkpoints/best.pt   checkpoints/swa.pt (train.swa_last: the averaged weights)
        val_logits.npz        logits (float16), key_id, target, classes: out-of-fold predictions
        test_logits.npz       logits (float16), key_id, classes
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from doodle.errors import DoodleError, UserError, nearest_path


class CheckpointError(DoodleError, ValueError):
    """A checkpoint that cannot be used (corrupt, foreign, unsafe, or for other classes)."""


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def make(cls, out_root: str | Path, name: str, fold: int) -> RunDir:
        return cls(Path(out_root) / name / f"fold{fold}")

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def quotas(self) -> Path:
        return self.root / "quotas.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def tb(self) -> Path:
        return self.root / "tb"

    @property
    def ckpt_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.ckpt_dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.ckpt_dir / "best.pt"

    @property
    def swa(self) -> Path:
        return self.ckpt_dir / "swa.pt"

    @property
    def val_logits(self) -> Path:
        return self.root / "val_logits.npz"

    @property
    def test_logits(self) -> Path:
        return self.root / "test_logits.npz"

    @property
    def predict_rejects(self) -> Path:
        return self.root / "predict_rejects.csv"

    @property
    def run_name(self) -> str:
        return self.root.parent.name

    @property
    def fold(self) -> int:
        return int(self.root.name.removeprefix("fold"))

    def create(self) -> None:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict, path: Path) -> None:
    """torch.save into memory, then an atomic write (a kill mid-save leaves the old file intact)."""
    import torch  # here, not at the top: readers of logits and run folders need no torch

    buf = io.BytesIO()
    torch.save(state, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


def load_checkpoint(path: Path, classes: list[str] | None = None) -> dict:
    """Load with weights_only=True (no code runs); clear errors for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated (not a torch zip archive)")
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"checkpoint {path} refused: it holds objects that are not plain weights{what}; "
                              "weights_only loading never runs code from a checkpoint") from None
    except Exception as e:  # noqa: BLE001 - any other failure of a zip that torch cannot read: corrupt
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:100] if str(e) else ''})") from None
    if not isinstance(state, dict) or "model" not in state or "classes" not in state:
        raise CheckpointError(f"checkpoint {path} is not a doodle checkpoint (no model/classes entries)")
    if classes is not None and list(state["classes"]) != list(classes):
        raise CheckpointError(f"checkpoint {path} was trained on other classes "
                              f"({len(state['classes'])} vs {len(classes)} in the config)")
    return state


def save_logits(path: Path, logits: np.ndarray, key_id: np.ndarray, classes: list[str],
                target: np.ndarray | None = None) -> None:
    """Logits with their alignment keys and class order (float16 to keep test logits small)."""
    assert logits.shape == (len(key_id), len(classes)), (logits.shape, len(key_id), len(classes))
    arrays = {"logits": logits.astype(np.float16), "key_id": np.asarray(key_id, np.int64),
              "classes": np.array(classes, dtype=str)}
    if target is not None:
        arrays["target"] = np.asarray(target, np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_logits(path: Path) -> dict:
    """A logits file -> dict(logits float32, key_id, classes list, target or None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"logits file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {"logits": z["logits"].astype(np.float32), "key_id": z["key_id"],
                   "classes": [str(c) for c in z["classes"]],
                   "target": z["target"] if "target" in z.files else None}
    except (ValueError, KeyError, zipfile.BadZipFile, OSError) as e:
        raise UserError(f"logits file {path} is unreadable ({e})") from None
    return out


FOLD_DIR = re.compile(r"fold(\d+)")


def run_summary(history: list[dict], wall_seconds: float, **facts) -> dict:
    """summary.json's numbers from a fold's metrics rows (one dict per epoch): the best epoch by validation
    MAP@3 (the first of ties, as training keeps it), images seen and training throughput; `facts` (run,
    fold, device, ...) are appended as given. Training writes it; reports rebuild it for killed runs."""
    if not history:
        raise UserError("no epoch rows to summarise")
    best = max(history, key=lambda r: r["val/map3"])
    images = int(sum(r["train/images"] for r in history))
    return {"best_epoch": int(best["epoch"]), **{k: float(best[k]) for k in ("val/map3", "val/acc1", "val/loss")},
            "epochs_run": len(history), "images_seen": images, "wall_seconds": round(float(wall_seconds), 1),
            "train_images_per_second": round(images / max(sum(r["train/seconds"] for r in history), 1e-9), 1),
            **facts}


def fold_dirs(path: str | Path, marker: str | None = "config.yaml") -> dict[int, Path]:
    """fold number -> folder, in fold order: the fold<k>/ subfolders of a run folder that hold `marker` (any
    fold<k>/ when marker is None), or else the folder itself when it is one fold (it holds `marker`, or is
    named fold<k> when marker is None; a lone fold not named fold<k> counts as fold 0). Empty when neither."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} not found{nearest_path(path)}")
    subs = {int(m[1]): d for d in path.iterdir()
            if d.is_dir() and (m := FOLD_DIR.fullmatch(d.name)) and (marker is None or (d / marker).is_file())}
    if subs:
        return dict(sorted(subs.items()))
    m = FOLD_DIR.fullmatch(path.name)
    if (path / marker).is_file() if marker else m:
        return {int(m[1]) if m else 0: path}
    return {}


def find_folds(path: str | Path) -> list[RunDir]:
    """A fold folder, or a run folder holding fold<k>/ folders -> its folds (with config.yaml), in fold order:
    the one way the tools, the page and predict find a run's folds."""
    folds = [RunDir(d) for d in fold_dirs(path).values()]
    if not folds:
        raise FileNotFoundError(f"{path} is not a run: no config.yaml in it nor in fold<k>/ subfolders")
    return folds


def join_val_logits(parts: list[dict], where: str | Path) -> dict:
    """Validation logits of several folds (`load_logits` dicts, each with a "name") -> one out-of-fold set:
    every array concatenated, the common class order kept. The parts must all have targets and the same
    class order, and no key_id may repeat (folds are disjoint)."""
    for p in parts:
        if p["target"] is None:
            raise UserError(f"{p['name']} has no target (not validation logits?)")
        if p["classes"] != parts[0]["classes"]:
            raise UserError(f"{p['name']} has another class order than {parts[0]['name']}")
    out = {k: np.concatenate([p[k] for p in parts]) for k, v in parts[0].items() if isinstance(v, np.ndarray)}
    if len(np.unique(out["key_id"])) != len(out["key_id"]):
        raise UserError(f"{where}: folds share key_ids, so their val logits are not out-of-fold")
    return {**out, "classes": parts[0]["classes"]}
