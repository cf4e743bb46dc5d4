"""Predict a test file with a finished run: test logits + a single-model Kaggle submission; the body of
`python src/predict.py` (doodle.predict.console parses the arguments first, then calls `predict`).

`--test` may also be a Google ndjson or a folder of drawing files (label files skipped); when the drawings
have words (or `--labels key_id,word CSV` is given) MAP@3 is reported too. The run's own config.yaml and
best.pt are used, never configs/; `--run` may also be an exported `.onnx` or `.doodle` file (its config travels
inside it; what predict writes goes to `<dir>/<stem>-<onnx|doodle>/fold<k>/`). A test row whose drawing cannot be parsed still gets a prediction (from an
empty canvas, so the submission keeps every key_id); such rows are listed in <run>/predict_rejects.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from doodle import cli
from doodle.drawing.batch import Batch, concat_batches
from doodle.drawing.flat import Drawings
from doodle.drawing.strokes import DEFAULT_LIMITS, DrawingError, parse_key_id
from doodle.metrics import accuracy, map_at_k
from doodle.predict.exported import load_model
from doodle.predict.loaded_run import input_files
from doodle.predict.submission import to_submission, write_submission
from doodle.runs.folder import save_logits
from doodle.store.readers import read_file
from doodle.train.data import eval_loaders, fixed_batches
from doodle.train.distributed import resolve_device
from doodle.train.engine import evaluate

log = logging.getLogger("predict")


def usable_key(key_id: str) -> int | None:
    """A rejected row's key_id when it is a valid one (as the readers accept it), else None."""
    try:
        return parse_key_id(key_id)
    except DrawingError:
        return None


def blank_rows(rows: list[tuple[int, int]]) -> Batch:
    """Rows with no strokes for rejected drawings whose key_id is usable: (key_id, line) pairs."""
    n = len(rows)
    blank = Drawings(np.zeros((0, 2), np.uint8), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(n, np.int32))
    return Batch.of(blank, key_id=np.array([k for k, _ in rows], np.int64), word=[None] * n, countrycode=[""] * n,
                    recognized=np.full(n, -1, np.int8), timestamp=[""] * n,
                    line=np.array([ln for _, ln in rows], np.int64), raw=np.zeros(n, bool))


def read_inputs(files: list[Path], reject_log: Path) -> Batch:
    """Every row of the files in memory; rows with a broken drawing but a usable key_id become empty
    drawings (predicted from a blank canvas, so the submission keeps every key_id)."""
    parts, n_bad = [], 0
    with open(reject_log, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "line", "key_id", "reason", "detail"])
        for path in files:
            for batch, rejects in read_file(path, DEFAULT_LIMITS):
                parts.append(batch)
                for r in rejects:
                    w.writerow([str(path), r.line, r.key_id, r.reason, r.detail])
                n_bad += len(rejects)
                blank = [(k, r.line) for r in rejects if (k := usable_key(r.key_id)) is not None]
                if blank:
                    parts.append(blank_rows(blank))
    if n_bad:
        log.warning("%d rows had unusable drawings or ids (see %s); those with a key_id are predicted from an "
                    "empty canvas", n_bad, reject_log)
    merged = concat_batches(parts) if parts else None
    if merged is None or len(merged) == 0:
        raise cli.UserError(f"no drawings could be read from {', '.join(map(str, files))}")
    return merged


def run_predictions(lr, batch: Batch, batch_size: int, tta: str, workers: int) -> np.ndarray:
    """Logits for every row of `batch`, rendered by the training dataset code in DataLoader workers."""
    order = fixed_batches(np.arange(len(batch)), batch_size)
    loaders = eval_loaders(batch, None, lr.cfg, lr.input_kind, order, workers, tta)
    out = evaluate(lr.model, loaders, lr.device, lr.precision, lr.channels_last)
    assert np.array_equal(out["key_id"], batch.key_id), "prediction order lost"
    return out["logits"]


def score(logits, keys, words, classes, labels: Path | None) -> dict:
    """MAP@3 / acc@1 where the true word is known and is one of the model's classes."""
    if labels is not None:
        if not labels.is_file():
            raise FileNotFoundError(f"--labels {labels} not found")
        answers = pd.read_csv(labels, dtype={"key_id": np.int64, "word": str})
        if list(answers.columns) != ["key_id", "word"]:
            raise cli.UserError(f"--labels {labels}: header must be key_id,word")
        lookup = dict(zip(answers.key_id, answers.word.str.replace("_", " "), strict=True))
        words = [lookup.get(int(k)) for k in keys]
    index = {c: i for i, c in enumerate(classes)}
    target = np.array([index.get(w, -1) if w else -1 for w in words])
    known = target >= 0
    if not known.any():
        return {}
    return {"scored": int(known.sum()), "unscored": int((~known).sum()),
            "map3": round(map_at_k(logits[known], target[known]), 5),
            "acc1": round(accuracy(logits[known], target[known]), 5)}


def predict(args: argparse.Namespace) -> int:
    """Predict `args.test` with `args.run` (the arguments parsed by doodle.predict.console)."""
    cli.setup_logging()
    lr = load_model(args.run, resolve_device(args.device))
    lr.run.root.mkdir(parents=True, exist_ok=True)  # an export's output folder is made on first use
    batch = read_inputs(input_files(args.test), lr.run.predict_rejects)
    logits = run_predictions(lr, batch, args.batch_size, args.tta or lr.cfg.val.tta, args.workers)
    keys, words = batch.key_id, batch.word
    _, first = np.unique(keys, return_index=True)
    if len(first) < len(keys):
        log.warning("%d repeated key_ids in %s: keeping the first of each", len(keys) - len(first), args.test)
        first = np.sort(first)
        logits, keys, words = logits[first], keys[first], [words[i] for i in first]
    logits_path = args.logits or lr.run.test_logits
    save_logits(logits_path, logits, keys, lr.classes)
    out = args.out or Path("submissions") / f"{lr.run.run_name}_fold{lr.run.fold}.csv"
    write_submission(to_submission(logits, keys, lr.classes), out)
    result = {"rows": int(len(keys)), "logits": str(logits_path), "submission": str(out),
              **score(logits, keys, words, lr.classes, args.labels)}
    log.info("predicted %d drawings -> %s", len(keys), out)
    print(json.dumps(result))
    return 0

