"""Full-size rehearsal: the whole pipeline at N rows, each stage the real command in its own process.

    python tools/bench.py scale --rows 1M [--test-rows 112199] [--minutes 3] [--val-per-class 5] [--keep]
        [--work DIR] [--from SRC] [--loader-seconds 10] [--train-set KEY=VALUE ...] [--device auto]

Stages, in order (one JSON line each; a failed stage gets `"ok": false` with its log's tail, and ends the run):
synthesize (`tools/synthesize.py`, Kaggle-shaped data from the real drawings of --from) -> prepare
(`tools/prepare.py --workers 2` on the data folder, as a user runs it: the test CSV and its labels are
skipped with a note) -> first_batch (open the store, fold 0's split, quota sampler, first rendered batch) ->
loader (training batches of 256 drawn uniformly from the whole store, 64 and 128 px) -> train
(`src/train.py --cfg configs/r18_boost.yaml --fold 0` on all 340 classes, 64 px, validation capped at
--val-per-class a class, `train.max_minutes=--minutes`) -> predict (`src/predict.py` on the whole test CSV,
scored with its labels) -> ensemble (`tools/ensemble.py` of two runs: the trained run and a copy of its
logits under another name, because a second training would double the rehearsal's longest stage; the
blend's scores then equal the run's, while the loading, aligning and writing are what two real runs cost) ->
submit (`tools/submit.py --dry-run`, plus this benchmark's own count of every test key_id in the
submission) -> page (the page's Review mode: find and load the run, list its validation mistakes, the store's
key_id index and the first page of drawings, one guess) -> report (`tools/report.py` on the run).

Each line: bench, stage, ok, rows (N, the train rows asked for), seconds (the stage's wall time, Python's
start-up included), a throughput where one means something (`*_per_s`), peak_rss_mb, peak_anon_mb,
processes, disk_mb (bytes the stage's outputs take on disk, as listed by their files' sizes), and the stage's
own figures (prepare's kept / rejected / duplicates / filtered, the run's MAP@3, ...).

Memory: the stage's process and all its descendants (prepare's and the loaders' workers) are sampled every
0.2 s with psutil, and the samples' largest sum is kept: `peak_rss_mb` sums RSS, so pages shared by several
processes (the memory-mapped store, libraries, fork-shared memory) count once per process that maps them,
an upper bound; `peak_anon_mb` sums the anonymous part (RSS less file-backed and shared memory): what the
Python code itself holds, the figure that must not grow with N beyond the arrays a stage needs. A spike
shorter than 0.2 s can be missed. (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` would give only the
largest single descendant, not the sum.)

The work folder (--work, which must be empty or new; default a temporary folder) is removed at the end
unless --keep. `--minutes 0` trains without a time budget: then bound the run with --train-set (the tests
use `train.epochs=1 data.per_class=2 train.adapt=false`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import ROOT
from doodle.tools.synthesize import parse_size

CONFIG = ROOT / "configs" / "r18_boost.yaml"
RUN, COPY = "scale", "scale_copy"
SAMPLE_EVERY_S = 0.2
MB = 1e6


def tree_memory(proc) -> tuple[int, int, int]:
    """(RSS, anonymous RSS, processes) summed over `proc` (a psutil.Process) and all its descendants."""
    import psutil

    rss = anon = n = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    for p in procs:
        try:
            m = p.memory_info()
        except psutil.Error:  # ended between the listing and the reading
            continue
        rss, anon, n = rss + m.rss, anon + m.rss - getattr(m, "shared", 0), n + 1
    return rss, anon, n


def run_command(argv: list[str], cwd: Path, log: Path) -> dict:
    """Run one stage's command, sampling its process tree's memory; its wall time, peaks, exit status and
    the last JSON object it printed on stdout (None if it printed none)."""
    import psutil

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tools")]),
           "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    peak = [0, 0, 0]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True)
        stdout: list[str] = []  # read by a thread: a full stdout pipe would block the stage
        reader = threading.Thread(target=lambda: stdout.extend(proc.stdout), daemon=True)
        reader.start()
        ps = psutil.Process(proc.pid)
        try:
            while proc.poll() is None:
                peak = [max(a, b) for a, b in zip(peak, tree_memory(ps), strict=True)]
                time.sleep(SAMPLE_EVERY_S)
        finally:  # interrupted (Ctrl-C): the stage and its workers end too
            if proc.poll() is None:
                for p in [*ps.children(recursive=True), ps]:
                    with contextlib.suppress(psutil.Error):
                        p.kill()
                proc.wait()
        reader.join()
        out.write("".join(stdout))
    seconds = time.perf_counter() - t0
    found = None
    for line in reversed(stdout):
        if line.lstrip().startswith("{"):
            found = json.loads(line)
            break
    return {"rc": proc.returncode, "seconds": seconds, "peak_rss_mb": round(peak[0] / MB, 1),
            "peak_anon_mb": round(peak[1] / MB, 1), "processes": peak[2], "json": found}


def disk_mb(*paths: Path) -> float:
    """Size of these files and folders (their files' sizes), MB."""
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return round(total / MB, 3)


class Work:
    """The rehearsal's folders under one root."""

    def __init__(self, root: Path):
        self.root = root
        self.data, self.store, self.outputs = root / "data", root / "store", root / "outputs"
        self.subs, self.logs = root / "submissions", root / "logs"
        self.test, self.labels = self.data / "test_simplified.csv", self.data / "test_labels.csv"
        self.fold = self.outputs / RUN / "fold0"
        self.blend = self.subs / "blend.csv"


def train_sets(args, w: Work) -> list[str]:
    return [f"data.store={w.store}", "data.img_size=64", f"data.val_per_class={args.val_per_class}",
            f"train.max_minutes={args.minutes}", *args.train_set]


def stages(args, w: Work) -> Iterator[tuple[str, list[str], list[Path]]]:
    """(stage, command, its outputs) in order; the commands run in the work folder."""
    py, n = sys.executable, str(args.rows_n)
    probe = [py, "-m", "benchmarks._scale_probes"]
    yield "synthesize", [py, str(ROOT / "tools/synthesize.py"), "--out", str(w.data), "--rows", n, "--test-rows",
                         str(args.test_rows_n), "--from", str(args.data), "--no-progress"], [w.data]
    yield "prepare", [py, str(ROOT / "tools/prepare.py"), "--src", str(w.data), "--out", str(w.store),
                      "--workers", "2"], [w.store]
    sets = train_sets(args, w)
    yield "first_batch", [*probe, "first_batch", "--cfg", str(CONFIG), "--set", *sets], []
    yield "loader", [*probe, "loader", "--cfg", str(CONFIG), "--seconds", str(args.loader_seconds), "--set",
                     *sets], []
    yield "train", [py, str(ROOT / "src/train.py"), "--cfg", str(CONFIG), "--fold", "0", "--device", args.device,
                    "--out", str(w.outputs), "--name", RUN, "--no-progress", "--set", *sets], [w.outputs / RUN]
    yield "predict", [py, str(ROOT / "src/predict.py"), "--run", str(w.fold), "--test", str(w.test), "--labels",
                      str(w.labels), "--device", args.device, "--out", str(w.subs / f"{RUN}.csv")], \
        [w.fold / "test_logits.npz", w.fold / "predict_rejects.csv", w.subs / f"{RUN}.csv"]
    yield "ensemble", [py, str(ROOT / "tools/ensemble.py"), str(w.outputs / RUN), str(w.outputs / COPY),
                       "--out", str(w.blend), "--test", str(w.test)], [w.blend, w.blend.with_suffix(".json")]
    yield "submit", [py, str(ROOT / "tools/submit.py"), str(w.blend), "--test", str(w.test), "--dry-run"], []
    yield "page", [*probe, "page", "--outputs", str(w.outputs)], []
    yield "report", [py, str(ROOT / "tools/report.py"), str(w.outputs / RUN)], \
        [w.outputs / RUN / "report.md", w.outputs / RUN / "report"]


def copy_run(w: Work) -> None:
    """The ensemble's second member: the run's logits and config under another name (not retrained)."""
    dst = w.outputs / COPY / "fold0"
    dst.mkdir(parents=True)
    for name in ("config.yaml", "summary.json", "val_logits.npz", "test_logits.npz"):
        shutil.copy2(w.fold / name, dst / name)


def key_id_check(w: Work) -> dict:
    """Every test key_id exactly once in the blend's submission: the counts that say otherwise."""
    test = pd.read_csv(w.test, usecols=["key_id"], dtype={"key_id": np.int64})["key_id"].to_numpy()
    sub = pd.read_csv(w.blend, usecols=["key_id"], dtype={"key_id": np.int64})["key_id"].to_numpy()
    keys, counts = np.unique(sub, return_counts=True)
    return {"submission_rows": int(len(sub)), "test_key_ids": int(len(np.unique(test))),
            "key_ids_missing": int(len(np.setdiff1d(test, keys))), "key_ids_repeated": int((counts > 1).sum()),
            "key_ids_unknown": int(len(np.setdiff1d(keys, test)))}


def figures(stage: str, got: dict | None, r: dict, w: Work) -> dict:
    """The stage's own figures, from the JSON line its command printed (and its files)."""
    got = got or {}
    s = max(r["seconds"], 1e-9)
    if stage == "synthesize":
        return {"test_rows": got.get("test_rows"), "rows_per_s": round(got.get("rows", 0) / s), "bytes": got.get("bytes")}
    if stage == "prepare":
        keys = ("rows", "kept", "rejected", "duplicates", "filtered", "skipped_files", "per_reason")
        return {"rows_read" if k == "rows" else k: got.get(k) for k in keys} | {"rows_per_s": round(got.get("rows", 0) / s)}
    if stage == "train":
        summ = json.loads((w.fold / "summary.json").read_text())
        keys = ("val/map3", "val/acc1", "epochs_run", "images_seen", "train_images_per_second", "n_train", "n_val",
                "n_classes")
        return {k: summ.get(k) for k in keys}
    if stage == "predict":
        return {"test_rows": got.get("rows"), "map3": got.get("map3"), "rows_per_s": round(got.get("rows", 0) / s)}
    if stage == "ensemble":
        return {"val_rows": got.get("val_rows"), "test_rows": got.get("test_rows"),
                "members": len(got.get("members", [])), "member_map3": [m["val/map3"] for m in got.get("members", [])],
                "blend_map3": got.get("scores", {}).get("blend", {}).get("val/map3")}
    if stage == "submit":
        return key_id_check(w)
    if stage == "report":
        return {"figures": len(list((w.outputs / RUN / "report").glob("*.png")))}
    return got


def work_folder(args) -> Path:
    if args.work is None:
        return Path(tempfile.mkdtemp(prefix="doodle-scale-"))
    root = Path(args.work).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SystemExit(f"error: --work {root}: exists and is not an empty folder (it is removed at the end)")
    root.mkdir(parents=True, exist_ok=True)
    return root


def run(args) -> Iterator[dict]:
    args.rows_n = parse_size("--rows", args.rows or "")
    args.test_rows_n = parse_size("--test-rows", args.test_rows)
    w = Work(work_folder(args))
    w.logs.mkdir()
    w.subs.mkdir()
    try:
        for stage, argv, outputs in stages(args, w):
            if stage == "ensemble":
                copy_run(w)
            r = run_command(argv, w.root, w.logs / f"{stage}.log")
            line = {"bench": "scale", "stage": stage, "ok": r["rc"] == 0, "rows": args.rows_n,
                    "seconds": round(r["seconds"], 2), **{k: r[k] for k in ("peak_rss_mb", "peak_anon_mb", "processes")},
                    "disk_mb": disk_mb(*outputs)}
            if r["rc"]:
                tail = (w.logs / f"{stage}.log").read_text()[-1500:]
                yield {**line, "rc": r["rc"], "error": tail}
                return
            yield {**line, **figures(stage, r["json"], r, w)}
    finally:
        if args.keep:
            print(f"kept {w.root}", file=sys.stderr)
        else:
            shutil.rmtree(w.root, ignore_errors=True)
