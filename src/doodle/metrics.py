"""The competition metric and friends, defined once: MAP@3, top-k accuracy, per-class accuracy."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int = 3) -> np.ndarray:
    """Indices of the k largest scores per row, best first (ties broken by lower index)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def map_at_k(scores: np.ndarray, target: np.ndarray, k: int = 3) -> float:
    """Mean average precision at k with one true label per row (Kaggle's MAP@3 for k=3)."""
    target = np.asarray(target)
    if len(target) == 0:
        return float("nan")
    hits = top_k(scores, k) == target[:, None]
    return float((hits / np.arange(1, hits.shape[1] + 1)).sum(axis=1).mean())


def accuracy(scores: np.ndarray, target: np.ndarray) -> float:
    target = np.asarray(target)
    return float((np.asarray(scores).argmax(axis=1) == target).mean()) if len(target) else float("nan")


def per_class_accuracy(scores: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Top-1 accuracy of each class (NaN for a class with no rows)."""
    target = np.asarray(target)
    correct = np.asarray(scores).argmax(axis=1) == target
    total = np.bincount(target, minlength=n_classes).astype(np.float64)
    right = np.bincount(target, weights=correct, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, right / np.maximum(total, 1), np.nan)


def summarize(scores: np.ndarray, target: np.ndarray, prefix: str = "val") -> dict[str, float]:
    """`{prefix}/map3` and `{prefix}/acc1` for a score matrix."""
    return {f"{prefix}/map3": map_at_k(scores, target, 3), f"{prefix}/acc1": accuracy(scores, target)}
