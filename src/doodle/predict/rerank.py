"""A second stage over an ensemble's candidates (`tools/ensemble.py --method rerank`): LightGBM re-scores each
drawing's likeliest classes from what the members say about them and what is known about the drawing.

For every drawing, the union of each member's top-`k` classes become candidate rows (drawing, class) with:

- each member's probability of the class and its rank (0 = the member's top guess), and their mean;
- the class's prior: its share of the training drawings (of the fold's training part for a validation
  drawing: the drawings the member models learned from, never the drawing itself);
- the drawing's metadata: stroke count, point count, duration in ms (-1 untimed), country (a categorical
  code), recognized (1 / 0) where every input has it.

LightGBM learns a score per row (`lambdarank` grouped by drawing by default, or `binary`); a softmax over a
drawing's candidates gives its probabilities (0 for the classes that are no one's candidate). Fitted
out-of-fold over the validation drawings, as `ensemble.stack_oof` is: each drawing is scored by a model fitted
on the other folds' drawings only, so the reported score is honest; the model for the test set is refitted on
all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from doodle.metrics import softmax

log = logging.getLogger(__name__)

META_COLUMNS = ("n_strokes", "n_points", "duration_ms", "countrycode", "recognized")
OBJECTIVES = ("lambdarank", "binary")


@dataclass(frozen=True)
class Candidates:
    """Candidate rows, sorted by drawing then class: row r is class `cls[r]` for drawing `drawing[r]`."""

    drawing: np.ndarray
    cls: np.ndarray

    @classmethod
    def of(cls, probs_list: Sequence[np.ndarray], k: int) -> Candidates:
        n, n_classes = probs_list[0].shape
        k = min(k, n_classes)
        mask = np.zeros((n, n_classes), bool)
        for p in probs_list:
            top = np.argpartition(-p, k - 1, axis=1)[:, :k]
            mask[np.arange(n)[:, None], top] = True
        d, c = np.nonzero(mask)
        return cls(d, c)

    def recall(self, target: np.ndarray) -> float:
        """Share of drawings whose true class is a candidate (the reranker cannot fix the others)."""
        hit = np.zeros(len(target), bool)
        hit[self.drawing[self.cls == np.asarray(target)[self.drawing]]] = True
        return float(hit.mean()) if len(hit) else 0.0


def _ranks(p: np.ndarray) -> np.ndarray:
    """(N, C) rank of every class in each row's order (0 = most probable; ties by class index)."""
    order = np.argsort(-p, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(p.shape[1])[None, :].repeat(len(p), 0), axis=1)
    return ranks


@dataclass
class Reranker:
    """A fitted second stage: `predict` turns the members' probabilities (+ prior, metadata) into probabilities."""

    booster: object  # lightgbm.Booster
    k: int
    n_members: int
    meta_columns: tuple[str, ...]
    use_prior: bool
    countries: dict[str, int] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        names = [f"{what}_{m}" for m in range(self.n_members) for what in ("p", "rank")] + ["p_mean"]
        return names + (["prior"] if self.use_prior else []) + list(self.meta_columns)

    def features(self, probs_list: Sequence[np.ndarray], cand: Candidates, prior: np.ndarray | None,
                 meta: dict | None) -> np.ndarray:
        """(rows, features) float32 in `feature_names` order; the country as its code (NaN: unseen)."""
        if len(probs_list) != self.n_members:
            raise ValueError(f"reranker fitted on {self.n_members} members, given {len(probs_list)}")
        d, c = cand.drawing, cand.cls
        cols = []
        for p in probs_list:
            cols += [p[d, c], _ranks(p)[d, c]]
        cols.append(sum(p[d, c] for p in probs_list) / len(probs_list))
        if self.use_prior:
            cols.append(prior[d, c] if prior.ndim == 2 else prior[c])
        for name in self.meta_columns:
            v = meta[name]
            if name == "countrycode":
                v = np.array([self.countries.get(str(x), np.nan) for x in v], np.float64)
            cols.append(np.asarray(v, np.float64)[d])
        return np.stack(cols, axis=1).astype(np.float32)

    def scores(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x)

    def predict(self, probs_list: Sequence[np.ndarray], prior: np.ndarray | None = None,
                meta: dict | None = None) -> np.ndarray:
        cand = Candidates.of(probs_list, self.k)
        return to_probs(self.scores(self.features(probs_list, cand, prior, meta)), cand, probs_list[0].shape)


def to_probs(scores: np.ndarray, cand: Candidates, shape: tuple[int, int]) -> np.ndarray:
    """Row scores -> (N, C) probabilities: a softmax over each drawing's candidates, 0 elsewhere."""
    z = np.full(shape, -np.inf, np.float64)
    z[cand.drawing, cand.cls] = scores
    return softmax(z)


def lgb_params(objective: str, k: int, seed: int, threads: int) -> dict:
    """Small trees and a fixed number of rounds (no early stopping, whose own holdout would be one more split):
    the validation sets here are a few thousand drawings. Deterministic for a given seed and thread count."""
    if objective not in OBJECTIVES:
        raise ValueError(f"rerank objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    params = {"objective": objective, "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20,
              "lambda_l2": 1.0, "seed": seed, "deterministic": True, "force_row_wise": True,
              "num_threads": threads, "verbose": -1}
    if objective == "lambdarank":
        params.update(lambdarank_truncation_level=k, eval_at=[3])
    return params


ROUNDS = 150


def _fit(x: np.ndarray, y: np.ndarray, drawing: np.ndarray, template: Reranker, params: dict) -> object:
    import lightgbm as lgb  # here: only this method needs it

    if params["objective"] == "lambdarank":  # a drawing without its true class among candidates teaches nothing
        has = np.zeros(drawing.max() + 1 if len(drawing) else 0, bool)
        has[drawing[y == 1]] = True
        keep = has[drawing]
        x, y, drawing = x[keep], y[keep], drawing[keep]
    group = np.unique(drawing, return_counts=True)[1]  # rows are sorted by drawing
    cat = ["countrycode"] if "countrycode" in template.meta_columns else []
    data = lgb.Dataset(x, y, group=group if params["objective"] == "lambdarank" else None,
                       feature_name=template.feature_names, categorical_feature=cat, free_raw_data=True)
    return lgb.train(params, data, num_boost_round=ROUNDS)


def rerank_oof(probs_list: Sequence[np.ndarray], target: np.ndarray, prior: np.ndarray | None = None,
               meta: dict | None = None, k: int = 5, n_splits: int = 5, seed: int = 0,
               objective: str = "lambdarank", threads: int = 1) -> tuple[np.ndarray, Reranker, dict]:
    """The reranker's out-of-fold probabilities (N, C) over the validation drawings, a reranker refitted on all
    of them (for the test set), and facts for the report (candidate recall, features).

    `prior`: (C,) or (N, C) class shares (None: no prior feature); `meta`: per-drawing arrays named as in
    META_COLUMNS (any subset; None: probability features only). The folds are `KFold(n_splits, shuffle,
    seed)` over drawings, as `stack_oof`'s.
    """
    from sklearn.model_selection import KFold  # here, as lightgbm in _fit: only this method needs it

    n = len(target)
    if n < n_splits:
        raise ValueError(f"reranking with {n_splits} splits needs at least {n_splits} drawings, got {n}")
    if k < 3:
        raise ValueError(f"rerank needs k >= 3 candidates per member (MAP@3 ranks three), got {k}")
    target = np.asarray(target, np.int64)
    columns = tuple(c for c in META_COLUMNS if meta is not None and c in meta)
    countries = ({str(c): i for i, c in enumerate(sorted({str(x) for x in meta["countrycode"]}))}
                 if "countrycode" in columns else {})
    template = Reranker(None, k, len(probs_list), columns, prior is not None, countries)
    cand = Candidates.of(probs_list, k)
    x = template.features(probs_list, cand, prior, meta)
    y = (cand.cls == target[cand.drawing]).astype(np.float32)
    params = lgb_params(objective, k, seed, threads)
    scores = np.empty(len(y), np.float64)
    for tr, te in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.arange(n)):
        rows_tr, rows_te = np.isin(cand.drawing, tr), np.isin(cand.drawing, te)
        booster = _fit(x[rows_tr], y[rows_tr], cand.drawing[rows_tr], template, params)
        scores[rows_te] = booster.predict(x[rows_te])
    template.booster = _fit(x, y, cand.drawing, template, params)
    info = {"k": k, "objective": objective, "candidate_rows": int(len(y)),
            "candidate_recall": round(cand.recall(target), 6), "features": template.feature_names}
    return to_probs(scores, cand, probs_list[0].shape), template, info
