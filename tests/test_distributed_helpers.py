"""The pieces that keep DDP ranks in step, checked without a GPU: the agreed time budget, the replica
checksum and the BatchNorm buffer broadcast (two gloo processes on this CPU)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from doodle.training import Budget, Dist, check_replicas, sync_buffers


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    d = Dist(rank, 2, rank)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
        model[1].running_mean.fill_(float(rank))  # each rank's own statistics, as after a DDP epoch
        sync_buffers(model, d)
        same_buffers = float(model[1].running_mean.sum())
        check_replicas(model, d)  # identical weights: passes
        with torch.no_grad():
            model[0].weight[0, 0] += 1e-6 * rank  # one weight drifts on rank 1
        try:
            check_replicas(model, d)
            drift = "not detected"
        except RuntimeError as e:
            drift = str(e)
        results.put((rank, same_buffers, drift))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_replica_check_and_buffer_sync_across_two_processes():
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    assert [g[1] for g in got] == [0.0, 0.0], "rank 0's running statistics on both ranks"
    assert all("replicas differ" in g[2] for g in got), got
