"""Our own models by name, as timm does it: `@register_model` on a builder `fn(cfg, n_classes, in_chans)`.

The function's name is the model's name (`model.name: seq_gru`); `input_kind` says what it eats ("image",
the default, or "sequence"), so the data pipeline can build matching inputs without building the model.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from doodle.config import Config
from doodle.errors import UserError

Builder = Callable[[Config, int, int], nn.Module]
REGISTRY: dict[str, Builder] = {}


def register_model(fn: Builder | None = None, *, input_kind: str = "image"):
    """Decorator: add `fn` to the registry under `fn.__name__`; `@register_model(input_kind="sequence")` too."""

    def wrap(f: Builder) -> Builder:
        if f.__name__ in REGISTRY:
            raise UserError(f"model {f.__name__!r} registered twice")
        f.input_kind = input_kind
        REGISTRY[f.__name__] = f
        return f

    return wrap(fn) if fn is not None else wrap
