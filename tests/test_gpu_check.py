"""`bash tools/gpu_check.sh` (issue #15), checked without a GPU through its --cpu-dry-run: every step prints one
JSON line with its figures, a failing step is reported in its line while the next steps still run, and any
failure makes the exit status non-zero. The GPU run itself needs a lent GPU (README "How long training takes")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = {"step", "ok", "seconds"}
KEYS = {
    "env": COMMON | {"python", "torch", "cuda", "dry_run", "device"},
    "pytest": COMMON | {"passed", "failed", "skipped", "errors", "tests", "measured", "skip_reasons", "failures"},
    "bench": COMMON | {"rows"},
    "train": COMMON | {"val_map3", "val_acc1", "best_epoch", "epochs_run", "images_seen", "train_images_per_s",
                       "wall_images_per_s", "plan", "run", "minutes"},
    "done": COMMON | {"failed", "steps", "out", "dry_run"},
}
BENCH_ROW = {"device", "size", "batch_size", "steps", "loader_workers", "plain_img_per_s", "premade_img_per_s",
             "real_img_per_s", "ratio_vs_plain", "ratio"}


def gpu_check(out: Path, *args: str) -> tuple[int, list[dict]]:
    env = {**os.environ, "PY": sys.executable}
    res = subprocess.run(["bash", str(ROOT / "tools/gpu_check.sh"), "--out", str(out), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    lines = [json.loads(ln) for ln in res.stdout.splitlines() if ln.strip()]  # stdout holds nothing else
    assert lines and lines[-1]["step"] == "done", res.stdout + res.stderr[-2000:]
    assert [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()] == lines
    return res.returncode, lines


def test_the_dry_run_reports_every_step(tmp_path):
    rc, lines = gpu_check(tmp_path, "--cpu-dry-run")
    by_step = {ln["step"]: ln for ln in lines}
    assert [ln["step"] for ln in lines] == ["env", "pytest", "bench", "train", "done"]
    for step, line in by_step.items():
        assert KEYS[step] <= set(line), (step, KEYS[step] - set(line), line.get("error"))
        assert line["ok"] and "error" not in line, line
    assert rc == 0
    env, tests, bench, train = (by_step[s] for s in ("env", "pytest", "bench", "train"))
    assert env["dry_run"] and env["device"] == "cpu" and env["cuda"] is False  # CUDA hidden in the dry run
    # on the CPU every gpu test is skipped, each with its reason; on a GPU the real check fails on any skip
    assert tests["skipped"] == len(tests["tests"]) >= 6 and tests["passed"] == tests["failed"] == 0
    assert any("needs CUDA" in r for r in tests["skip_reasons"])
    assert {"test_a_compiled_model_trains", "test_cpu_and_gpu_logits_of_one_run_agree"} <= set(tests["tests"])
    assert [r["size"] for r in bench["rows"]] == [32, 48] and all(set(r) == BENCH_ROW for r in bench["rows"])
    assert all(r["device"] == "cpu" and r["real_img_per_s"] > 0 for r in bench["rows"])
    assert 0 <= train["val_map3"] <= 1 and train["epochs_run"] == 1 and train["plan"].startswith("1 epochs")
    assert {p.name for p in tmp_path.iterdir()} == {"results.jsonl", "env.log", "pytest.log", "pytest.xml",
                                                    "bench.log", "train.log"}


def test_a_failing_step_is_reported_and_the_next_steps_still_run(tmp_path):
    rc, lines = gpu_check(tmp_path, "--cpu-dry-run", "--only", "env,pytest", "--timeout", "env=0.01")
    env, tests, done = lines
    assert env["step"] == "env" and not env["ok"] and "env: timed out after 0.01 s" in env["error"]
    assert tests["step"] == "pytest" and tests["ok"] and tests["skipped"] >= 6  # the step after it still ran
    assert not done["ok"] and done["failed"] == ["env"] and done["steps"] == ["env", "pytest"]
    assert rc == 1


def test_without_cuda_the_real_check_fails_and_says_why(tmp_path):
    """Not a dry run: on this machine (no CUDA) the env step fails, naming CUDA; on a GPU it passes."""
    rc, (env, done) = gpu_check(tmp_path, "--only", "env", "--timeout", "env=600")  # a busy CPU is slow
    assert env["step"] == "env" and env["device"] == "cuda" and not env["dry_run"]
    assert env["ok"] == env["cuda"] and rc == (0 if env["cuda"] else 1)
    if not env["cuda"]:
        assert "CUDA is not available" in env["error"] and done["failed"] == ["env"]


def test_a_step_that_exits_non_zero_is_reported_with_its_output(tmp_path, monkeypatch):
    """A step's command that fails (here the benchmark, asked for classes the sample does not have) puts its exit
    status and the end of its output in the step's line."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "tools"))
    args = gpu_check.parse_args(["--cpu-dry-run", "--out", str(tmp_path)])
    check = gpu_check.Check(args, tmp_path / "work")
    monkeypatch.setattr(gpu_check, "SAMPLE", tmp_path / "no_sample")
    line = check.run_step("bench")
    assert not line["ok"] and line["rows"] == []
    assert line["error"].startswith("bench: exit status 1: ") and "no_sample" in line["error"]
    assert json.loads((tmp_path / "results.jsonl").read_text()) == line
