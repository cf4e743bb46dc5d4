"""Training: resampling arithmetic, the quota sampler and its DDP sharding, a shrunk end-to-end run,
kill + resume equality, a 2-process gloo run, and the CLI's one-line errors."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import command_module as load_tool
from helpers import shrink

from doodle.runs.folder import load_checkpoint, load_logits
from doodle.train.data import QuotaSampler, boosted_quotas

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1",
       "OMP_NUM_THREADS": "1"}


def tiny_args(store: Path, out: Path, *extra: str) -> list[str]:
    """The real demo config, shrunk: 32 px, 4 drawings per class, 2 epochs, CPU, no workers."""
    return ["--cfg", str(ROOT / "configs/demo.yaml"), "--fold", "0", "--out", str(out), "--no-progress",
            "--device", "cpu", *shrink(store, 2, "train.deterministic=true"), *extra]


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def test_boosted_quotas_follow_the_formula():
    q = boosted_quotas(100, np.array([0.0, 0.5, 1.0, np.nan, 0.9]), floor=0.25)
    assert q.tolist() == [125, 75, 25, 125, 35]


def test_quota_sampler_counts_replacement_and_determinism():
    idx = np.arange(100)
    targets = np.repeat([0, 1, 2], [50, 30, 20])
    s = QuotaSampler(idx, targets, 3, quotas=[10, 30, 45], batch_size=5, seed=3)
    s.set_epoch(0)
    e0 = s.epoch_indices()
    assert len(e0) == 85 and len(list(s)) == len(s) == 17
    counts = np.bincount(targets[e0], minlength=3)
    assert counts.tolist() == [10, 30, 45]
    assert len(set(e0[targets[e0] == 0])) == 10  # enough drawings: no repeats
    assert len(set(e0[targets[e0] == 2])) <= 20  # 45 asked of 20: with replacement
    s.set_epoch(0)
    assert np.array_equal(s.epoch_indices(), e0)
    s.set_epoch(1, quotas=[1, 1, 1])
    assert len(s.epoch_indices()) == 5  # padded to a whole batch


def test_quota_sampler_shards_ranks_without_overlap():
    idx = np.arange(1000)
    targets = np.arange(1000) % 4
    shards = [QuotaSampler(idx, targets, 4, [100, 50, 25, 12], 8, seed=1, rank=r, world_size=3) for r in range(3)]
    batches = [list(s) for s in shards]
    assert len({len(b) for b in batches}) == 1  # every rank runs the same number of steps
    epoch = shards[0].epoch_indices()
    flat = [np.concatenate(b) for b in batches]
    positions = [np.arange(len(epoch)).reshape(-1, 8)[r::3].ravel() for r in range(3)]
    for r in range(3):
        assert np.array_equal(flat[r], epoch[positions[r]])
    assert sorted(np.concatenate(positions).tolist()) == list(range(len(epoch)))


def test_train_predict_end_to_end(kaggle_store, tmp_path):
    train = load_tool(ROOT / "src/train.py")
    assert train.main(tiny_args(kaggle_store, tmp_path / "out")) == 0
    run = tmp_path / "out/demo/fold0"
    for name in ("config.yaml", "train.log", "metrics.csv", "quotas.csv", "summary.json", "val_logits.npz",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"train/loss", "val/map3", "val/acc1", "val/loss"} <= set(rows[0])
    val = load_logits(run / "val_logits.npz")
    assert val["logits"].shape == (len(val["key_id"]), 27) and len(val["classes"]) == 27
    assert val["target"].max() < 27 and len(set(val["key_id"].tolist())) == len(val["key_id"])
    best = load_checkpoint(run / "checkpoints/best.pt", val["classes"])
    assert best["config"]["data"]["img_size"] == 32
    predict = load_tool(ROOT / "src/predict.py")
    sub = tmp_path / "sub.csv"
    assert predict.main(["--run", str(run), "--test", str(ROOT / "input/sample/test_simplified.csv"),
                         "--labels", str(ROOT / "input/sample/test_labels.csv"), "--out", str(sub),
                         "--device", "cpu"]) == 0
    lines = sub.read_text().splitlines()
    assert lines[0] == "key_id,word" and len(lines) == 271
    assert all(len(ln.split(",")[1].split(" ")) == 3 for ln in lines[1:])


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(ROOT / "src/train.py"), *args], env=ENV, capture_output=True, text=True,
                          timeout=600, **kw)


def _rows(path: Path) -> int:
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([PY, str(ROOT / "src/train.py"), *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """SIGKILL `proc` as soon as `ready()` turns true (polled every 5 ms); False if it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _writing(path: Path):
    """An event: the atomic writer's temp file for `path` exists (the checkpoint is being written)."""
    return lambda: any(path.parent.glob(f".{path.name}.*.tmp"))


def _kill_and_resume(args: list[str], run: Path) -> int:
    """Kill a run three times (as epoch 1's last.pt is being written; as soon as epoch 1 has been validated
    again; right after epoch 2's last.pt is in place, i.e. as epoch 3 starts), resuming after each kill, then
    let it finish. Every kill waits on an event in the run folder, never on a fixed delay. Returns the kills."""
    metrics, last = run / "metrics.csv", run / "checkpoints/last.pt"

    def after_epoch(k):
        return lambda: _rows(metrics) >= k and last.exists() and int(load_checkpoint(last)["epoch"]) >= k

    plan = [lambda: last.exists() and _writing(last)(), lambda: _rows(metrics) >= 2, after_epoch(3)]
    kills = 0
    for i, ready in enumerate(plan):
        kills += _kill_when(_start(args + (["--resume"] if i else [])), ready)
        load_checkpoint(last)  # never half-written, whatever the moment of the kill
    done = _run(args + ["--resume"])
    assert done.returncode == 0, done.stderr[-2000:]
    return kills


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights_and_metrics(kaggle_store, tmp_path):
    """SIGKILL while a checkpoint is being written, right after a validation and as an epoch starts, --resume
    each time: the run ends exactly as one never killed (CPU, deterministic mode). One run carries every piece of
    state a resume must restore: EMA (its warm-up counts optimiser steps), a time budget (the plan is probed once
    and kept in the checkpoint; the clock carries on) and train.swa_last (the running average and its count,
    killed inside the averaging window, epochs 1-3 of 4). Raw, EMA and averaged weights are compared tensor for
    tensor in last.pt, swa.pt and best.pt, and metrics.csv row for row."""
    import torch

    extra = ["--set", "train.epochs=4", "train.ema=true", "train.ema_decay=0.99", "train.max_minutes=30",
             "train.swa_last=3"]
    ref = _run(tiny_args(kaggle_store, tmp_path / "ref", *extra))
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    run, ref_run = out / "demo/fold0", tmp_path / "ref/demo/fold0"
    assert _kill_and_resume(tiny_args(kaggle_store, out, *extra), run) >= 2
    a, b = load_checkpoint(ref_run / "checkpoints/last.pt"), load_checkpoint(run / "checkpoints/last.pt")
    assert a["step"] == b["step"] > 0
    assert int(a["swa"]["n_averaged"]) == int(b["swa"]["n_averaged"]) == 3
    for part in ("model", "ema", "swa"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    for name in ("swa.pt", "best.pt"):
        x, y = load_checkpoint(ref_run / "checkpoints" / name), load_checkpoint(run / "checkpoints" / name)
        for k in x["model"]:
            assert torch.equal(x["model"][k], y["model"][k]), (name, k)
    assert not all(torch.equal(a["model"][k], a["ema"][k]) for k in a["model"]), "EMA weights are the raw ones"
    assert not all(torch.equal(a["model"][k], a["swa"][f"module.{k}"]) for k in a["model"]), "average == raw"
    rows = read_metrics(run / "metrics.csv")
    assert rows == read_metrics(ref_run / "metrics.csv")
    assert {r["val/weights"] for r in rows} <= {"raw", "ema", "swa"} and all(r["val_ema/map3"] != "nan" for r in rows)
    assert [r["val_swa/map3"] == "nan" for r in rows] == [True, False, False, False]
    plans = [ln.split("plan: ", 1)[1] for ln in (run / "train.log").read_text().splitlines() if "plan: " in ln]
    assert len(plans) >= 3 and len(set(plans)) == 1, "a resumed run keeps the plan it was probed with"
    with open(run / "metrics.csv", newline="") as f:
        clock = [float(r["time/seconds"]) for r in csv.DictReader(f)]
    assert clock == sorted(clock), "the budget's clock carries on across kills"


@pytest.mark.slow
def test_two_process_gloo_run(kaggle_store, tmp_path):
    """Two ranks under torchrun with a time budget that shapes the schedule: the ranks agree on the clock
    every step (log_every=1), so their weights stay identical (train.py raises otherwise), the epoch's
    training metrics count both ranks' drawings, and validation gathers both shards."""
    torchrun = Path(PY).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(ROOT / "src/train.py"),
           *tiny_args(kaggle_store, tmp_path / "ddp", "--set", "train.epochs=1", "--set", "train.max_minutes=30",
                      "--set", "train.log_every=1")]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "ddp/demo/fold0"
    rows = read_metrics(run / "metrics.csv")
    assert len(rows) == 1  # written once, by rank 0
    assert int(rows[0]["train/images"]) >= 27 * 4, "both ranks' share of the epoch (4 per class, 27 classes)"
    val = load_logits(run / "val_logits.npz")
    assert len(set(val["key_id"].tolist())) == len(val["key_id"]) == 27 * 3  # both ranks' shards gathered
    assert "world_size: 2" in (run / "config.yaml").read_text()


@pytest.mark.slow
def test_two_process_run_stops_together_when_the_budget_is_spent(kaggle_store, tmp_path):
    """A budget spent after the first step: every rank stops at the same step (no rank left waiting in an
    all-reduce), validates, and the run ends cleanly after that epoch."""
    torchrun = Path(PY).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(ROOT / "src/train.py"),
           *tiny_args(kaggle_store, tmp_path / "ddp", "--set", "train.epochs=3", "--set", "train.max_minutes=0.0001",
                      "--set", "train.log_every=1")]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_metrics(tmp_path / "ddp/demo/fold0/metrics.csv")
    assert len(rows) == 1 and rows[0]["train/steps"] == "1"
    assert "time budget of 0.0 min spent after epoch 0" in res.stderr + res.stdout


@pytest.mark.parametrize("extra, message", [
    (["--set", "train.lrr=1"], "unknown config key 'train.lrr'"),
    (["--fold", "9"], "--fold 9 out of range"),
    (["--set", "data.classes=[]"], "empty"),
    (["--set", "data.store=/nonexistent/store"], "not a prepared store"),
    (["--set", "model.name=resnet181"], "unknown model 'resnet181'"),
], ids=["key", "fold", "classes", "store", "model"])
def test_cli_errors_are_one_line(kaggle_store, tmp_path, capsys, extra, message):
    """Each mistake ends in one `error: ...` line and exit status 2, no traceback. The console entry point runs
    in-process (a Python start-up with torch costs ~10 s a case); the first case also goes through
    `python src/train.py` itself."""
    from doodle import cli
    from doodle.train import console

    args = tiny_args(kaggle_store, tmp_path / "err", *extra)
    if extra[0] == "--fold":
        args[args.index("--fold") + 1] = extra[1]
        args = args[:-2]
    results = [(cli.run(console.main, args), capsys.readouterr().err)]
    if extra[0] == "--set" and extra[1] == "train.lrr=1":
        res = _run(args)
        results.append((res.returncode, res.stderr))
    for code, err in results:
        assert code == 2, (extra, err[-1500:])
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, (extra, last)
        assert "Traceback" not in err


def test_predict_keeps_rows_with_broken_drawings(kaggle_store, tmp_path):
    """A test row whose drawing is broken still gets a prediction (blank canvas) and is listed in the rejects."""
    train = load_tool(ROOT / "src/train.py")
    assert train.main(tiny_args(kaggle_store, tmp_path / "out", "--set", "train.epochs=1")) == 0
    test = tmp_path / "test.csv"
    good = (ROOT / "input/sample/test_simplified.csv").read_text().splitlines()[:4]
    test.write_text("\n".join(good + ['123,US,"[[[1, 2], [3]]]"', 'abc,US,"[[[1, 2], [3, 4]]]"']) + "\n")
    predict = load_tool(ROOT / "src/predict.py")
    sub = tmp_path / "sub.csv"
    run = tmp_path / "out/demo/fold0"
    assert predict.main(["--run", str(run), "--test", str(test), "--out", str(sub), "--device", "cpu",
                         "--tta", "flip", "--workers", "2"]) == 0
    keys = [ln.split(",")[0] for ln in sub.read_text().splitlines()[1:]]
    assert len(keys) == 4 and "123" in keys and "abc" not in keys
    rejects = (run / "predict_rejects.csv").read_text().splitlines()
    reasons = sorted(r.split(",")[3] for r in rejects[1:])
    assert reasons == ["bad_key_id", "length_mismatch"]
