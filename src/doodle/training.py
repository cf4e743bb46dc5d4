"""Building blocks the training recipe (src/train.py) calls: devices and DDP, optimiser and schedule,
checkpoint state, the time budget, and the per-epoch records (metrics.csv, quotas.csv, TensorBoard)."""

from __future__ import annotations

import csv
import logging
import os
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from torch import nn

from doodle.config import Config

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
        raise ValueError(f"--device {arg}: CUDA is not available on this machine")
    if world > 1:
        if dev.index is not None:
            raise ValueError(f"--device {arg}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                             "pass --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS is deterministic only with a fixed workspace (read when its handle is made, at the first matmul)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer.lower() not in ("adamw", "sgd", "adam", "lamb", "lion", "rmsprop", "nadamw", "momentum"):
        raise ValueError(f"train.optimizer: {t.optimizer!r} not supported (adamw, sgd, adam, lamb, lion, ...)")
    # timm passes momentum only to optimizers that take one (sgd, momentum, rmsprop here)
    return create_optimizer_v2(model, opt=t.optimizer, lr=t.lr, weight_decay=t.weight_decay,
                               momentum=t.momentum)


class ConstantScheduler:
    """Same interface as timm's schedulers (step(t), state_dict) with an optional linear warmup."""

    def __init__(self, optimizer, lr: float, warmup_t: float = 0.0):
        self.optimizer, self.lr, self.warmup_t = optimizer, lr, warmup_t

    def step(self, t: float) -> None:
        lr = self.lr * min(1.0, (t + 1e-9) / self.warmup_t) if self.warmup_t > 0 else self.lr
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build_scheduler(cfg: Config, optimizer, epochs: int | None = None):
    """timm schedulers driven by a fractional epoch position (`.step(epoch + i / steps)`) over `epochs`
    (the run's planned epochs; default `train.epochs`)."""
    t = cfg.train
    epochs = epochs or t.epochs
    warm = {"warmup_t": t.warmup_epochs, "warmup_lr_init": t.lr * 0.01, "t_in_epochs": True}
    if t.scheduler == "cosine":
        return CosineLRScheduler(optimizer, t_initial=epochs, lr_min=t.lr * 0.01, **warm)
    if t.scheduler == "step":
        return MultiStepLRScheduler(optimizer, decay_t=t.step_epochs or [int(epochs * 0.7)],
                                    decay_rate=t.step_gamma, **warm)
    if t.scheduler == "constant":
        return ConstantScheduler(optimizer, t.lr, t.warmup_epochs)
    raise ValueError(f"train.scheduler: {t.scheduler!r} not one of cosine, step, constant")


class Budget:
    """Wall-clock budget (`train.max_minutes`); also tells the schedule how far along time is.

    `over()` and `fraction()` read the time agreed at the last `refresh()`, never a live clock: under DDP
    `agree` takes the maximum over ranks, and every rank refreshes at the same step (`check()` every
    `every` calls, and at each epoch's end), so all ranks stop at the same step with the same learning
    rate. (Each rank's own clock would stop one rank a step before the others: a hang.)
    """

    def __init__(self, minutes: float, already_spent: float = 0.0, agree=None, every: int = 1):
        self.seconds = minutes * 60.0
        self.start = time.monotonic() - already_spent
        self.agree, self.every, self.calls = agree or (lambda x: x), max(1, every), 0
        self.agreed = already_spent

    @property
    def spent(self) -> float:
        """Seconds on this process's clock (for logs); decisions use `agreed`."""
        return time.monotonic() - self.start

    def refresh(self) -> float:
        """Agree on the time spent; every rank must call this at the same point."""
        self.agreed = float(self.agree(self.spent))
        return self.agreed

    def check(self) -> bool:
        """`over()` after a refresh every `every` calls: the per-step stop test of the training loop."""
        self.calls += 1
        if self.seconds > 0 and self.calls % self.every == 0:
            self.refresh()
        return self.over()

    def over(self) -> bool:
        return self.seconds > 0 and self.agreed >= self.seconds

    def fraction(self) -> float:
        return min(1.0, self.agreed / self.seconds) if self.seconds > 0 else 0.0


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


def rng_state() -> dict:
    """Global RNG states as tensors/ints (checkpoints are loaded weights_only: no numpy objects)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": int(pos), "numpy_gauss": [int(has_gauss), float(gauss)],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         *state["numpy_gauss"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)  # dropout in the sequence models resumes where it was


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def append_csv(path: Path, row: dict) -> None:
    """One row per epoch; the header is written with the first row."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def truncate_csv(path: Path, epochs_kept: int) -> None:
    """On resume, drop rows of epochs after the checkpoint (they will be run again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fields = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(r for r in rows if int(r["epoch"]) < epochs_kept)


def gather_eval(out: dict, d: Dist) -> dict:
    """Concatenate every rank's validation arrays (each rank validated a disjoint shard)."""
    if not d.enabled:
        return out
    parts = [None] * d.world
    dist.all_gather_object(parts, {k: out[k] for k in ("logits", "key_id", "target")})
    parts = [p for p in parts if len(p["key_id"])] or parts[:1]  # fewer val drawings than ranks
    return {k: np.concatenate([p[k] for p in parts]) for k in ("logits", "key_id", "target")}
