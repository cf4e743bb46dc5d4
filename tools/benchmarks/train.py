"""Training throughput: our loop with the real loader vs a plain timm loop, in the same process.

- plain: `timm.create_model("resnet18")`, random tensors made once, AdamW, cross-entropy: the fastest a
  training loop can go on this device (nothing to load, nothing to render).
- premade: our `train_one_epoch` fed one ready batch again and again (our loop's own overhead).
- real: our `train_one_epoch` over the real loader (store -> augmentation -> rasteriser), with the loader
  workers the training plan picks for this device (doodle.train.plan).

`ratio_vs_plain` = real / plain (goal >= 0.9); `ratio` = real / premade (is the model starved?).
`--device cpu|cuda` times one device only (default: the CPU, then CUDA when there is one), `--size 64 128`
several image sizes, `--steps` / `--batch-size` override the defaults; `tools/gpu_check.sh` runs it on CUDA at 64 and
128 px on the bundled sample (`--data input/sample --min-drawings 100`).
With `--run outputs/<run>/fold0` it also reports that finished run's images per second of wall time
(validation, checkpoints and start-up included) against the plain loop measured now: `whole_run_ratio`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

from benchmarks._common import ROOT, prepared_store
from doodle.config import load_config
from doodle.models.factory import build_model
from doodle.train.data import BatchDataset, QuotaSampler, make_loader, make_split
from doodle.train.engine import resolve_precision, to_input, train_one_epoch
from doodle.train.optim import build_train_state
from doodle.train.plan import fit_workers, probe


def rich_classes(data: Path, min_count: int = 120) -> list[str]:
    out = []
    for p in sorted((data / "train_simplified").glob("*.csv")):
        with open(p, "rb") as f:
            if sum(1 for _ in f) - 1 >= min_count:
                out.append(p.stem)
    return out


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(n_classes: int, size: int, bs: int, steps: int, device) -> float:
    """Images/s of the plainest timm training loop on random tensors."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=n_classes, in_chans=3).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(bs, 3, size, size, device=device)
    y = torch.randint(0, n_classes, (bs,), device=device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                    enabled=False)
    for i in range(steps + 3):
        if i == 3:
            _sync(device)
            t = time.perf_counter()
        with amp:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * bs / (time.perf_counter() - t)


def ours(cfg, store, device, steps: int) -> dict:
    split = make_split(store, cfg, 0)
    n = len(split.classes)
    torch.manual_seed(0)
    model = build_model(cfg, n, 3).to(device)
    bs = cfg.train.batch_size
    sampler = QuotaSampler(split.train_idx, split.targets(store, split.train_idx), n,
                           np.full(n, int(np.ceil(steps * bs / n))), bs, seed=0)
    ds = BatchDataset(store, split, cfg, "image", train=True)
    first = ds[next(iter(sampler))]
    rates = probe(cfg, model, lambda: ds[next(iter(sampler))], lambda b: to_input(b, device, False),
                  resolve_precision(cfg.train.amp, device), device)
    workers = fit_workers(cfg, device.type, rates)
    out = {"workers": workers}
    for name, loader in (("premade", [first] * len(sampler)), ("real", make_loader(ds, sampler, workers))):
        model, state = build_train_state(cfg, model, "image", device)
        train_one_epoch(model, [first] * 3, state, device, 0, lambda e: e, progress=False)  # warm-up
        _sync(device)
        t = time.perf_counter()
        r = train_one_epoch(model, loader, state, device, 0, lambda e: e, progress=False)
        _sync(device)
        out[name] = r["train/images"] / (time.perf_counter() - t)
    return out


def whole_run(run: Path, plain: float) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    rate = summary["images_seen"] / summary["wall_seconds"]
    return {"bench": "train_run", "run": str(run), "images_seen": summary["images_seen"],
            "wall_seconds": summary["wall_seconds"], "run_img_per_s": round(rate, 1),
            "plain_img_per_s": round(plain, 1), "whole_run_ratio": round(rate / plain, 3)}


def devices(choice: str) -> list[torch.device]:
    """--device: auto = the CPU, then CUDA when there is one; cpu or cuda = that one (cuda without one: an error)."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench train --device cuda: torch.cuda.is_available() is False on this machine")
    if choice in ("cpu", "cuda"):
        return [torch.device(choice)]
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def run(args):
    finished = getattr(args, "run", None)
    if finished is not None and not (Path(finished) / "summary.json").is_file():  # before minutes of timing
        raise SystemExit(f"bench train --run {finished}: no summary.json there; give a finished run's fold "
                         "folder, e.g. outputs/<out>/<name>/fold0")
    least = getattr(args, "min_drawings", 120)
    classes = rich_classes(args.data, least)
    if not classes:
        raise SystemExit(f"bench train: no class in {args.data}/train_simplified has {least} drawings "
                         "(--min-drawings)")
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store"
        store, _, _ = prepared_store([args.data / "train_simplified"], store_path, classes, workers=None)
        for device in devices(getattr(args, "device", "auto")):
            cpu = device.type == "cpu"
            bs = getattr(args, "batch_size", None) or (128 if cpu else 512)
            steps = getattr(args, "steps", None) or ((6 if args.quick else 25) if cpu else (50 if args.quick else 300))
            sizes = getattr(args, "size", None) or [64]
            for size in sizes:
                sets = [f"data.img_size={size}", f"data.store={store_path}", f"train.batch_size={bs}"]
                cfg = load_config(ROOT / "configs/r18.yaml", sets)
                plain = plain_loop(len(classes), size, bs, steps, device)
                r = ours(cfg, store, device, steps)
                plain = (plain + plain_loop(len(classes), size, bs, steps, device)) / 2  # before and after ours
                yield {"bench": "train", "device": str(device), "model": cfg.model.name, "size": size,
                       "batch_size": bs, "loader_workers": r["workers"], "steps": steps,
                       "plain_img_per_s": round(plain, 1), "premade_img_per_s": round(r["premade"], 1),
                       "real_img_per_s": round(r["real"], 1), "ratio_vs_plain": round(r["real"] / plain, 3),
                       "ratio": round(r["real"] / r["premade"], 3), "torch_threads": torch.get_num_threads()}
                if cpu and size == sizes[0] and getattr(args, "run", None):
                    yield whole_run(Path(args.run), plain)
