"""The CUDA training paths, through the project's own engine (build_train_state -> train_one_epoch): a bf16
autocast step, an fp16 step with torch.amp.GradScaler, channels_last, and torch.compile; on one fixed batch of
real drawings the loss stays finite and goes down.

Marked `gpu`: skipped, with the reason, where CUDA is missing (tests/conftest.py); `bash tools/gpu_check.sh` runs
them on a GPU. DOODLE_GPU_TESTS_ON_CPU=1 runs them on the CPU to check this file's own code (fp16 skips there).
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from helpers import ROOT

from doodle.config import load_config
from doodle.models.factory import build_model
from doodle.render.raster import raster_spec
from doodle.store.format import Store
from doodle.train.data import BatchDataset, make_split
from doodle.train.engine import forward, to_input, train_one_epoch
from doodle.train.optim import build_train_state

pytestmark = pytest.mark.gpu


def _setup(store_path, device: torch.device, *sets: str):
    """r18.yaml (bf16/fp16, channels_last, EMA) at 64 px with a constant learning rate, its model and training
    state built as the recipe builds them, and one batch of 32 real drawings of the store's fold-0 training part."""
    cfg = load_config(ROOT / "configs" / "r18.yaml",
                      [f"data.store={store_path}", "data.img_size=64", "train.batch_size=32", "train.log_every=1",
                       "train.scheduler=constant", "train.warmup_epochs=0", *sets])
    store = Store(cfg.data.store)
    split = make_split(store, cfg, 0)
    idx = split.train_idx[:: max(1, len(split.train_idx) // 32)][:32]
    batch = BatchDataset(store, split, cfg, "image")[idx.tolist()]
    torch.manual_seed(0)
    model = build_model(cfg, len(split.classes), raster_spec(cfg).channels).to(device)
    model, state = build_train_state(cfg, model, "image", device)
    return cfg, model, state, batch


def _fit(model, state, batch, device, steps: int) -> list[float]:
    """The loss of each of `steps` optimiser steps on the same batch (each a one-batch train_one_epoch)."""
    return [train_one_epoch(model, [batch], state, device, k, lambda e: e, progress=False)["train/loss"]
            for k in range(steps)]


def _learns(losses: list[float]) -> None:
    assert all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-3:]) / 3 < losses[0] - 0.05, losses


@pytest.mark.parametrize("channels_last", [True, False])
def test_a_bf16_autocast_step_learns(kaggle_store, gpu_device, channels_last, record_property):
    cfg, model, state, batch = _setup(kaggle_store, gpu_device, "train.amp=bf16",
                                      f"train.channels_last={str(channels_last).lower()}")
    assert state.precision.dtype == torch.bfloat16 and state.scaler is None
    on_cuda = gpu_device.type == "cuda"
    assert state.channels_last == (channels_last and on_cuda)  # the recipe uses channels_last on CUDA only
    x = to_input(batch, gpu_device, state.channels_last)["x"]
    if state.channels_last:
        assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    with state.precision.autocast():
        assert forward(model, {"x": x}).dtype == torch.bfloat16
    losses = _fit(model, state, batch, gpu_device, 10)
    record_property("losses", [round(v, 4) for v in losses])
    _learns(losses)
    assert next(model.parameters()).dtype == torch.float32  # autocast, not a bf16 model
    assert state.ema is not None and state.step == 10


def test_an_fp16_step_with_a_grad_scaler_learns(kaggle_store, gpu_device, record_property):
    if gpu_device.type != "cuda":
        pytest.skip("fp16 autocast with a GradScaler needs CUDA (resolve_precision refuses it on the CPU)")
    cfg, model, state, batch = _setup(kaggle_store, gpu_device, "train.amp=fp16")
    assert state.precision.dtype == torch.float16 and isinstance(state.scaler, torch.amp.GradScaler)
    assert state.channels_last
    losses = _fit(model, state, batch, gpu_device, 14)  # the first steps may be skipped while the scale drops
    scale = state.scaler.get_scale()
    record_property("losses", [round(v, 4) for v in losses])
    record_property("grad_scale", scale)
    _learns(losses)
    assert math.isfinite(scale) and scale > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_channels_last_gives_the_logits_of_the_contiguous_model(kaggle_store, gpu_device, record_property):
    cfg, model, state, batch = _setup(kaggle_store, gpu_device, "train.amp=off")
    model.eval()
    plain = build_model(cfg, model.num_classes, raster_spec(cfg).channels).to(gpu_device).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        a = forward(model, to_input(batch, gpu_device, state.channels_last)).float()
        b = forward(plain, to_input(batch, gpu_device, False)).float()
    diff = (a - b).abs().max().item()
    record_property("max_abs_diff", diff)
    assert (a.argmax(1) == b.argmax(1)).float().mean().item() >= 0.99
    assert diff <= 1e-2 * max(1.0, a.abs().max().item())  # cuDNN may pick other (TF32) kernels per layout


def test_a_compiled_model_trains(kaggle_store, gpu_device, record_property):
    """torch.compile as the recipe applies it (train.compile: true), with bf16 autocast, channels_last and EMA."""
    cfg, model, state, batch = _setup(kaggle_store, gpu_device, "train.amp=bf16", "train.compile=true")
    assert cfg.train.compile
    torch._dynamo.reset()
    compiled = torch.compile(model)
    t = time.perf_counter()
    losses = _fit(compiled, state, batch, gpu_device, 1)  # the first step compiles forward and backward
    record_property("first_step_s", round(time.perf_counter() - t, 1))
    losses += _fit(compiled, state, batch, gpu_device, 7)
    record_property("losses", [round(v, 4) for v in losses])
    _learns(losses)
    assert compiled._orig_mod is model and state.step == 8
    ema = state.ema.module  # the EMA copies the uncompiled module's weights
    assert all(torch.isfinite(p).all() for p in ema.parameters())
