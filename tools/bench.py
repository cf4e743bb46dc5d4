#!/usr/bin/env python3
"""Benchmarks, one JSON object per line on stdout.

    python tools/bench.py prepare|raster|loader|train|submission|app|seq|export|page|all [--quick] [--data DIR]
    python tools/bench.py train --device cuda --size 64 128 --data input/sample --min-drawings 100
    python tools/bench.py scale --rows 1M [--test-rows 112199] [--minutes 3] [--keep] [--work DIR] [--from SRC]
    python tools/bench.py load --users 20 --saves 25 [--collected DIR] [--servers 2] [--kills 10]

`scale` (the whole pipeline at N rows, tools/benchmarks/scale.py) and `load` (users saving at once,
tools/benchmarks/load.py) are not part of `all`: they take long.

Each benchmark lives in tools/benchmarks/<name>.py and exposes `run(args) -> iterator of dicts`.
Speed ratios are measured against ../shared/bench/naive_baseline.py in the same process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCHES = ["prepare", "raster", "loader", "train", "submission", "app", "seq", "export", "page"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="doodle benchmarks (JSON lines)")
    p.add_argument("bench", choices=BENCHES + ["scale", "load", "all"])
    p.add_argument("--data", "--from", type=Path, default=ROOT.parent / "shared" / "data" / "quickdraw",
                   help="real Quick Draw drawings (Kaggle CSV + raw ndjson); scale: synthesize's --from")
    p.add_argument("--naive", type=Path, default=ROOT.parent / "shared" / "bench",
                   help="folder holding naive_baseline.py")
    p.add_argument("--quick", action="store_true", help="fewer drawings and repeats (smoke run)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--run", type=Path, help="train: a finished run's fold folder, for its whole-run images/s ratio; "
                   "export: the run to export and time; page: the run the page serves")
    p.add_argument("--store", type=Path, help="export: the run's store, when not at its config's data.store")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="train: auto = the CPU, then CUDA when there is one; cpu or cuda = only that one; "
                   "scale: given to src/train.py and src/predict.py")
    p.add_argument("--size", type=int, nargs="+", default=[64], help="train: image sizes in px (default 64)")
    p.add_argument("--steps", type=int, help="train: timed steps per loop (default 25 CPU / 300 CUDA; --quick 6 / 50)")
    p.add_argument("--batch-size", type=int, help="train: batch size (default 128 CPU / 512 CUDA)")
    p.add_argument("--min-drawings", type=int, default=120,
                   help="train: use the classes of --data with at least this many drawings (100 for input/sample)")
    scale = p.add_argument_group("scale", "the whole pipeline at N rows (see tools/benchmarks/scale.py)")
    scale.add_argument("--rows", help="train rows to synthesize: 20000, 500k, 1M, 49.7M")
    scale.add_argument("--test-rows", default="112199", help="test rows (Kaggle's: 112199)")
    scale.add_argument("--minutes", type=float, default=3.0, help="training budget, train.max_minutes")
    scale.add_argument("--val-per-class", type=int, default=5, help="validation drawings per class (cap)")
    scale.add_argument("--loader-seconds", type=float, default=10.0, help="loader: seconds per image size")
    scale.add_argument("--train-set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                       help="more config overrides for the training run (after the bench's own)")
    scale.add_argument("--work", type=Path, help="work folder, new or empty (default: a temporary folder)")
    scale.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--users", type=int, default=20, help="load: users saving at once")
    p.add_argument("--client", choices=["protocol", "browser"], default="protocol",
                   help="load: users speak Streamlit's websocket protocol (no browser on this machine) or are "
                        "Playwright browser contexts")
    p.add_argument("--saves", type=int, default=25, help="load: drawings each user saves")
    p.add_argument("--collected", type=Path, help="load: the collected folder (default: a temporary one)")
    p.add_argument("--servers", type=int, default=1, help="load: page servers on the one collected folder")
    p.add_argument("--kills", type=int, default=0,
                   help="load: kill -9 the server this many times during saves, then prepare --collected all")
    p.add_argument("--max-minutes", type=float, help="load: start no save after this many minutes (default: none)")
    args = p.parse_args(argv)
    if args.bench == "all":  # each in its own process: benches set thread counts and warm caches
        rest = [f"--data={args.data}", f"--naive={args.naive}", f"--repeats={args.repeats}",
                *(["--quick"] if args.quick else [])]
        return max(subprocess.run([sys.executable, __file__, name, *rest]).returncode for name in BENCHES)
    mod = importlib.import_module(f"benchmarks.{args.bench}")
    for row in mod.run(args):  # every row starts with its "bench" name
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
