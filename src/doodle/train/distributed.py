"""Devices and DDP: which device a process uses, the process group, and the collectives training needs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from doodle.errors import UserError

log = logging.getLogger(__name__)



@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_arg: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join the group (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_arg, d.local_rank, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # the current device of every CUDA call, pinned memory and bf16 checks
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return d, device


def resolve_device(arg: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N' -> a device with an index. Under torchrun (world > 1) each process
    takes the GPU of its LOCAL_RANK (modulo the GPUs it can see, for launchers that show one per task)."""
    if arg == "auto":
        arg = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(arg)
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise UserError(f"--device {arg}: CUDA is not available on this machine")
    if world > 1:
        if dev.index is not None:
            raise UserError(f"--device {arg}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                             "pass --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())


def max_over_ranks(device: torch.device):
    """x -> the largest x over all ranks (one all_reduce; every rank must call it at the same point)."""
    def agree(x: float) -> float:
        t = torch.tensor([x], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())
    return agree


def broadcast_object(obj, d: Dist):
    """Rank 0's `obj` on every rank (a no-op without DDP); every rank must call it at the same point."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(model: nn.Module, d: Dist) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank: DDP syncs them only at the start of
    a forward pass, so after an epoch each rank would validate its shard with its own statistics."""
    if d.enabled:
        for b in model.buffers():
            dist.broadcast(b, 0)


def check_replicas(model: nn.Module, d: Dist) -> None:
    """Raise when the ranks' weights differ (DDP replicas must stay identical; drift means a rank-dependent
    learning rate or step): compares one float64 checksum per rank."""
    if not d.enabled:
        return
    with torch.no_grad():
        total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    sums = [torch.zeros_like(total) for _ in range(d.world)]
    dist.all_gather(sums, total)
    values = [float(x) for x in sums]
    if len(set(values)) > 1:
        raise RuntimeError(f"DDP replicas differ after an epoch (weight checksums per rank: {values})")


def gather_eval(out: dict, d: Dist) -> dict:
    """Concatenate every rank's validation arrays (each rank validated a disjoint shard)."""
    if not d.enabled:
        return out
    parts = [None] * d.world
    dist.all_gather_object(parts, {k: out[k] for k in ("logits", "key_id", "target")})
    parts = [p for p in parts if len(p["key_id"])] or parts[:1]  # fewer val drawings than ranks
    return {k: np.concatenate([p[k] for p in parts]) for k in ("logits", "key_id", "target")}
