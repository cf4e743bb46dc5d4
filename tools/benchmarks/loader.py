"""Loader throughput, one core: our store -> stroke-augmented uint8 batches vs the naive CSV loader.

Both sides see the same drawings: the naive loader reads the first `limit` rows of the sorted Kaggle CSVs
under train_simplified/; a temporary store is prepared from exactly those files (outside the timing) and
ours loads the same first `limit` drawings in the same order.

* naive: pandas CSV read + json.loads + cv2.line per segment + albumentations (Affine, HorizontalFlip) per
  image + float CHW tensors (its own `naive_loader`);
* ours: `BatchDataset` (train mode: the default stroke-space affine with flips, per-batch seeded RNG) over
  the memory-mapped store, one compiled render per batch, through `make_loader(num_workers=0)`; uint8 NHWC
  batches of 256 (the float conversion happens on the device in training).
"""

from __future__ import annotations

import glob
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import import_naive, one_core, prepared_store
from doodle.config import Config
from doodle.store.format import Store
from doodle.train.data import BatchDataset, Split, fixed_batches, make_loader

GOALS = {64: 5.0, 128: 8.0, 256: 10.0}
BATCH = 256


def files_read(root: Path, limit: int) -> tuple[list[Path], np.ndarray]:
    """The CSV files `read_drawings(root, limit)` opens (sorted, until `limit` rows), and their first key_ids."""
    import pandas as pd

    files, keys = [], []
    for path in sorted(glob.glob(os.path.join(root, "*.csv"))):
        files.append(Path(path))
        keys.append(pd.read_csv(path, usecols=["key_id"])["key_id"].to_numpy(np.int64))
        if sum(map(len, keys)) >= limit:
            break
    return files, np.concatenate(keys)[:limit]


def build_store(files: list[Path], out: Path, key_ids: np.ndarray) -> tuple[Store, float]:
    """A store of exactly these files; its first drawings must be the naive loader's, in its order."""
    store, _, seconds = prepared_store(files, out)
    if len(store) < len(key_ids) or not np.array_equal(np.asarray(store.key_id[: len(key_ids)]), key_ids):
        raise RuntimeError(f"{out}: the store's drawings are not the naive loader's (rejects or reordering)")
    return store, seconds


def our_loader(store: Store, size: int, n: int):
    cfg = Config()
    cfg.data.img_size = size
    cfg.data.num_workers = 0
    idx = np.arange(n)
    split = Split(store.classes, idx, idx[:1], np.arange(len(store.classes)))
    ds = BatchDataset(store, split, cfg, train=True, seed=0)
    return make_loader(ds, fixed_batches(idx, BATCH), num_workers=0)


def alternating_passes(make_ours, make_theirs, repeats: int) -> tuple[float, float, int]:
    """Median time of a whole pass of each loader; passes alternate (order swapped every repeat).

    Whole passes, not batch by batch: interleaving batches let the naive loader's ~200 MB of float tensors
    per batch evict and re-fault our memory (and vice versa), which slowed ours 2x and is not how either
    runs. Returns (ours seconds, naive seconds, images per pass)."""
    times: tuple[list[float], list[float]] = ([], [])
    counts = [0, 0]
    for r in range(repeats):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            if k == 0:
                counts[0] = sum(len(b["image"]) for b in make_ours())
            else:
                counts[1] = sum(len(b) for b in make_theirs())
            times[k].append(time.perf_counter() - t0)
    if counts[0] != counts[1]:
        raise RuntimeError(f"ours gave {counts[0]} images, naive {counts[1]}")
    return statistics.median(times[0]), statistics.median(times[1]), counts[0]


def run(args) -> Iterator[dict]:
    one_core()
    naive = import_naive(args.naive)
    root = Path(args.data) / "train_simplified"
    limit = 2_000 if args.quick else 5_000
    repeats = 2 if args.quick else args.repeats
    files, key_ids = files_read(root, limit)
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        store, prep_s = build_store(files, Path(tmp) / "store", key_ids)
        for size in (64, 128, 256):
            first = next(iter(our_loader(store, size, len(key_ids))))["image"]  # compiles outside the timing
            assert first.dtype == torch.uint8 and tuple(first.shape[1:]) == (size, size, 3)
            t_ours, t_naive, n = alternating_passes(
                lambda size=size: our_loader(store, size, len(key_ids)),
                lambda size=size: naive.naive_loader(str(root), size, limit, BATCH), repeats)
            yield {"bench": "loader", "case": "store_stroke_augment", "size": size, "drawings": n,
                   "batch": BATCH, "ours_per_s": round(n / t_ours), "naive_per_s": round(n / t_naive),
                   "ratio": round(t_naive / t_ours, 2), "goal": GOALS[size], "repeats": repeats,
                   "notes": f"ours excludes the one-off prepare of {len(files)} CSVs ({prep_s:.1f} s); "
                            "ours uint8 NHWC, naive float NCHW"}
