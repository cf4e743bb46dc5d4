"""Blend runs by key_id, report out-of-fold MAP@3 of each member and of the blend, write a Kaggle CSV.

    python tools/ensemble.py outputs/runA outputs/runB/fold0 [--weights 1,2]
        [--method prob_mean|logit_mean|stack|rerank] [--balance] [--out submissions/NAME.csv]
        [--test input/test_simplified.csv] [--store input/store]

Each argument is a run folder (all its fold<k> subfolders), one fold folder, or an exported .onnx / .doodle
file (its validation fold is predicted from the run's store, --store, and its test logits are the ones
`predict.py --run FILE` wrote next to it). The folds of a run form
one member: their out-of-fold val logits are concatenated, their test logits averaged. Scores use the
folds every member has; the CSV gets a JSON twin (same name, .json) with members, weights and scores.
`--method rerank` (doodle.predict.rerank) re-scores each drawing's candidate classes with LightGBM, using the
store (`--store`, else the first member's data.store) for the class prior and the validation drawings'
metadata, and the test file for the test drawings'; what it cannot reach it leaves out and says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from doodle import cli
from doodle.config import load_resolved
from doodle.errors import nearest_path
from doodle.metrics import summarize
from doodle.predict import ensemble as ens
from doodle.predict import rerank
from doodle.predict.rerank_inputs import Inputs, common_features, inputs_from_store, inputs_from_test_file
from doodle.predict.submission import read_test_key_ids, to_submission, validate_submission, write_submission
from doodle.runs.folder import RunDir, fold_dirs, join_val_logits, load_logits

log = logging.getLogger("ensemble")
METHODS = [*ens.BLENDERS, "stack", "rerank"]
DEFAULT_TEST = Path("input/test_simplified.csv")


@dataclass
class Run:
    name: str
    folds: dict[int, dict]  # fold -> val logits member
    test: dict | None  # fold-averaged test member


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="outputs/<run>, outputs/<run>/fold<k> or an exported file")
    p.add_argument("--store", type=Path, help="the store of exported members and of rerank's prior and metadata "
                   "(default: the members' config's data.store)")
    p.add_argument("--weights", help="comma-separated, one per run (default: equal)")
    p.add_argument("--method", choices=METHODS, default="prob_mean")
    p.add_argument("--balance", action="store_true", help="reweight classes so test predictions are uniform")
    p.add_argument("--out", type=Path, help="submission CSV (default: submissions/ensemble_<method>.csv)")
    p.add_argument("--test", type=Path, help=f"Kaggle test CSV for the key_ids (default: {DEFAULT_TEST})")
    p.add_argument("--stack-rows", type=int, default=20_000,
                   help="fit the stacker / reranker on at most this many out-of-fold drawings (0 = all; the "
                   "stacker takes ~1 s per 1,000)")
    p.add_argument("--rerank-k", type=int, default=5, help="rerank: each member's top-K classes are candidates")
    p.add_argument("--rerank-objective", choices=rerank.OBJECTIVES, default="lambdarank")
    p.add_argument("--threads", type=int, default=1, help="rerank: LightGBM threads")
    return cli.add_debug_flag(p).parse_args(argv)


def member_path(path: Path, store: Path | None) -> Path:
    """A run or fold folder as it is; anything else through `predict.exported.member_folder` (an exported file
    predicts its validation fold there). Imported only then: it loads torch and timm (~7 s), which an ensemble
    of run folders never needs."""
    if path.is_dir():
        return path
    from doodle.predict.exported import member_folder

    return member_folder(path, store)


def load_run_logits(path: Path, fold_method: str) -> Run:
    """Val logits of every fold, and the folds' test logits combined into one member (all or none)."""
    dirs = fold_dirs(path, marker=None)
    if not dirs:
        raise cli.UserError(f"{path} is neither a run folder (no fold<k> subfolders) nor a fold<k> folder")
    folds, tests = {}, []
    for k, d in dirs.items():
        val = load_logits(RunDir(d).val_logits)
        if val["target"] is None:
            raise cli.UserError(f"{d / 'val_logits.npz'} has no target (not out-of-fold logits?)")
        folds[k] = {**val, "name": str(d)}
        if RunDir(d).test_logits.is_file():
            tests.append({**load_logits(RunDir(d).test_logits), "name": str(d)})
    if tests and len(tests) < len(dirs):
        lacking = next(d for d in dirs.values() if not (d / "test_logits.npz").is_file())
        raise cli.UserError(f"{lacking / 'test_logits.npz'} not found, while other folds of {path} have one")
    test = None
    if tests:
        aligned = ens.align_members(tests)
        probs = ens.blend(aligned, None, fold_method)
        test = {"name": str(path), "logits": np.log(np.maximum(probs, 1e-12)), "key_id": aligned.key_id,
                "classes": aligned.classes, "target": None}
    return Run(str(path), folds, test)


def val_member(run: Run, folds: list[int]) -> dict:
    """One out-of-fold member: the chosen folds' val logits, concatenated (their key_ids must not overlap)."""
    return {**join_val_logits([run.folds[k] for k in folds], f"folds {folds} of {run.name}"), "name": run.name}


def common_folds(runs: list[Run]) -> list[int]:
    common = sorted(set.intersection(*(set(r.folds) for r in runs)))
    if not common:
        raise cli.UserError("the runs share no fold, so there are no common out-of-fold drawings: "
                            + "; ".join(f"{r.name}: folds {sorted(r.folds)}" for r in runs))
    for r in runs:
        if dropped := sorted(set(r.folds) - set(common)):
            log.warning("%s: folds %s left out of the scores (not in every run)", r.name, dropped)
    return common


def parse_weights(text: str | None, n: int) -> list[float] | None:
    if text is None:
        return None
    try:
        w = [float(x) for x in text.split(",")]
    except ValueError:
        raise cli.UserError(f"--weights {text!r}: expected comma-separated numbers") from None
    ens.normalize_weights(w, n)
    return w


def val_scores(aligned: ens.Aligned, args, weights, extra: Inputs | None = None
               ) -> tuple[dict, np.ndarray, np.ndarray, object]:
    """Scores of the blend on the out-of-fold rows -> (scores, probs, target, stacker / reranker or None).
    `extra`: the reranker's prior and metadata of the validation drawings."""
    target = aligned.target
    if args.method not in ("stack", "rerank"):
        probs = ens.blend(aligned, weights, args.method)
        return {"blend": summarize(probs, target)}, probs, target, None
    probs_list = [ens.softmax(x) for x in aligned.logits]
    rows = np.arange(len(target))
    if 0 < args.stack_rows < len(rows):
        rows = np.sort(np.random.default_rng(0).choice(rows, args.stack_rows, replace=False))
        log.info("fitting on %d of %d out-of-fold rows (--stack-rows)", len(rows), len(target))
    probs_list, target = [p[rows] for p in probs_list], target[rows]
    stacked, model = ens.stack_oof(probs_list, target)
    scores = {"prob_mean": summarize(sum(probs_list) / len(probs_list), target), "rows": int(len(rows))}
    if args.method == "stack":
        return {"blend": summarize(stacked, target), **scores}, stacked, target, model
    extra = (extra or Inputs()).rows(rows)
    probs, model, info = rerank.rerank_oof(probs_list, target, extra.prior, extra.meta, k=args.rerank_k,
                                           objective=args.rerank_objective, threads=args.threads)
    log.info("rerank: %d candidate rows, true class among them for %.4f of the drawings; features %s",
             info["candidate_rows"], info["candidate_recall"], ", ".join(info["features"]))
    scores.update(stack=summarize(stacked, target), rerank=info)
    return {"blend": summarize(probs, target), **scores}, probs, target, model


def rerank_inputs(runs: list[Run], aligned: ens.Aligned, args, test_csv: Path | None) -> tuple[Inputs, Inputs | None,
                                                                                                list[str]]:
    """The reranker's prior and metadata for the validation drawings and (when the members have test logits)
    the test drawings, restricted to what both sides have; the notes say what was left out and why."""
    store = args.store or member_store(runs)
    val = inputs_from_store(store, aligned.key_id, aligned.classes)
    test = None
    if all(r.test is not None for r in runs):
        keys = ens.align_members([r.test for r in runs]).key_id
        test = inputs_from_test_file(store, test_csv, keys, aligned.classes)
    val, test, notes = common_features(val, test)
    for note in notes:
        log.warning("rerank: %s", note)
    return val, test, notes


def member_store(runs: list[Run]) -> Path | None:
    """The first member's data.store (from a fold's config.yaml), as written there (relative: to the cwd)."""
    for r in runs:
        for f in r.folds.values():
            config = Path(f["name"]) / "config.yaml"
            if config.is_file():
                return Path(load_resolved(config)[0].data.store)
    return None


def balance_report(probs: np.ndarray, target: np.ndarray) -> dict:
    """MAP@3 before/after balancing on a class-balanced subset of the out-of-fold rows."""
    idx = ens.balanced_subset(target)
    per_class = len(idx) // len(np.unique(target))
    p, t = probs[idx], target[idx]
    return {"rows": int(len(idx)), "per_class": int(per_class), "before": summarize(p, t),
            "after": summarize(ens.balance(p), t)}


def test_probs(runs: list[Run], args, weights, model, extra: Inputs | None = None
               ) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Blended test probabilities, key_ids and classes; None when no run has test logits."""
    if all(r.test is None for r in runs):
        return None
    if lacking := [r.name for r in runs if r.test is None]:
        raise cli.UserError(f"{lacking[0]} has no test_logits.npz while other members have test logits")
    aligned = ens.align_members([r.test for r in runs])
    if model is None:
        probs = ens.blend(aligned, weights, args.method)
    elif isinstance(model, rerank.Reranker):
        extra = extra or Inputs()
        probs = model.predict([ens.softmax(x) for x in aligned.logits], extra.prior, extra.meta)
    else:
        probs = ens.stack_predict(model, [ens.softmax(x) for x in aligned.logits])
    if args.balance:
        probs = ens.balance(probs)
    return probs, aligned.key_id, aligned.classes


def write_outputs(out: Path, test, report: dict, test_csv: Path | None) -> None:
    probs, key_id, classes = test
    if test_csv is None:
        log.warning("%s not found: validating against the members' own test key_ids", DEFAULT_TEST)
    expected = key_id if test_csv is None else read_test_key_ids(test_csv)
    write_submission(to_submission(probs, key_id, classes), out)
    validate_submission(out, expected, classes)
    report.update(submission=str(out), test_rows=int(len(key_id)))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s (%d rows, validated) and %s", out, len(key_id), out.with_suffix(".json"))


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    if args.store is not None and not (args.store / "store.json").is_file():
        raise cli.UserError(f"--store {args.store}: not a prepared store (no store.json){nearest_path(args.store)}")
    out = args.out or Path(f"submissions/ensemble_{args.method}.csv")
    test_csv = args.test if args.test else (DEFAULT_TEST if DEFAULT_TEST.is_file() else None)
    weights = parse_weights(args.weights, len(args.runs))
    if weights is not None and args.method in ("stack", "rerank"):
        log.warning("--weights are ignored by --method %s (it learns its own)", args.method)
        weights = None
    fold_method = "prob_mean" if args.method in ("stack", "rerank") else args.method
    runs = [load_run_logits(member_path(p, args.store), fold_method) for p in args.runs]
    folds = common_folds(runs)
    aligned = ens.align_members([val_member(r, folds) for r in runs])
    members = [{"name": r.name, "folds": folds, "has_test": r.test is not None,
                **summarize(ens.softmax(x), aligned.target)} for r, x in zip(runs, aligned.logits, strict=True)]
    val_extra, test_extra, notes = (rerank_inputs(runs, aligned, args, test_csv) if args.method == "rerank"
                                    else (None, None, []))
    scores, probs, target, model = val_scores(aligned, args, weights, val_extra)
    if notes:
        scores["rerank"]["notes"] = notes
    report = {"method": args.method, "weights": weights, "members": members, "val_rows": len(aligned.key_id),
              "scores": scores, "prob_correlation": ens.prob_correlation(aligned), "submission": None}
    for m in members:
        log.info("member %s: val/map3 %.4f val/acc1 %.4f", m["name"], m["val/map3"], m["val/acc1"])
    log.info("blend (%s): val/map3 %.4f val/acc1 %.4f", args.method, scores["blend"]["val/map3"],
             scores["blend"]["val/acc1"])
    if args.balance:
        report["balance"] = balance_report(probs, target)
        log.info("balanced val subset: map3 %.4f -> %.4f", report["balance"]["before"]["val/map3"],
                 report["balance"]["after"]["val/map3"])
    test = test_probs(runs, args, weights, model, test_extra)
    if test is None:
        log.warning("no member has test logits: no CSV written; report in %s", out.with_suffix(".json"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    else:
        write_outputs(out, test, report, test_csv)
    print(json.dumps(report))
    return 0


def console() -> int:
    """`doodle-ensemble`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
