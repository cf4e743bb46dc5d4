"""Sequence-model throughput in sequences/s: model alone vs model fed by the real loader (encoding included).

Batch 256 and `seq.*` as configs/seq_gru.yaml sets them; models: seq_gru with the recipe's kwargs and
seq_transformer with its defaults. Drawings: a temporary store of the richest few classes of
DATA/train_simplified (plus DATA/raw/<word>.ndjson where present), or the bundled sample when DATA has none.
Per model and device (CPU; CUDA too when present), one row:

* `encode_train_per_s` / `encode_eval_per_s`: the loader alone (`Store.take`, stroke augmentation in
  train mode, `encode_sequences`), in-process (`num_workers=0`);
* `train_model_per_s`: forward + backward + AdamW step on those batches made beforehand;
* `train_with_loader_per_s`: the same steps fed by the in-process loader, so encoding is paid serially
  (a worker process would overlap it on a GPU machine: this is the worst case);
* `infer_model_per_s` / `infer_with_loader_per_s`: eval forward, likewise.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import ROOT, prepared_store, timed
from doodle.config import load_config
from doodle.models.factory import build_model
from doodle.store.format import Store
from doodle.train.data import BatchDataset, QuotaSampler, fixed_batches, make_loader, make_split
from doodle.train.engine import predict_logits, train_one_epoch
from doodle.train.optim import build_train_state

BATCH = 256
MODELS = [("seq_gru", None), ("seq_transformer", {})]  # None: the recipe's own model.kwargs


def source_files(data: Path, n_classes: int) -> list[Path]:
    """The `n_classes` largest Kaggle CSVs under DATA/train_simplified (sample fallback) and their raw twins."""
    root = Path(data) / "train_simplified"
    if not any(root.glob("*.csv")):
        root = ROOT / "input/sample/train_simplified"
    csvs = sorted(root.glob("*.csv"), key=lambda p: (-p.stat().st_size, p.name))[:n_classes]
    raws = [root.parent / "raw" / f"{p.stem}.ndjson" for p in csvs]
    return csvs + [p for p in raws if p.is_file()]


def _rate(n: int, fn) -> float:
    return n / timed(fn)[1]


def measure(cfg, store: Store, device: torch.device, steps: int) -> dict:
    split = make_split(store, cfg, 0)
    n_cls = len(split.classes)
    torch.manual_seed(0)
    model = build_model(cfg, n_cls, 3).to(device)
    targets = split.targets(store, split.train_idx)
    sampler = QuotaSampler(split.train_idx, targets, n_cls, np.full(n_cls, math.ceil(steps * BATCH / n_cls)), BATCH)
    train_loader = make_loader(BatchDataset(store, split, cfg, "sequence", train=True), sampler, 0)
    infer_idx = np.resize(split.train_idx, steps * BATCH)
    infer_loader = make_loader(BatchDataset(store, split, cfg, "sequence"), fixed_batches(infer_idx, BATCH), 0)
    n = steps * BATCH
    # One pass per loader, timed, and its batches kept for the model-only rates (the sampler and the
    # augmentation are seeded by epoch and indices, so a second pass would give the same batches).
    train_batches, train_s = timed(lambda: list(train_loader))
    infer_batches, infer_s = timed(lambda: list(infer_loader))
    out = {"encode_train_per_s": n / train_s, "encode_eval_per_s": n / infer_s}
    model, state = build_train_state(cfg, model, "sequence", device)

    def train(loader):
        return lambda: train_one_epoch(model, loader, state, device, 0, lambda e: 0.0, progress=False)

    def infer(loader):
        return lambda: predict_logits(model, loader, device, state.precision, progress=False)

    train(train_batches[:1])()  # warm-up: allocations, cuDNN plans
    infer(infer_batches[:1])()
    out["train_model_per_s"] = _rate(n, train(train_batches))
    out["train_with_loader_per_s"] = _rate(n, train(train_loader))
    out["infer_model_per_s"] = _rate(n, infer(infer_batches))
    out["infer_with_loader_per_s"] = _rate(n, infer(infer_loader))
    lengths = torch.cat([b["seq_len"] for b in infer_batches]).float()
    out["mean_len"] = float(lengths.mean())
    out["mean_padded_len"] = float(np.mean([b["seq"].shape[1] for b in infer_batches]))
    out["params"] = sum(p.numel() for p in model.parameters())
    out["autocast"] = str(state.precision.dtype).replace("torch.", "") if state.precision.dtype else "off"
    return out


def run(args) -> Iterator[dict]:
    n_classes = 5 if args.quick else 20
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory(prefix="bench_seq_") as tmp:
        store_path = Path(tmp) / "store"
        files = source_files(args.data, n_classes)
        store, _, _ = prepared_store(files, store_path)
        for device in devices:
            steps = (2 if args.quick else 8) if device.type == "cpu" else (20 if args.quick else 100)
            for name, kwargs in MODELS:
                sets = [f"data.store={store_path}", f"train.batch_size={BATCH}", "data.num_workers=0",
                        f"model.name={name}", "train.amp=auto"]
                cfg = load_config(ROOT / "configs/seq_gru.yaml", sets)
                if kwargs is not None:
                    cfg.model.kwargs = kwargs
                r = measure(cfg, store, device, steps)
                facts = {k: r.pop(k) for k in ("params", "autocast")}
                yield {"bench": "seq", "device": str(device), "model": name, "kwargs": cfg.model.kwargs, **facts,
                       "batch": BATCH, "max_points": cfg.seq.max_points, "time": cfg.seq.time,
                       "drawings": len(store), "classes": int((store.class_counts() > 0).sum()),
                       "steps": steps, **{k: round(v, 1) for k, v in r.items()},
                       "loader_share_train": round(1 - r["train_with_loader_per_s"] / r["train_model_per_s"], 3),
                       "torch_threads": torch.get_num_threads()}
