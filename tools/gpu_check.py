#!/usr/bin/env python3
"""One command for the day a GPU is lent (issue #15): `bash tools/gpu_check.sh` (which runs this file).

Steps, each reported as one JSON line on stdout (and in OUT/results.jsonl), each with a timeout; a step that
fails puts its error in its line and the next step still runs; the last line is the verdict and the exit status
is 1 when any step failed:

  env     python, torch, CUDA device, bf16 support (fails without CUDA)
  pytest  `pytest -m gpu` over the test files that mark tests gpu: bf16 and fp16 + GradScaler training steps,
          channels_last, torch.compile, predict parity CPU vs GPU (tests/train/test_gpu_train.py,
          tests/predict/test_gpu_predict.py)
  bench   `tools/bench.py train --device cuda --size 64 128` on the bundled sample: real loader, ready tensors
          and a plain timm loop
  train   prepare the bundled sample, then a 3-minute `configs/r18_boost.yaml` run on CUDA: val MAP@3,
          images/s and the epoch plan

--cpu-dry-run runs the same steps on the CPU, shrunk to seconds (CUDA hidden, the gpu tests skipped), so the
orchestration can be tested anywhere (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "input" / "sample"
STEPS = ["env", "pytest", "bench", "train"]
# seconds per step: their sum (~8.3 min) bounds a whole check on a GPU; a run usually ends well before
TIMEOUTS = {"env": 20, "pytest": 140, "bench": 90, "prepare": 30, "train": 220}
DRY_TIMEOUTS = dict.fromkeys(TIMEOUTS, 900)
TRAIN_MINUTES = 3


def gpu_test_files() -> list[str]:
    """The test files that mark tests `gpu`: pytest collects only these, so a test module whose imports are
    missing on the GPU machine (streamlit, playwright, ...) cannot stop the gpu tests from running."""
    return sorted(str(f.relative_to(ROOT)) for f in (ROOT / "tests").rglob("test_*.py")
                  if "mark.gpu" in f.read_text(errors="replace"))

ENV_PROBE = """
import json, platform, sys
out = {"python": platform.python_version()}
try:
    import torch
    out.update(torch=torch.__version__, cuda=torch.cuda.is_available())
    if out["cuda"]:
        out.update(device_name=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                   bf16=torch.cuda.is_bf16_supported(including_emulation=False),
                   cudnn=torch.backends.cudnn.version(), gpus=torch.cuda.device_count())
    import timm
    import doodle.train.engine  # the project imports where the check runs
    out["timm"] = timm.__version__
finally:
    print(json.dumps(out))
"""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tools/gpu_check.sh", description=__doc__.splitlines()[0],
                                epilog="On a lent GPU: bash tools/gpu_check.sh --out $OUT (logs and results.jsonl "
                                       "come back under OUT).")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="the same steps on the CPU, shrunk to seconds (CUDA hidden; the gpu tests skip)")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check",
                   help="folder for results.jsonl and each step's log (default outputs/gpu_check)")
    p.add_argument("--only", default=",".join(STEPS), help=f"comma list of steps to run (default {','.join(STEPS)})")
    p.add_argument("--timeout", action="append", default=[], metavar="STEP=SECONDS",
                   help=f"override a step's timeout (defaults {TIMEOUTS}; train's includes nothing of prepare's)")
    p.add_argument("--keep-work", action="store_true", help="keep the store and run folder (a temporary folder)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.only if s not in STEPS]
    if bad:
        p.error(f"--only: unknown step(s) {bad}; steps are {STEPS}")
    args.timeouts = dict(DRY_TIMEOUTS if args.cpu_dry_run else TIMEOUTS)
    for item in args.timeout:
        step, _, seconds = item.partition("=")
        if step not in args.timeouts:
            p.error(f"--timeout {item}: step is one of {sorted(args.timeouts)}")
        try:
            args.timeouts[step] = float(seconds)
        except ValueError:
            p.error(f"--timeout {item}: seconds must be a number")
    return args


class Check:
    """Runs the steps' commands (each in its own process group, killed whole on timeout) and prints their lines."""

    def __init__(self, args, work: Path):
        self.args, self.work, self.out = args, work, args.out
        self.dry = args.cpu_dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                              os.environ.get("PYTHONPATH")])),
                    "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
        if self.dry:
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is a CPU run even on a machine with a GPU
        self.results: list[dict] = []

    def command(self, name: str, cmd: list[str], log: Path, timeout: float, append: bool = False) -> dict:
        """Run `cmd` from the repository root, stdout and stderr into `log`: rc, seconds, timed_out, output."""
        t = time.perf_counter()
        with open(log, "a" if append else "w") as f:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                rc, timed_out = proc.wait(timeout=timeout), False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the step's whole process group (loader workers, compilers)
                rc, timed_out = proc.wait(), True
        text = log.read_text(errors="replace")
        return {"rc": rc, "seconds": time.perf_counter() - t, "timed_out": timed_out, "output": text,
                "error": (f"{name}: timed out after {timeout:g} s" if timed_out else
                          f"{name}: exit status {rc}: {tail(text)}" if rc else None)}

    def report(self, step: str, ok: bool, seconds: float, error: str | None, **fields) -> dict:
        line = {"step": step, "ok": bool(ok and not error), "seconds": round(seconds, 1), **fields}
        if error or not ok:
            line["error"] = error or "failed"
        self.results.append(line)
        text = json.dumps(line, default=str)
        print(text, flush=True)
        with open(self.out / "results.jsonl", "a") as f:
            f.write(text + "\n")
        return line

    def run_step(self, step: str) -> dict:
        t = time.perf_counter()
        try:
            return getattr(self, f"step_{step}")()
        except Exception as e:  # noqa: BLE001  a broken step is reported as that step's failure; the rest go on
            return self.report(step, False, time.perf_counter() - t, f"{step}: {type(e).__name__}: {e}")

    # ---- the steps --------------------------------------------------------------------------------------

    def step_env(self) -> dict:
        r = self.command("env", [sys.executable, "-c", ENV_PROBE], self.out / "env.log", self.args.timeouts["env"])
        facts = last_json(r["output"])
        error = r["error"]
        if not error and not self.dry and not facts.get("cuda"):
            error = "env: CUDA is not available (torch.cuda.is_available() is False)"
        return self.report("env", True, r["seconds"], error, dry_run=self.dry, device=self.device, **facts)

    def step_pytest(self) -> dict:
        xml = self.out / "pytest.xml"
        xml.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", "-v", "-m", "gpu", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={xml}", "-o", "junit_family=xunit1", *gpu_test_files()]
        r = self.command("pytest", cmd, self.out / "pytest.log", self.args.timeouts["pytest"])
        res = junit_results(xml) if xml.exists() else verbose_results(r["output"])
        error = r["error"]
        if not error and not res["tests"]:
            error = "pytest: no gpu-marked test ran"
        if not error and not self.dry and res["skipped"]:
            error = f"pytest: {res['skipped']} gpu test(s) skipped on the GPU: {res['skip_reasons']}"
        return self.report("pytest", True, r["seconds"], error, **res)

    def step_bench(self) -> dict:
        sizes = ["32", "48"] if self.dry else ["64", "128"]
        cmd = [sys.executable, "tools/bench.py", "train", "--device", self.device, "--size", *sizes,
               "--data", str(SAMPLE), "--min-drawings", "100"]
        if self.dry:
            cmd += ["--steps", "2", "--batch-size", "8"]
        r = self.command("bench", cmd, self.out / "bench.log", self.args.timeouts["bench"])
        keep = ("device", "size", "batch_size", "steps", "loader_workers", "plain_img_per_s", "premade_img_per_s",
                "real_img_per_s", "ratio_vs_plain", "ratio")
        rows = [{k: row.get(k) for k in keep} for row in json_lines(r["output"]) if row.get("bench") == "train"]
        error = r["error"]
        if not error and sorted(row["size"] for row in rows) != sorted(int(s) for s in sizes):
            error = f"bench: expected one row per size {sizes}, got {len(rows)}"
        return self.report("bench", True, r["seconds"], error, rows=rows)

    def step_train(self) -> dict:
        store, outputs, log = self.work / "store", self.work / "outputs", self.out / "train.log"
        prep = self.command("prepare", [sys.executable, "tools/prepare.py", "--src", str(SAMPLE / "train_simplified"),
                                        str(SAMPLE / "raw"), "--out", str(store)], log, self.args.timeouts["prepare"])
        if prep["error"]:
            return self.report("train", False, prep["seconds"], prep["error"])
        sets = [f"data.store={store}", f"train.max_minutes={TRAIN_MINUTES}"]
        if self.dry:  # as tests/helpers.py shrinks a run: seconds on a CPU
            sets = [f"data.store={store}", "data.img_size=32", "data.per_class=4", "data.val_per_class=3",
                    "train.epochs=1", "train.batch_size=32", "data.num_workers=0", "train.max_minutes=0"]
        cmd = [sys.executable, "src/train.py", "--cfg", "configs/r18_boost.yaml", "--fold", "0", "--device",
               self.device, "--out", str(outputs), "--no-progress", "--set", *sets]
        r = self.command("train", cmd, log, self.args.timeouts["train"], append=True)
        res = run_results(outputs)
        error = r["error"] or (None if "val_map3" in res else "train: no summary.json in the run folder")
        return self.report("train", True, prep["seconds"] + r["seconds"], error,
                           minutes=0 if self.dry else TRAIN_MINUTES, **res)


# ---- reading what the steps left ------------------------------------------------------------------------

def tail(text: str, lines: int = 6, chars: int = 800) -> str:
    """The last non-empty lines of a log (what an error line carries)."""
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-chars:]


def json_lines(text: str) -> list[dict]:
    out = []
    for ln in text.splitlines():
        if ln.startswith("{"):
            try:
                out.append(json.loads(ln))
            except json.JSONDecodeError:
                pass
    return out


def last_json(text: str) -> dict:
    rows = json_lines(text)
    return rows[-1] if rows else {}


def _value(text: str):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def junit_results(xml: Path) -> dict:
    """Counts, each test's outcome, the numbers tests recorded (record_property) and the skip reasons."""
    tests, measured, reasons, failures = {}, {}, set(), {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name")
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (el.get("message") or el.text or "").strip()
                if tag == "skipped":
                    reasons.add(message)
                else:
                    failures[name] = message.splitlines()[0][:400] if message else tag
                break
        tests[name] = outcome
        props = {p.get("name"): _value(p.get("value")) for p in case.iter("property")}
        if props:
            measured[name] = props
    counts = outcome_counts(tests)
    return {**counts, "tests": tests, "measured": measured, "skip_reasons": sorted(reasons), "failures": failures}


def outcome_counts(tests: dict) -> dict:
    return {"passed": 0, "failed": 0, "skipped": 0, "errors": 0,
            **Counter({"error": "errors"}.get(v, v) for v in tests.values())}


def verbose_results(output: str) -> dict:
    """What `pytest -v` printed before it was stopped (no XML then): each finished test's outcome."""
    tests = {}
    for ln in output.splitlines():
        for outcome in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            if f" {outcome}" in ln and "::" in ln:
                tests[ln.split("::")[-1].split(" ")[0]] = outcome.lower()
    counts = outcome_counts(tests)
    return {**counts, "tests": tests, "measured": {}, "skip_reasons": [], "failures": {}}


def run_results(outputs: Path) -> dict:
    """val MAP@3, images/s and the plan of the run under `outputs` (its summary.json and train.log)."""
    summaries = sorted(outputs.glob("*/fold0/summary.json"))
    logs = sorted(outputs.glob("*/fold0/train.log"))
    out = {}
    if logs:
        lines = logs[0].read_text(errors="replace").splitlines()
        out["run"] = str(logs[0].parent)
        out["plan"] = next((ln.split("plan: ", 1)[1] for ln in lines if "plan: " in ln), None)
        out["stopped"] = next((ln.strip() for ln in lines if "time budget of" in ln), None)
    if summaries:
        s = json.loads(summaries[0].read_text())
        out.update({"val_map3": s["val/map3"], "val_acc1": s["val/acc1"], "val_tta": s.get("val/tta"),
                    "best_epoch": s["best_epoch"], "epochs_run": s["epochs_run"], "images_seen": s["images_seen"],
                    "train_images_per_s": s["train_images_per_second"],
                    "wall_images_per_s": round(s["images_seen"] / max(s["wall_seconds"], 1e-9), 1),
                    "wall_seconds": s["wall_seconds"], "n_classes": s["n_classes"], "device": s["device"]})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.jsonl").unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    t = time.perf_counter()
    check = Check(args, work)
    try:
        for step in STEPS:
            if step in args.only:
                check.run_step(step)
    finally:
        if args.keep_work:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r["step"] for r in check.results if not r["ok"]]
    check.report("done", not failed, time.perf_counter() - t, f"failed: {', '.join(failed)}" if failed else None,
                 failed=failed, steps=[r["step"] for r in check.results], out=str(args.out),
                 dry_run=args.cpu_dry_run)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
