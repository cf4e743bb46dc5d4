"""Load a finished run (its own config.yaml and best.pt) and turn drawings into logits.

Used by src/predict.py, the drawing page and the tools, so all of them render exactly as training did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from doodle.config import Config, load_resolved
from doodle.drawing.flat import Drawings
from doodle.models.factory import build_model, input_kind_of
from doodle.render.raster import RasterSpec, raster_spec
from doodle.runs.folder import CheckpointError, RunDir, find_folds, load_checkpoint
from doodle.store.collected import DECISIONS
from doodle.store.readers import DECISIONS_FILE, FileFormatError, scan_drawing_files
from doodle.train.data import make_inputs
from doodle.train.engine import Precision, forward, resolve_precision, to_input

log = logging.getLogger("predict")


@dataclass
class LoadedRun:
    run: RunDir
    cfg: Config
    facts: dict
    classes: list[str]
    model: nn.Module
    device: torch.device
    precision: Precision
    per_class_acc: np.ndarray | None
    temperature: float = 1.0  # calibration: logits / T (fitted on validation at the end of training)
    channels_last: bool = False  # the network's weights (and so its inputs) in NHWC

    @property
    def spec(self) -> RasterSpec:
        return raster_spec(self.cfg)

    @property
    def input_kind(self) -> str:
        return input_kind_of(self.cfg)


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """A fold folder -> model in eval mode with its saved config; class lists must agree."""
    run = find_folds(path)[0]
    cfg, facts = load_resolved(run.config)
    ckpt = load_checkpoint(run.best, facts.get("classes") or None)
    classes = list(ckpt["classes"])
    device = torch.device(device)
    cfg.model.pretrained, cfg.model.weights = False, ""  # the checkpoint has the weights
    model = build_model(cfg, len(classes), raster_spec(cfg).channels)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {run.best} does not fit model {cfg.model.name} "
                              f"({str(e).splitlines()[0][:120]})") from None
    channels_last = inference_layout(model, device, input_kind_of(cfg))
    acc = ckpt.get("per_class_acc")
    # a GPU run's amp does not follow it to a CPU (fp16 needs CUDA; CPU bf16 autocast is slow)
    precision = resolve_precision(cfg.train.amp if device.type == "cuda" else "off", device)
    return LoadedRun(run, cfg, facts, classes, model, device, precision, acc.numpy() if acc is not None else None,
                     temperature_of(ckpt.get("temperature")), channels_last)


def inference_layout(model: nn.Module, device: torch.device, input_kind: str) -> bool:
    """Move `model` to `device` in eval mode, in NHWC (channels_last) when it is an image model; whether it is.
    NHWC on every device: on this 2-core CPU ResNet18 at 64 px runs 1.3-1.5x faster (oneDNN's own layout)."""
    channels_last = input_kind == "image"
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format).eval()
    return channels_last


def temperature_of(value) -> float:
    """A stored calibration temperature, or 1.0 (no calibration) for older runs and values that make no sense."""
    return float(value) if isinstance(value, (int, float)) and 0 < value < 1e3 else 1.0


@torch.no_grad()
def predict_drawings(lr: LoadedRun, d: Drawings) -> np.ndarray:
    """Logits (B, C) float32 for a batch of drawings, rendered with the run's own config."""
    batch = make_inputs(d, lr.cfg, lr.spec, lr.input_kind)
    with lr.precision.autocast():
        logits = forward(lr.model, to_input(batch, lr.device, lr.channels_last))
    return logits.float().cpu().numpy()


def input_files(path: str | Path) -> list[Path]:
    """A drawing file, or every drawing file in a folder (sorted; label files, submissions, a collected
    folder's `_decisions.ndjson` and stores, which prepare skips, are skipped here too, each named in the log).
    The decisions file given on its own is refused (FileFormatError): its lines are not drawings."""
    path = Path(path)
    if path.is_file() and path.name == DECISIONS:
        raise FileFormatError(f"{path}: {DECISIONS_FILE}; give predict a drawing file or folder instead")
    if path.is_file():
        return [path]
    if path.is_dir():
        files, skipped = scan_drawing_files(path)
        for s in skipped:
            log.info("%s: skipped, %s", s["file"], s["reason"])
        if files:
            return files
        if skipped:
            names = ", ".join(Path(s["file"]).name for s in skipped[:5])
            raise FileNotFoundError(f"{path}: no drawing files in that folder, only label, submission or "
                                    f"review-decision files ({names})")
    raise FileNotFoundError(f"{path}: no such drawing file, or no .csv/.ndjson files in that folder")
