#!/usr/bin/env python3
"""Benchmarks, one JSON object per line on stdout.

    python tools/bench.py prepare|raster|loader|train|submission|app|seq|export|page|all [--quick] [--data DIR]
    python tools/bench.py train --device cuda --size 64 128 --data input/sample --min-drawings 100
    python tools/bench.py load --users 20 --saves 25 [--collected DIR]     (not in `all`: minutes of browsers)

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
    p.add_argument("bench", choices=BENCHES + ["load", "all"])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "quickdraw",
                   help="real Quick Draw drawings (Kaggle CSV + raw ndjson)")
    p.add_argument("--naive", type=Path, default=ROOT.parent / "shared" / "bench",
                   help="folder holding naive_baseline.py")
    p.add_argument("--quick", action="store_true", help="fewer drawings and repeats (smoke run)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--run", type=Path, help="train: a finished run's fold folder, for its whole-run images/s ratio; "
                   "export: the run to export and time; page: the run the page serves")
    p.add_argument("--store", type=Path, help="export: the run's store, when not at its config's data.store")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="train: auto = the CPU, then CUDA when there is one; cpu or cuda = only that one")
    p.add_argument("--size", type=int, nargs="+", default=[64], help="train: image sizes in px (default 64)")
    p.add_argument("--steps", type=int, help="train: timed steps per loop (default 25 CPU / 300 CUDA; --quick 6 / 50)")
    p.add_argument("--batch-size", type=int, help="train: batch size (default 128 CPU / 512 CUDA)")
    p.add_argument("--min-drawings", type=int, default=120,
                   help="train: use the classes of --data with at least this many drawings (100 for input/sample)")
    p.add_argument("--users", type=int, default=20, help="load: browser users saving at once")
    p.add_argument("--saves", type=int, default=25, help="load: drawings each user saves")
    p.add_argument("--collected", type=Path, help="load: the collected folder (default: a temporary one)")
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
