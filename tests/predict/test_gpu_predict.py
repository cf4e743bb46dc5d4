"""One finished run predicts the same on the CPU and on the GPU: load_run(path, device) + predict_drawings on the
bundled sample's 270 test drawings, full precision on both (the tiny run trains with train.amp: off).

Marked `gpu`: skipped, with the reason, where CUDA is missing (tests/conftest.py); `bash tools/gpu_check.sh` runs
it on a GPU.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest_app import tiny_run  # noqa: F401  (fixture: a tiny run trained on the sample, on this device)
from helpers import SAMPLE

from doodle.drawing.flat import Drawings
from doodle.drawing.strokes import parse_kaggle_drawing
from doodle.predict.loaded_run import load_run, predict_drawings

pytestmark = pytest.mark.gpu


def test_cpu_and_gpu_logits_of_one_run_agree(tiny_run, gpu_device, record_property):  # noqa: F811
    fold = tiny_run[1] / "tiny" / "fold0"
    with open(SAMPLE / "test_simplified.csv", newline="") as f:
        drawings = Drawings.pack([parse_kaggle_drawing(row["drawing"]) for row in csv.DictReader(f)])
    cpu, gpu = load_run(fold, "cpu"), load_run(fold, gpu_device)
    assert gpu.device.type == gpu_device.type and cpu.precision.dtype is None and gpu.precision.dtype is None
    a, b = predict_drawings(cpu, drawings), predict_drawings(gpu, drawings)
    assert a.shape == b.shape == (270, len(cpu.classes)) and a.dtype == b.dtype == np.float32
    agree = float((a.argmax(1) == b.argmax(1)).mean())
    diff = float(np.abs(a - b).max())
    record_property("top1_agreement", agree)
    record_property("max_abs_diff", diff)
    record_property("max_abs_logit", float(np.abs(a).max()))
    assert agree >= 0.99
    # fp32 on both; cuDNN's convolutions may use TF32 (PyTorch's default), hence not bit-equal
    assert diff <= 1e-2 * max(1.0, float(np.abs(a).max())), diff
