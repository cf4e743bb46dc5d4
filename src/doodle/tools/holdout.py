"""Write one fold of a store as an unlabelled Kaggle test CSV plus its answers: a test set whose labels are known.

    python tools/holdout.py --store input/store27 --fold 4 --out input/holdout4

Writes `<out>/test_simplified.csv` (key_id, countrycode, drawing, as Kaggle's test file) and
`<out>/test_labels.csv` (key_id, word: what `src/predict.py --labels` reads). Train on the other folds with
`data.exclude_folds=[k]` so no model sees the fold, then predict, ensemble or pseudo-label it as the real test
set, and score the outcome against the answers (how pseudo-labelling is measured without a labelled test set).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from doodle import cli
from doodle.runs.folder import atomic_write_bytes
from doodle.store.format import Store
from doodle.store.kaggle_writer import TEST_HEADER, format_test_rows

CHUNK = 20_000


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--store", type=Path, required=True, help="a prepared store")
    p.add_argument("--fold", type=int, required=True, help="the fold to write")
    p.add_argument("--out", type=Path, required=True, help="folder for test_simplified.csv and test_labels.csv")
    return cli.add_debug_flag(p).parse_args(argv)


def country_codes(store: Store, rows: np.ndarray) -> np.ndarray:
    """(n, 2) uint8 country letters of the rows (blank when the store has none)."""
    codes = pq.read_table(store.root / "meta.parquet", columns=["countrycode"])["countrycode"].to_numpy()[rows]
    two = [(str(c) if c else "").ljust(2)[:2].encode("ascii", "replace") for c in codes]
    return np.frombuffer(b"".join(two), np.uint8).reshape(-1, 2)


def write_holdout(store: Store, fold: int, out: Path) -> dict:
    """The fold's drawings as test_simplified.csv + test_labels.csv under `out`; returns counts."""
    if not 0 <= fold < store.info.n_folds:
        raise cli.UserError(f"--fold {fold}: the store {store.root} has folds 0..{store.info.n_folds - 1}")
    rows = np.flatnonzero(np.asarray(store.fold) == fold)
    if not len(rows):
        raise cli.UserError(f"fold {fold} of {store.root} holds no drawings")
    keys = np.asarray(store.key_id)[rows]
    countries = country_codes(store, rows)
    body = [format_test_rows(store.take(rows[a : a + CHUNK]), keys[a : a + CHUNK], countries[a : a + CHUNK])
            for a in range(0, len(rows), CHUNK)]
    atomic_write_bytes(out / "test_simplified.csv", TEST_HEADER + b"".join(body))
    words = np.asarray(store.classes, dtype=object)[np.asarray(store.label)[rows]]
    labels = pd.DataFrame({"key_id": keys, "word": words})
    atomic_write_bytes(out / "test_labels.csv", labels.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return {"store": str(store.root), "fold": fold, "rows": int(len(rows)), "out": str(out)}


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    print(json.dumps(write_holdout(Store(args.store), args.fold, args.out)))
    return 0


def console() -> int:
    """`doodle-holdout`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
