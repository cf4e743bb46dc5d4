"""Combining the logits of several models: alignment by key_id, blending, stacking, test-set balancing.

A *member* is a dict like the one `runs.folder.load_logits` returns, plus a `name` used in error messages:
`{"name", "logits" (N, C), "key_id" (N,), "classes" [C], "target" (N,) or None}`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from doodle.errors import DoodleError, UserError
from doodle.metrics import softmax  # float32; tools/ensemble.py uses it as ensemble.softmax

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

log = logging.getLogger(__name__)


class EnsembleError(DoodleError, ValueError):
    """Members that cannot be combined (different drawings, class orders or targets; bad weights)."""


@dataclass(frozen=True)
class Aligned:
    """Members put on the same rows: `logits[m][i]` is member m's logits for drawing `key_id[i]`."""

    names: list[str]
    key_id: np.ndarray
    classes: list[str]
    logits: list[np.ndarray]
    target: np.ndarray | None


def _class_mismatch(name: str, ref_name: str, classes: list[str], ref: list[str]) -> EnsembleError:
    if len(classes) != len(ref):
        return EnsembleError(f"member {name} has {len(classes)} classes, {ref_name} has {len(ref)}")
    i = next(i for i, (a, b) in enumerate(zip(classes, ref, strict=True)) if a != b)
    return EnsembleError(f"member {name} has another class order than {ref_name} "
                         f"(index {i}: {classes[i]!r} vs {ref[i]!r})")


def _order(member: dict, name: str, ref_name: str, ref_keys: np.ndarray) -> np.ndarray:
    """Row indices that put `member` in the order of the sorted reference key_ids."""
    keys = np.asarray(member["key_id"], np.int64)
    if len(np.unique(keys)) != len(keys):
        raise EnsembleError(f"member {name} has duplicated key_ids")
    order = np.argsort(keys, kind="stable")
    if len(keys) != len(ref_keys) or not np.array_equal(keys[order], ref_keys):
        extra = len(np.setdiff1d(keys, ref_keys))
        lacking = len(np.setdiff1d(ref_keys, keys))
        raise EnsembleError(f"member {name} covers other drawings than {ref_name}: {extra} key_ids not in "
                            f"{ref_name}, {lacking} of its key_ids missing")
    return order


def align_members(members: Sequence[dict]) -> Aligned:
    """Sort every member by key_id; all members must hold the same key_ids, classes (in order) and targets."""
    if not members:
        raise EnsembleError("no members to align")
    names = [str(m.get("name", f"member{i}")) for i, m in enumerate(members)]
    ref_keys = np.sort(np.asarray(members[0]["key_id"], np.int64))
    ref_classes = list(members[0]["classes"])
    logits, target, target_from = [], None, ""
    for name, m in zip(names, members, strict=True):
        if list(m["classes"]) != ref_classes:
            raise _class_mismatch(name, names[0], list(m["classes"]), ref_classes)
        x = np.asarray(m["logits"], np.float32)
        if x.shape != (len(m["key_id"]), len(ref_classes)):
            raise EnsembleError(f"member {name}: logits of shape {x.shape} for {len(m['key_id'])} key_ids "
                                f"x {len(ref_classes)} classes")
        order = _order(m, name, names[0], ref_keys)
        logits.append(x[order])
        if m.get("target") is not None:
            t = np.asarray(m["target"], np.int64)[order]
            if target is not None and not np.array_equal(t, target):
                raise EnsembleError(f"member {name} disagrees with {target_from} on the target of "
                                    f"{int((t != target).sum())} drawings")
            target, target_from = t, name
    return Aligned(names, ref_keys, ref_classes, logits, target)


def _prob_mean(logits: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    return sum(wi * softmax(x) for wi, x in zip(w, logits, strict=True))


def _logit_mean(logits: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    return softmax(sum(wi * x for wi, x in zip(w, logits, strict=True)))


BLENDERS: dict[str, Callable[[list[np.ndarray], np.ndarray], np.ndarray]] = {
    "prob_mean": _prob_mean, "logit_mean": _logit_mean}


def normalize_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """Weights summing to one (equal weights for None); wrong count or negative weights are errors."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, np.float64)
    if w.shape != (n,):
        raise EnsembleError(f"{len(w)} weights for {n} members")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise EnsembleError(f"weights must be finite, non-negative and not all zero, got {list(w)}")
    return w / w.sum()


def blend(aligned: Aligned, weights: Sequence[float] | None = None, method: str = "prob_mean") -> np.ndarray:
    """Weighted blend -> probabilities (N, C): `prob_mean` averages softmaxes, `logit_mean` logits."""
    if method not in BLENDERS:
        raise EnsembleError(f"unknown blend method {method!r} (valid: {', '.join(BLENDERS)})")
    w = normalize_weights(weights, len(aligned.logits))
    return BLENDERS[method](aligned.logits, w).astype(np.float32)


def stack_features(probs_list: Sequence[np.ndarray]) -> np.ndarray:
    """The stacker's input in long form: one row per (drawing, class), one column per member's log-prob."""
    return np.stack([np.log(np.clip(p, 1e-6, 1.0)).ravel() for p in probs_list], axis=1).astype(np.float32)


def _long_rows(drawings: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows of the long form that belong to the given drawings."""
    return (drawings[:, None] * n_classes + np.arange(n_classes)).ravel()


def stack_oof(probs_list: Sequence[np.ndarray], target: np.ndarray, n_splits: int = 5, seed: int = 0,
              c: float = 1.0, max_iter: int = 200) -> tuple[np.ndarray, LogisticRegression]:
    """Logistic-regression stacker over the members' out-of-fold log-probabilities.

    The LogisticRegression sees one row per (drawing, class) with the members' log-probabilities of that
    class and learns "is this the drawing's class"; a softmax of its decision function over the classes
    of a drawing gives the stacked probabilities. Its weights are shared by all classes, so it learns a
    weighted, tempered log-linear pool of the members (members + 1 numbers). Why not a multinomial model on
    the (N, members x C) concatenation: with 340 classes that has members x 340 x 340 weights; on synthetic
    3,400 / 10,200-row sets it scored MAP@3 0.04 / 0.09 against 0.39 for the plain mean, in 45 / 180 s.

    Returns the stacker's own out-of-fold probabilities (N, C), from `cross_val_predict` with `n_splits`
    folds of drawings (so its score is honest), and a model refitted on all rows (see `stack_predict`).
    """
    # scikit-learn here: only stacking needs it (~2.5 s to import), so blending by mean starts at once
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_predict

    n, n_classes = probs_list[0].shape
    if n < n_splits:
        raise EnsembleError(f"stacking with {n_splits} splits needs at least {n_splits} drawings, got {n}")
    x = stack_features(probs_list)
    y = (np.asarray(target, np.int64)[:, None] == np.arange(n_classes)).ravel()
    folds = KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.arange(n))
    splits = [(_long_rows(tr, n_classes), _long_rows(te, n_classes)) for tr, te in folds]
    model = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        oof = cross_val_predict(model, x, y, cv=splits, method="decision_function")
        model.fit(x, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("stacker did not converge in %d iterations (scores are still usable)", max_iter)
    log.info("stacker weights per member: %s", np.round(model.coef_[0], 3).tolist())
    return softmax(oof.reshape(n, n_classes)), model


def stack_predict(model: LogisticRegression, probs_list: Sequence[np.ndarray]) -> np.ndarray:
    """Probabilities (N, C) of a fitted stacker for members' probabilities (same member order as fitting)."""
    n, n_classes = probs_list[0].shape
    return softmax(model.decision_function(stack_features(probs_list)).reshape(n, n_classes))


def balance(probs: np.ndarray, n_iter: int = 20_000, tol: float = 0.05, step: float = 0.99) -> np.ndarray:
    """Reweight classes so top-1 predictions are close to uniform (the test set is balanced).

    Kaggle-winner post-processing: start from weights w = 1; repeatedly take the class that is the top-1
    prediction of the most rows (for probs * w), multiply its weight by `step`, and recompute the top-1 of
    only the rows it held. Stop when no class is predicted more than N / C * (1 + tol) times, or after
    `n_iter` steps. Returns probs * w renormalised per row. Deterministic (ties go to the lower index);
    only over-predicted classes are lowered, so rows whose top-1 is an under-predicted class never change.
    """
    p = np.asarray(probs, np.float32)
    if p.ndim != 2 or not 0 < step < 1:
        raise UserError(f"balance needs probs (N, C) and 0 < step < 1, got {p.shape} and {step}")
    n, c = p.shape
    limit = n / c * (1 + tol)
    w = np.ones(c, np.float32)
    top = p.argmax(axis=1)
    counts = np.bincount(top, minlength=c)
    steps = 0
    while steps < n_iter and counts.max() > limit:
        k = int(counts.argmax())
        w[k] *= step
        steps += 1
        rows = np.flatnonzero(top == k)
        new = (p[rows] * w).argmax(axis=1)
        top[rows] = new
        counts[k] = 0
        counts += np.bincount(new, minlength=c)
    log.info("balance: %d steps, largest class predicted %d times (uniform %.1f)", steps, counts.max(), n / c)
    out = p * w
    return out / out.sum(axis=1, keepdims=True)


def balanced_subset(target: np.ndarray, seed: int = 0) -> np.ndarray:
    """Sorted row indices holding the same number of rows of every present class (the rarest's count)."""
    target = np.asarray(target)
    seen, counts = np.unique(target, return_counts=True)
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(target == k), counts.min(), replace=False) for k in seen]
    return np.sort(np.concatenate(keep))


def prob_correlation(aligned: Aligned) -> list[list[float]]:
    """Pearson correlation between members' probabilities (all rows x classes, flattened): how alike they err."""
    flat = np.stack([softmax(x).ravel() for x in aligned.logits])
    return np.round(np.corrcoef(flat), 4).tolist()
