"""The pieces that keep DDP ranks in step, checked without a GPU: the agreed time budget, the replica
checksum and the BatchNorm buffer broadcast (two gloo processes under torchrun on this CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from doodle.train.budget import Budget

ROOT = Path(__file__).resolve().parents[2]


def test_budget_decides_on_the_agreed_time_only():
    """over() and fraction() read the value agreed at the last refresh (the max over ranks under DDP),
    refreshed every `every` checks, so every rank takes the same decision at the same step."""
    agreed = []
    b = Budget(1.0, already_spent=0.0, agree=lambda x: agreed.append(x) or 45.0, every=3)
    assert not b.check() and not b.check() and agreed == []  # no refresh before the 3rd check
    assert not b.check() and len(agreed) == 1 and b.fraction() == 0.75  # 45 s of 60 agreed
    b.agree = lambda x: 61.0
    assert not b.over(), "a live clock is never read between refreshes"
    assert b.refresh() == 61.0 and b.over() and b.fraction() == 1.0
    assert not Budget(0.0).check() and Budget(0.0).fraction() == 0.0  # no budget
    resumed = Budget(1.0, already_spent=30.0)
    assert resumed.fraction() == 0.5 and resumed.spent >= 30.0


@pytest.mark.slow
def test_replica_check_and_buffer_sync_across_two_processes(tmp_path):
    """Two gloo ranks (torchrun, tests/train/ddp_worker.py): rank 0's BatchNorm statistics reach rank 1, and a
    weight that differs by 1e-6 on one rank is reported by both."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "DDP_WORKER_OUT": str(tmp_path)}
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "train" / "ddp_worker.py")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in range(2)]
    assert [r["rank"] for r in got] == [0, 1]
    assert [r["buffers"] for r in got] == [0.0, 0.0], "rank 0's running statistics on both ranks"
    assert all("replicas differ" in r["drift"] for r in got), got
