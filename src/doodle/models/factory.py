"""build_model(cfg): any timm model by name, or one of our own registered models (`@register_model`).

A model declares what it eats through `input_kind` ("image" for timm CNNs, "sequence" for stroke-sequence
networks); the data pipeline builds inputs to match, so a new architecture needs no edit to train.py.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import timm
import torch
from torch import nn

from doodle.config import Config
from doodle.errors import UserError
from doodle.models import sequence  # noqa: F401  (its @register_model functions fill the registry)
from doodle.models.registry import REGISTRY

log = logging.getLogger(__name__)

def input_kind_of(cfg: Config) -> str:
    """The input kind a config's model needs, without building it."""
    if cfg.model.name in REGISTRY:
        return getattr(REGISTRY[cfg.model.name], "input_kind", "image")
    return "image"


def _timm_model(cfg: Config, n_classes: int, in_chans: int) -> nn.Module:
    name = cfg.model.name
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models() + sorted(REGISTRY), n=3, cutoff=0.6)
        raise UserError(f"model.name: unknown model {name!r}" + (f" (did you mean {', '.join(close)}?)" if close
                                                                 else "; any timm model name or " + ", ".join(REGISTRY)))
    try:
        return timm.create_model(name, pretrained=cfg.model.pretrained, num_classes=n_classes, in_chans=in_chans,
                                 drop_rate=cfg.model.drop_rate, **cfg.model.kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        if cfg.model.pretrained:
            raise UserError(f"model.pretrained: could not get timm weights for {name!r} ({str(e).splitlines()[0][:100]}); "
                             "offline? set model.pretrained=false, or model.weights=PATH to a local file") from None
        raise


def build_model(cfg: Config, n_classes: int, in_chans: int) -> nn.Module:
    """The configured network with `n_classes` outputs; local `model.weights` loaded when given."""
    builder = REGISTRY.get(cfg.model.name, _timm_model)
    model = builder(cfg, n_classes, in_chans)
    if cfg.model.weights:
        load_weights(model, Path(cfg.model.weights))
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Start from a local state dict (weights_only); layers whose shapes differ (the head) are skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means: not usable weights
        raise UserError(f"model.weights: {path} is not a loadable weights file ({str(e).splitlines()[0][:100]})") from None
    state = state.get("model", state.get("state_dict", state)) if isinstance(state, dict) else state
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    if not usable:
        raise UserError(f"model.weights: no tensor in {path} fits {type(model).__name__}")
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors from %s (skipped %d: %s)", len(usable), path, len(skipped), skipped[:4])

