"""Rebuild the bundled sample input/sample/ from the shared Quick, Draw! copy (run once; output committed).

    python tools/make_sample.py --src ../shared/data/quickdraw --out input/sample

Takes the classes that have at least 120 Google-simplified drawings there (27 of them), and per class:
`--train` drawings into train_simplified/<word>.csv, `--test` other drawings into one unlabelled
test_simplified.csv (Kaggle's test format) with their answers in test_labels.csv, and `--raw` raw timed
drawings (not among the others) into raw/<word>.ndjson. Drawings are chosen by a fixed hash of key_id.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from doodle.store.format import fold_of


def order(keys: list[int]) -> np.ndarray:
    return np.lexsort((np.array(keys), fold_of(np.array(keys, np.int64), 1_000_003)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--src", type=Path, default=Path("../shared/data/quickdraw"))
    p.add_argument("--out", type=Path, default=Path("input/sample"))
    p.add_argument("--min-count", type=int, default=120)
    p.add_argument("--train", type=int, default=100)
    p.add_argument("--test", type=int, default=10)
    p.add_argument("--raw", type=int, default=8)
    args = p.parse_args(argv)
    (args.out / "train_simplified").mkdir(parents=True, exist_ok=True)
    (args.out / "raw").mkdir(parents=True, exist_ok=True)
    test_rows, labels, classes = [], [], []
    for path in sorted((args.src / "train_simplified").glob("*.csv")):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if len(rows) < args.min_count:
            continue
        word = path.stem
        classes.append(word)
        rows = [rows[i] for i in order([int(r["key_id"]) for r in rows])]
        train, test = rows[: args.train], rows[args.train : args.train + args.test]
        with open(args.out / "train_simplified" / path.name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(train)
        test_rows += [{"key_id": r["key_id"], "countrycode": r["countrycode"], "drawing": r["drawing"]} for r in test]
        labels += [{"key_id": r["key_id"], "word": word} for r in test]
        used = {int(r["key_id"]) for r in train + test}
        raw_path = args.src / "raw" / f"{word}.ndjson"
        raws = [ln for ln in raw_path.read_text().splitlines() if int(json.loads(ln)["key_id"]) not in used]
        raws = [raws[i] for i in order([int(json.loads(ln)["key_id"]) for ln in raws])][: args.raw]
        (args.out / "raw" / f"{word}.ndjson").write_text("".join(ln + "\n" for ln in raws))
    for name, rows in (("test_simplified.csv", test_rows), ("test_labels.csv", labels)):
        with open(args.out / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    (args.out / "classes.txt").write_text("".join(c + "\n" for c in classes))
    print(f"{len(classes)} classes, {len(test_rows)} test rows -> {args.out}")
    return 0


def console() -> int:
    """`doodle-make-sample`."""
    return main()


if __name__ == "__main__":
    sys.exit(console())
