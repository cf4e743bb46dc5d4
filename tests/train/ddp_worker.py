"""Run by tests/train/test_distributed_helpers.py under `torchrun --nproc_per_node 2` (gloo, CPU): each rank
writes rank<k>.json into $DDP_WORKER_OUT with what it saw of `sync_buffers` and `check_replicas`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from doodle.train.distributed import Dist, check_replicas, sync_buffers

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dist.init_process_group("gloo")
d = Dist(rank, world, int(os.environ["LOCAL_RANK"]))
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
model[1].running_mean.fill_(float(rank))  # each rank's own statistics, as after a DDP epoch
sync_buffers(model, d)
buffers = float(model[1].running_mean.sum())
check_replicas(model, d)  # identical weights: passes
with torch.no_grad():
    model[0].weight[0, 0] += 1e-6 * rank  # one weight drifts on rank 1
try:
    check_replicas(model, d)
    drift = "not detected"
except RuntimeError as e:
    drift = str(e)
Path(os.environ["DDP_WORKER_OUT"], f"rank{rank}.json").write_text(
    json.dumps({"rank": rank, "buffers": buffers, "drift": drift}))
dist.destroy_process_group()
