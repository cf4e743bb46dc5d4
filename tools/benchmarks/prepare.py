"""prepare: throughput against pandas + json.loads, peak memory at 1x vs 10x input, the shared-data check.

Cases (one JSON dict each):
* `throughput`: prepare(workers=1) of every CSV in <data>/train_simplified next to `pandas.read_csv` +
  `json.loads` of each drawing field of the same files, same process, median of `--repeats` after one
  untimed warm-up of each (numba's cached machine code and the page cache are loaded once per process).
* `memory`: peak RSS of `tools/prepare.py` in a fresh process on the bundled sample's CSVs (1x) and on the
  same rows written 10 times with new key_ids (each class file 10x longer).
* `shared_data`: prepare of <data>/train_simplified + <data>/raw; counts, and per class: kept equals the
  source rows minus that class's rejects and duplicates.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from benchmarks._common import ROOT, median_seconds, prepare_options
from doodle.store.prepare import prepare

SAMPLE = ROOT / "input" / "sample"
KEY_STEP = 10**17  # copy k of a drawing gets key_id + k * KEY_STEP: unique, and below 2**63 for k < 10
QUICK_FILES = 40


def throughput(data: Path, quick: bool, repeats: int, tmp: Path) -> dict:
    files = sorted((data / "train_simplified").glob("*.csv"))[: QUICK_FILES if quick else None]
    n_rows = sum(len(pd.read_csv(f, usecols=["key_id"])) for f in files)

    def naive():
        for f in files:
            for s in pd.read_csv(f)["drawing"]:
                json.loads(s)

    def ours():
        summary = prepare(files, tmp / "store", prepare_options(), workers=1)
        assert summary["rows"] == n_rows, (summary["rows"], n_rows)

    t_naive, t_ours = median_seconds(naive, repeats), median_seconds(ours, repeats)
    return {"case": "throughput", "files": len(files), "drawings": n_rows, "repeats": repeats,
            "prepare_drawings_per_s": round(n_rows / t_ours), "naive_drawings_per_s": round(n_rows / t_naive),
            "prepare_s": round(t_ours, 4), "naive_s": round(t_naive, 4), "ratio": round(t_naive / t_ours, 2),
            "goal_ratio": 2.0}


def _replicate(src: Path, dst: Path, copies: int) -> int:
    """Each sample CSV written with every row `copies` times (new unique key_ids); returns the row count."""
    dst.mkdir(parents=True)
    n = 0
    for path in sorted(src.glob("*.csv")):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        k = rows[0].index("key_id")
        with open(dst / path.name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(rows[0])
            for c in range(copies):
                for r in rows[1:]:
                    w.writerow(r[:k] + [str(int(r[k]) + c * KEY_STEP)] + r[k + 1:])
                    n += 1
    return n


# Runs tools/prepare.py in this interpreter, then records the process's peak RSS. VmHWM belongs to the
# process's own memory map; ru_maxrss of a child would also count the RSS of this (large) parent at fork.
_PEAK_WRAPPER = """
import runpy, sys
report, sys.argv = sys.argv[1], sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
open(report, "w").write(peak)
"""


def _peak_rss_mib(src: Path, out: Path) -> tuple[float, float]:
    """Run tools/prepare.py on `src` in a fresh process; its peak RSS (MiB) and wall seconds."""
    report = out.parent / f"{out.name}.peak_kib"
    cmd = [sys.executable, "-c", _PEAK_WRAPPER, str(report), str(ROOT / "tools" / "prepare.py"), "--src", str(src),
           "--out", str(out), "--classes", str(SAMPLE / "classes.txt")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        if subprocess.run(cmd, stdout=log, stderr=log, env=env).returncode:
            raise RuntimeError(f"tools/prepare.py failed on {src}; see {out}.log")
    return int(report.read_text()) / 1024, time.perf_counter() - t0


def memory(tmp: Path) -> dict:
    rows, peak, secs = {}, {}, {}
    for copies in (1, 10):
        src = tmp / f"in{copies}x"
        rows[copies] = _replicate(SAMPLE / "train_simplified", src, copies)
        peak[copies], secs[copies] = _peak_rss_mib(src, tmp / f"out{copies}x")
    return {"case": "memory", "drawings_1x": rows[1], "drawings_10x": rows[10],
            "peak_rss_mib_1x": round(peak[1], 1), "peak_rss_mib_10x": round(peak[10], 1),
            "seconds_1x": round(secs[1], 2), "seconds_10x": round(secs[10], 2),
            "ratio": round(peak[10] / peak[1], 3), "goal_ratio_max": 1.3}


def _source_counts(files: list[Path]) -> Counter:
    """Rows per class (file stem = word) in the source files: every line but a CSV's header, blank ones too."""
    counts: Counter = Counter()
    for p in files:
        data = p.read_bytes()
        counts[p.stem] += data.count(b"\n") + (bool(data) and not data.endswith(b"\n")) - (p.suffix == ".csv")
    return counts


def shared_data(data: Path, quick: bool, tmp: Path) -> dict:
    files = [p for sub, ext in (("train_simplified", "csv"), ("raw", "ndjson"))
             for p in sorted((data / sub).glob(f"*.{ext}"))[: QUICK_FILES if quick else None]]
    t0 = time.perf_counter()
    s = prepare(files, tmp / "shared_store", prepare_options(), workers=1)
    seconds = time.perf_counter() - t0
    expected = _source_counts(files)
    with open(tmp / "shared_store" / "rejects.csv", newline="") as f:
        for r in csv.DictReader(f):
            expected[Path(r["file"]).stem] -= 1
    mismatched = sorted(w for w in expected if expected[w] != s["per_class"].get(w, 0))
    return {"case": "shared_data", "files": len(files), "rows": s["rows"], "kept": s["kept"],
            "rejected": s["rejected"], "duplicates": s["duplicates"], "filtered": s["filtered"],
            "per_reason": s["per_reason"], "classes": len(s["per_class"]),
            "per_class_matches_source": not mismatched, "mismatched_classes": mismatched[:10],
            "seconds": round(seconds, 2), "drawings_per_s": round(s["rows"] / seconds), "goal_rejected": 0}


def run(args) -> Iterator[dict]:
    data = Path(args.data)
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        yield {"bench": "prepare", **throughput(data, args.quick, repeats, tmp)}
        yield {"bench": "prepare", **memory(tmp)}
        yield {"bench": "prepare", **shared_data(data, args.quick, tmp)}
