"""The in-library stages of `bench.py scale`, each run in its own process as a user's code would run them; each
prints one JSON line (its own timings, measured inside the process, i.e. without Python's start-up).

    python -m benchmarks._scale_probes first_batch|loader|page --store DIR --cfg CFG [--set K=V ...] ...

* `first_batch`: open the store, make fold 0's split (data.val_per_class cap included), build the quota
  sampler and the training dataset as `src/train.py` builds them, render the first batch.
* `loader`: the training dataset (stroke augmentation + render) over batches of 256 indices drawn uniformly
  from the whole store, at each `--sizes` px, for `--seconds` each (at least 3 batches, after one untimed).
* `page`: what the page does in Review mode: find the runs under `--outputs`, load the first (model + config),
  list its validation mistakes, open the store's key_id index and render the first page of mistakes; then
  one guess on a store drawing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from doodle.config import load_config
from doodle.store.format import Store
from doodle.train.data import BatchDataset, Split, make_loader, make_split, train_sampler

BATCH = 256
PER_PAGE = 12  # the Review page's drawings per page (doodle.app.page.PER_PAGE; that module needs streamlit)


def first_batch(args) -> dict:
    t0 = time.perf_counter()
    cfg = load_config(args.cfg, args.set)
    store = Store(cfg.data.store)
    n = len(store)
    scratch = Path(tempfile.mkdtemp(prefix="first_batch_", dir=Path(cfg.data.store).parent))  # train.py: the run's
    split = make_split(store, cfg, 0, scratch)
    t_split = time.perf_counter()
    n_cls = len(split.classes)
    sampler = train_sampler(store, split, np.full(n_cls, cfg.data.per_class), cfg.train.batch_size, scratch=scratch)
    ds = BatchDataset(store, split, cfg, train=True)
    batch = next(iter(make_loader(ds, sampler, 0)))
    t_end = time.perf_counter()
    shutil.rmtree(scratch)  # the arrays' files are unnamed: the folder is empty
    return {"drawings": n, "classes": n_cls, "train": int(len(split.train_idx)), "val": int(len(split.val_idx)),
            "batch": int(len(batch["image"])), "open_split_s": round(t_split - t0, 3),
            "first_batch_s": round(t_end - t0, 3)}


def loader(args) -> dict:
    out = {}
    for size in args.sizes:
        cfg = load_config(args.cfg, [*args.set, f"data.img_size={size}"])
        store = Store(cfg.data.store)
        one = np.arange(1)  # the dataset reads only the label map of a split
        ds = BatchDataset(store, Split(store.classes, one, one, np.arange(len(store.classes))), cfg, train=True)
        rng = np.random.default_rng(size)
        ds[rng.integers(0, len(store), BATCH).tolist()]  # untimed: loads the compiled kernels (first_batch times that)
        images, t0 = 0, time.perf_counter()
        while images < 3 * BATCH or time.perf_counter() - t0 < args.seconds:
            images += len(ds[rng.integers(0, len(store), BATCH).tolist()]["image"])
        seconds = time.perf_counter() - t0
        out[f"images_per_s_{size}"] = round(images / seconds)
        out[f"images_{size}"] = images
    return out


def page(args) -> dict:
    from doodle.app import guesses
    from doodle.predict.loaded_run import load_run

    t0 = time.perf_counter()
    runs = guesses.find_runs(args.outputs)
    lr = load_run(runs[0])
    t_load = time.perf_counter()
    found = guesses.mistakes(lr)
    t_mistakes = time.perf_counter()
    index = guesses.KeyIndex(Store(lr.cfg.data.store), [m.key_id for m in found])  # as the page builds it
    shown = [guesses.model_image(index.drawing(m.key_id), lr.spec) for m in found[:PER_PAGE]]
    t_page = time.perf_counter()
    store = index.store
    probs = guesses.ensemble_probs([lr], store.drawing(int(np.random.default_rng(0).integers(len(store)))))
    t_guess = time.perf_counter()
    return {"runs_found": len(runs), "mistakes": len(found), "shown": len(shown), "load_s": round(t_load - t0, 3),
            "mistakes_s": round(t_mistakes - t_load, 3), "first_page_s": round(t_page - t_mistakes, 3),
            "guess_s": round(t_guess - t_page, 3), "guess_classes": int(len(probs))}


PROBES = {"first_batch": first_batch, "loader": loader, "page": page}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="one in-library stage of bench.py scale")
    p.add_argument("probe", choices=list(PROBES))
    p.add_argument("--cfg", type=Path, help="training config (first_batch, loader)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides, as src/train.py --set")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="loader: image sizes")
    p.add_argument("--seconds", type=float, default=10.0, help="loader: seconds per size")
    p.add_argument("--outputs", type=Path, help="page: the outputs folder holding the runs")
    args = p.parse_args(argv)
    print(json.dumps(PROBES[args.probe](args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
