"""Weight or cap training drawings by their source (`data.source_weights`, `data.source_caps`).

A source is named by the folder its drawings were read from (`doodle.store.sources`): `train_simplified` for
Kaggle's files, a pseudo-label folder's name for the drawings `tools/pseudo.py` labelled. A cap keeps at most
that many drawings per class of the source (chosen by a fixed hash of key_id, the same in every run); a weight
is a drawing's chance of being drawn relative to the other drawings of its class (1 by default; 0 leaves the
source out). Validation drawings are never touched.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from doodle.config import Config
from doodle.errors import UserError
from doodle.store.format import Store
from doodle.store.sources import row_sources
from doodle.train.data import Split, cap_groups, group_by_class

log = logging.getLogger("train")


def _codes(names: list[str], asked: dict, key: str) -> dict[int, float]:
    """{source index: value} for a config mapping; a name the store does not have is an error naming them."""
    out = {}
    for name, value in asked.items():
        if name not in names:
            raise UserError(f"data.{key}: no source named {name!r} in the store (its sources: {', '.join(names)})")
        out[names.index(name)] = value
    return out


def apply_sources(store: Store, cfg: Config, split: Split) -> Split:
    """The split with its training drawings capped and weighted by source (unchanged when neither is set)."""
    weights, caps = cfg.data.source_weights, cfg.data.source_caps
    if not weights and not caps:
        return split
    row_source, names = row_sources(store.root, len(store))
    weights, caps = _codes(names, weights, "source_weights"), _codes(names, caps, "source_caps")
    idx = split.train_idx
    src = row_source[idx]
    keep = np.ones(len(idx), bool)
    for s, cap in caps.items():
        mine = np.flatnonzero(src == s)
        groups = group_by_class(idx[mine], lambda i: split.targets(store, i, np.int16), len(split.classes))
        keep[mine] = np.isin(idx[mine], cap_groups(groups, lambda i: store.key_id[i], int(cap)))
    w = np.ones(len(idx), np.float64)
    for s, value in weights.items():
        w[src == s] = value
    keep &= w > 0
    counts = np.bincount(src[keep], minlength=len(names))
    log.info("training drawings by source: %s", ", ".join(
        f"{n} {int(c)}" + (f" (weight {weights[i]:g})" if i in weights else "")
        + (f" (at most {int(caps[i])} per class)" if i in caps else "") for i, (n, c) in enumerate(zip(names, counts, strict=True))))
    if not keep.any():
        raise UserError("data.source_weights / data.source_caps leave no training drawings")
    uniform = bool((w[keep] == 1).all())
    return replace(split, train_idx=idx[keep], train_weight=None if uniform else w[keep])
