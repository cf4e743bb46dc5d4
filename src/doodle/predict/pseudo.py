"""Pseudo-labels: keep the test drawings a model (or ensemble) is sure of, at a precision measured out-of-fold.

The threshold is read off the validation fold, never off the test set: sort the out-of-fold drawings by their
top probability, and take the lowest probability at which the drawings at or above it are still labelled right
at least `target` of the time (`choose_threshold`). Test drawings whose top probability reaches it keep their
top class as a label (`confident`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from doodle.errors import DoodleError


class PseudoError(DoodleError, ValueError):
    """A precision target that cannot be met or makes no sense."""


@dataclass(frozen=True)
class Threshold:
    """The chosen probability threshold and what it keeps of the validation drawings."""

    threshold: float
    target: float
    val_rows: int
    val_kept: int
    val_precision: float  # share of the kept validation drawings whose top class is right

    def to_dict(self) -> dict:
        return asdict(self)


def check_target(target: float) -> float:
    """A precision target in (0, 1]; anything else is a one-line error."""
    if not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise PseudoError(f"precision target {target!r} is out of range: expected a share in (0, 1], e.g. 0.95")
    return float(target)


def choose_threshold(probs: np.ndarray, target: np.ndarray, precision: float) -> Threshold:
    """The lowest top-probability threshold whose kept validation drawings (top probability >= it) have a
    top-1 precision of at least `precision`. Drawings with equal probabilities are kept or dropped together,
    so the precision holds exactly for `probs.max(1) >= threshold`. No threshold reaches it: PseudoError."""
    precision = check_target(precision)
    probs, target = np.asarray(probs, np.float64), np.asarray(target, np.int64)
    if probs.ndim != 2 or len(probs) != len(target) or len(target) == 0:
        raise PseudoError(f"validation probabilities {probs.shape} do not match {len(target)} targets")
    conf = probs.max(axis=1)
    order = np.argsort(-conf, kind="stable")
    conf, right = conf[order], (probs.argmax(axis=1) == target)[order]
    kept = np.arange(1, len(conf) + 1)
    prec = np.cumsum(right) / kept
    cut = np.append(conf[1:] < conf[:-1], True)  # a threshold can only fall between distinct probabilities
    ok = np.flatnonzero(cut & (prec >= precision - 1e-12))
    if not len(ok):
        raise PseudoError(f"no threshold reaches precision {precision:g} on the {len(target)} validation drawings "
                          f"(the most confident one is {'right' if right[0] else 'wrong'}); lower the target")
    i = int(ok[-1])
    return Threshold(float(conf[i]), precision, len(target), int(kept[i]), float(prec[i]))


def confident(probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows whose top probability reaches `threshold`, their top class)."""
    probs = np.asarray(probs)
    rows = np.flatnonzero(probs.max(axis=1) >= threshold)
    return rows, probs[rows].argmax(axis=1)
