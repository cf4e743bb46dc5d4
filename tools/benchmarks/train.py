"""Training throughput with the real loader vs the same loop fed pre-made tensors (is the model starved?).

ResNet18 at 64 px (CPU here; CUDA too when one is present), the real loader with 2 workers rendering and
augmenting from a store of real drawings. Ratio = real / pre-made; goal >= 0.9.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from doodle import resources
from doodle.config import load_config
from doodle.data import BatchDataset, QuotaSampler, make_loader, make_split
from doodle.engine import TrainState, resolve_precision, train_one_epoch
from doodle.models import build_model
from doodle.prepare import PrepareOptions, prepare
from doodle.store import Store
from doodle.training import build_optimizer, build_scheduler

ROOT = Path(__file__).resolve().parents[2]


def rich_classes(data: Path, min_count: int = 120) -> list[str]:
    out = []
    for p in sorted((data / "train_simplified").glob("*.csv")):
        with open(p, "rb") as f:
            if sum(1 for _ in f) - 1 >= min_count:
                out.append(p.stem)
    return out


def _state(cfg, model, device):
    opt = build_optimizer(cfg, model)
    return TrainState(opt, build_scheduler(cfg, opt), None, resolve_precision(cfg.train.amp, device),
                      channels_last=device.type == "cuda")


def measure(cfg, store, device, steps: int) -> dict:
    split = make_split(store, cfg, 0)
    n = len(split.classes)
    torch.manual_seed(0)
    model = build_model(cfg, n, 3).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    bs = cfg.train.batch_size
    quotas = np.full(n, int(np.ceil(steps * bs / n)))
    sampler = QuotaSampler(split.train_idx, split.targets(store, split.train_idx), n, quotas, bs, seed=0)
    ds = BatchDataset(store, split, cfg, "image", train=True)
    real = make_loader(ds, sampler, cfg.data.num_workers)
    first = ds[next(iter(sampler))]
    premade = [first] * len(sampler)
    out = {}
    for name, loader in (("premade", premade), ("real_loader", real)):
        state = _state(cfg, model, device)
        train_one_epoch(model, premade[:3], state, device, 0, lambda e: e, progress=False)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        r = train_one_epoch(model, loader, state, device, 0, lambda e: e, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[name] = r["train/images"] / (time.perf_counter() - t)
    return out


def run(args):
    classes = rich_classes(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store"
        opts = PrepareOptions(classes=classes, all_known=set(resources.google_classes()))
        prepare([args.data / "train_simplified"], store_path, opts)
        store = Store(store_path)
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        for device in devices:
            cpu = device.type == "cpu"
            sets = ["data.img_size=64", "data.num_workers=2", f"data.store={store_path}",
                    f"train.batch_size={128 if cpu else 512}", "train.amp=auto"]
            cfg = load_config(ROOT / "configs/r18.yaml", sets)
            steps = (6 if args.quick else 25) if cpu else (50 if args.quick else 300)
            r = measure(cfg, store, device, steps)
            yield {"bench": "train", "device": str(device), "model": cfg.model.name, "size": 64,
                   "batch_size": cfg.train.batch_size, "loader_workers": cfg.data.num_workers, "steps": steps,
                   "premade_img_per_s": round(r["premade"], 1), "real_img_per_s": round(r["real_loader"], 1),
                   "ratio": round(r["real_loader"] / r["premade"], 3), "torch_threads": torch.get_num_threads()}
