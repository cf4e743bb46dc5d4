"""The export checks' drawings and limits: a module of its own so that `tools/export.py --help` (whose defaults
these are) answers before torch loads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """The checks' drawings and limits (the defaults are the figures issue #18 asks for)."""

    check_rows: int = 512  # validation drawings for the logit comparison
    calib_rows: int = 512  # training drawings for int8 calibration
    max_diff: float = 1e-3  # fp32 ONNX / package vs the run: max abs logit difference
    min_top1: float = 0.98  # int8 vs fp32: top-1 agreement on the validation fold
    max_map3_drop: float = 0.005  # int8 vs fp32: MAP@3 lost on the validation fold
