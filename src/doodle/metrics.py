"""The competition metric and friends, defined once: MAP@3, top-k accuracy, per-class accuracy, softmax."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int = 3) -> np.ndarray:
    """Indices of the k largest scores per row, best first (ties broken by lower index; NaN ranks last).

    As `np.argsort(-scores, kind="stable")[:, :k]`, but at argpartition's speed: the k-th largest value of
    each row is found by partition, then the row's k winners are taken in index order (so among scores equal
    to the k-th, the lower indices win) and sorted stably by score.
    """
    scores = np.asarray(scores)
    n, c = scores.shape
    k = min(k, c)
    neg = -(scores.astype(np.float32) if scores.dtype == np.float16 else scores)  # exact; f16 compares slowly
    kth = np.take_along_axis(neg, np.argpartition(neg, k - 1, axis=1)[:, k - 1 : k], axis=1)
    above, tie = neg < kth, neg == kth
    chosen = above | tie
    need = k - np.count_nonzero(above, axis=1)
    extra = np.flatnonzero(np.count_nonzero(tie, axis=1) > need)  # more scores equal the k-th than places left
    if len(extra):
        rank = np.cumsum(tie[extra], axis=1, dtype=np.int32)
        chosen[extra] = above[extra] | (tie[extra] & (rank <= need[extra, None]))
    ok = np.count_nonzero(chosen, axis=1) == k  # not so when the k-th value is NaN (< k numbers in the row)
    if ok.all():
        idx = np.nonzero(chosen)[1].reshape(n, k)
    else:
        idx = np.empty((n, k), np.intp)
        idx[ok] = np.nonzero(chosen[ok])[1].reshape(-1, k)
        idx[~ok] = np.argsort(neg[~ok], axis=1, kind="stable")[:, :k]
    order = np.argsort(np.take_along_axis(neg, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


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


def softmax(logits: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Probabilities over the last axis, computed in (and returned as) `dtype`."""
    x = np.asarray(logits, dtype)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reliability(probs: np.ndarray, target: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Top-1 confidence vs accuracy in `n_bins` equal-width confidence bins (empty bins have count 0)."""
    probs = np.asarray(probs, np.float64)
    conf, hit = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(target)
    bins = np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        return {"edges": np.linspace(0, 1, n_bins + 1), "count": count,
                "confidence": np.bincount(bins, conf, n_bins) / count,
                "accuracy": np.bincount(bins, hit.astype(np.float64), n_bins) / count}


def expected_calibration_error(probs: np.ndarray, target: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| of the top-1 guess over confidence bins."""
    r = reliability(probs, target, n_bins)
    used = r["count"] > 0
    gap = np.abs(r["accuracy"][used] - r["confidence"][used])
    return float((gap * r["count"][used]).sum() / max(r["count"].sum(), 1))


def fit_temperature(logits: np.ndarray, target: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017, temperature scaling).

    Dividing by T keeps every ranking, so MAP@3 and accuracy do not change; only the confidence does.
    """
    from scipy.optimize import minimize_scalar  # scipy comes with scikit-learn; imported only here

    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=1, keepdims=True)
    y = np.asarray(target)
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        z = x / np.exp(log_t)
        return float(np.mean(np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) + z.max(axis=1)
                             - z[np.arange(len(y)), y]))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
