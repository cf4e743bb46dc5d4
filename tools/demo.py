#!/usr/bin/env python3
"""`make demo`: the whole pipeline on the bundled sample, each step through its own CLI.

prepare -> train (folds 0 and 1 of configs/demo.yaml) -> predict -> ensemble -> validated submission.
Prints the validation MAP@3, the submission path and how to open the drawing page.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "input" / "sample"


def step(title: str, args: list[str]) -> dict:
    """Run one CLI; stream its stderr (logs, bars); return the JSON it prints last on stdout."""
    print(f"\n==> {title}\n    {' '.join(args)}", flush=True)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit(f"demo: step '{title}' failed with exit code {res.returncode}")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    print(f"    done in {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads(lines[-1]) if lines else {}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default="input/demo_store")
    p.add_argument("--run", default="outputs/demo")
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--minutes", type=float, default=None, help="training budget per fold (default: config's)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    test, labels = str(SAMPLE / "test_simplified.csv"), str(SAMPLE / "test_labels.csv")
    step("prepare the bundled sample", ["tools/prepare.py", "--src", str(SAMPLE / "train_simplified"),
                                        str(SAMPLE / "raw"), "--out", args.store])
    out_root, name = str(Path(args.run).parent), Path(args.run).name
    val, test_scores = {}, {}
    for fold in args.folds:
        extra = ["--set", f"train.max_minutes={args.minutes}"] if args.minutes is not None else []
        val[fold] = step(f"train fold {fold}", ["src/train.py", "--cfg", "configs/demo.yaml", "--fold", str(fold),
                                                "--out", out_root, "--name", name, "--overwrite",
                                                "--set", f"data.store={args.store}", *extra])
        test_scores[fold] = step(f"predict the sample test file with fold {fold}",
                                 ["src/predict.py", "--run", f"{args.run}/fold{fold}", "--test", test,
                                  "--labels", labels])
    sub = f"submissions/{name}_ensemble.csv"
    ens = step("ensemble the folds", ["tools/ensemble.py", args.run, "--out", sub, "--test", test])
    step("validate the submission (dry run of tools/submit.py)",
         ["tools/submit.py", sub, "-m", "demo", "--test", test, "--dry-run"])
    print("\n==> demo finished in %.1f min" % ((time.perf_counter() - t0) / 60))
    for fold, v in val.items():
        print(f"    fold {fold}: validation MAP@3 {v.get('val/map3', float('nan')):.4f}  "
              f"acc@1 {v.get('val/acc1', float('nan')):.4f}   sample test MAP@3 "
              f"{test_scores[fold].get('map3', float('nan')):.4f} (270 unseen drawings)")
    if ens:
        blend = ens["scores"]["blend"]
        print(f"    ensemble of folds {args.folds}: out-of-fold MAP@3 {blend['val/map3']:.4f} on "
              f"{ens['val_rows']} drawings ({ens['method']})")
    print(f"    submission: {sub}")
    print("    open the drawing page: .venv/bin/streamlit run src/app.py  (then http://localhost:8501)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
