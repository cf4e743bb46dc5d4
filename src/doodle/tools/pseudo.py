"""Pseudo-label a test set: its confident drawings, with their predicted class, as a training source.

    python tools/pseudo.py outputs/r18_boost outputs/seq_gru --test input/test_simplified.csv \
        --out input/pseudo [--precision 0.95] [--method prob_mean|logit_mean] [--labels key_id,word CSV]

Each run (a run folder, or one fold<k> folder) needs its out-of-fold `val_logits.npz` and the `test_logits.npz`
that `src/predict.py --run RUN --test TEST` writes; several runs are blended as `tools/ensemble.py` does. The
threshold is the lowest top probability at which the blend's validation drawings at or above it are right at
least `--precision` of the time (`doodle.predict.pseudo`); the test drawings that reach it are written, with
their top class as `word`, to `<out>/pseudo.csv` (the test file's own rows and columns, plus `word`), next to
`<out>/_pseudo.json` (name, classes, threshold, counts, runs). Give the folder to `tools/prepare.py --src` with
the training files: its drawings become the source named after the folder, in no validation fold (fold -1), and
a training config can weight or cap them (`data.source_weights`, `data.source_caps`). The test file itself is
left as it is: predict it as usual, and the submission keeps every test key_id. `--labels` (the test drawings'
answers, when known, as for a held-out fold) only reports how many kept labels are right; it never sets the
threshold.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from doodle import cli
from doodle.predict import ensemble as ens
from doodle.predict.pseudo import Threshold, check_target, choose_threshold, confident
from doodle.runs.folder import atomic_write_bytes
from doodle.store.sources import PSEUDO_MANIFEST
from doodle.tools.ensemble import Run, common_folds, load_run_logits, val_member

log = logging.getLogger("pseudo")
CSV_NAME = "pseudo.csv"
BLENDS = list(ens.BLENDERS)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="outputs/<run> or outputs/<run>/fold<k>, with test logits")
    p.add_argument("--test", type=Path, default=Path("input/test_simplified.csv"),
                   help="the Kaggle test CSV the runs predicted (key_id, countrycode, drawing)")
    p.add_argument("--out", type=Path, required=True, help="folder for pseudo.csv and _pseudo.json; its name "
                   "is the source's name in the store")
    p.add_argument("--precision", type=float, default=0.95,
                   help="share of kept validation drawings that must be right, in (0, 1] (default 0.95)")
    p.add_argument("--method", choices=BLENDS, default="prob_mean", help="how several runs are blended")
    p.add_argument("--labels", type=Path, help="key_id,word answers of the test drawings: report only")
    return cli.add_debug_flag(p).parse_args(argv)


def blend_val(runs: list[Run], method: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Out-of-fold probabilities of the blend on the folds every run has, their targets and classes."""
    aligned = ens.align_members([val_member(r, common_folds(runs)) for r in runs])
    return ens.blend(aligned, None, method), aligned.target, aligned.classes


def blend_test(runs: list[Run], method: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The blend's test probabilities and key_ids; every run must have test logits of the same classes."""
    if lacking := [r.name for r in runs if r.test is None]:
        raise cli.UserError(f"{lacking[0]} has no test_logits.npz: run src/predict.py --run {lacking[0]} "
                            "--test <the test CSV> first")
    aligned = ens.align_members([r.test for r in runs])
    if aligned.classes != classes:
        raise cli.UserError(f"{runs[0].name}: its test logits have other classes than its validation logits")
    return ens.blend(aligned, None, method), aligned.key_id


def read_test(path: Path, key_id: np.ndarray, where: str) -> pd.DataFrame:
    """The test CSV as text columns, in `key_id` order; its key_ids must be exactly the predicted ones."""
    if not path.is_file():
        raise cli.UserError(f"--test {path} not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"key_id", "drawing"} <= set(df.columns) or "word" in df.columns:
        raise cli.UserError(f"--test {path}: expected an unlabelled Kaggle test CSV (key_id, countrycode, "
                            f"drawing), got columns {list(df.columns)}")
    keys = pd.to_numeric(df["key_id"], errors="coerce")
    if keys.isna().any() or keys.duplicated().any():
        raise cli.UserError(f"--test {path}: key_id column has non-integer or repeated values")
    keys = keys.to_numpy(np.int64)
    missing, extra = np.setdiff1d(keys, key_id), np.setdiff1d(key_id, keys)
    if len(missing) or len(extra):
        raise cli.UserError(f"{where}: the test predictions lack {len(missing)} of the {len(keys)} key_ids of {path}"
                            f"{f' (e.g. {missing[0]})' if len(missing) else ''} and have {len(extra)} others: "
                            f"predictions of another test file?")
    return df.set_index(keys).loc[key_id]


def true_share(kept: pd.DataFrame, labels: Path) -> dict:
    """How many kept pseudo-labels the answers confirm (reporting only)."""
    answers = pd.read_csv(labels, dtype={"key_id": np.int64, "word": str})
    if list(answers.columns) != ["key_id", "word"]:
        raise cli.UserError(f"--labels {labels}: header must be key_id,word")
    truth = answers.set_index("key_id")["word"].str.replace("_", " ").reindex(kept.index)
    right = int((truth == kept["word"]).sum())
    return {"labelled": int(truth.notna().sum()), "right": right, "accuracy": round(right / max(len(kept), 1), 5)}


def write_folder(out: Path, kept: pd.DataFrame, manifest: dict) -> None:
    """pseudo.csv and _pseudo.json, each written atomically; a folder holding anything else is refused."""
    if out.exists() and (foreign := sorted(p.name for p in out.iterdir() if p.name not in (CSV_NAME, PSEUDO_MANIFEST))):
        raise cli.UserError(f"--out {out}: holds {foreign[:3]}, not a pseudo-label folder; choose another folder")
    atomic_write_bytes(out / CSV_NAME, kept.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    atomic_write_bytes(out / PSEUDO_MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    check_target(args.precision)  # before any file is read
    runs = [load_run_logits(p, args.method) for p in args.runs]
    val_probs, target, classes = blend_val(runs, args.method)
    test_probs, test_keys = blend_test(runs, args.method, classes)
    test = read_test(args.test, test_keys, " + ".join(r.name for r in runs))
    chosen: Threshold = choose_threshold(val_probs, target, args.precision)
    rows, labels = confident(test_probs, chosen.threshold)
    kept = test.iloc[rows].assign(word=np.asarray(classes, dtype=object)[labels])
    per_class = kept["word"].value_counts().reindex(classes, fill_value=0)
    manifest = {"name": args.out.name, "classes": classes, **chosen.to_dict(), "method": args.method,
                "runs": [str(p) for p in args.runs], "test": str(args.test), "test_rows": int(len(test)),
                "kept": int(len(kept)), "per_class": {c: int(n) for c, n in per_class.items()},
                "written": datetime.now(UTC).isoformat(timespec="seconds")}
    write_folder(args.out, kept, manifest)
    report = {k: v for k, v in manifest.items() if k not in ("classes", "per_class")}
    if args.labels:
        report["kept_true"] = true_share(kept, args.labels)
    log.info("threshold %.4f: %d of %d validation drawings kept at precision %.4f; %d of %d test drawings "
             "pseudo-labelled -> %s", chosen.threshold, chosen.val_kept, chosen.val_rows, chosen.val_precision,
             len(kept), len(test), args.out / CSV_NAME)
    print(json.dumps(report))
    return 0


def console() -> int:
    """`doodle-pseudo`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
