"""Typed, strict configuration: defaults in code, a short YAML on top (one-level `base:`), `--set a.b=v`.

Unknown keys and wrong types are errors that name the key and suggest the nearest valid one. The run
folder gets the fully resolved config (`config.yaml`); predict, the page and the tools read that copy.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config problem, with the key or file that caused it."""


@dataclass
class DataCfg:
    store: str = "input/store"
    classes: Any = "all"  # "all", a list of words, or a file with one word per line
    img_size: int = 64
    per_class: int = 1000  # N: drawings per class in one epoch (before boosting)
    val_per_class: int = 0  # cap per class on the validation fold (0 = all of it)
    max_drawings: int = 0  # cap on the store's drawings used (0 = all), for quick experiments
    num_workers: int = 2


@dataclass
class RasterCfg:
    encoding: str = "order3"
    line_width: int = 2
    margin: int = 1
    antialias: bool = False
    floor: int = 55


@dataclass
class AlbuCfg:
    name: str = ""
    params: dict = field(default_factory=dict)


@dataclass
class AugmentCfg:
    flip: float = 0.5  # probability of a horizontal flip
    scale: float = 0.1  # +- relative scale
    stretch: float = 0.1  # +- extra relative scale on x only (aspect)
    shift: float = 0.08  # +- fraction of the box
    rotate: float = 10.0  # +- degrees
    shear: float = 0.1  # +- shear factor
    stroke_dropout: float = 0.0  # probability of dropping each stroke (never all)
    point_jitter: float = 0.0  # std of per-point noise, in 0..255 box pixels
    albumentations: list[AlbuCfg] = field(default_factory=list)


@dataclass
class ModelCfg:
    name: str = "resnet18"
    pretrained: bool = False
    weights: str = ""  # local file of weights to start from
    drop_rate: float = 0.0
    kwargs: dict = field(default_factory=dict)  # passed to the model builder (sequence models)


@dataclass
class SeqCfg:
    max_points: int = 256  # cap on points per drawing (longer ones are evenly subsampled)
    time: bool = True  # add dt as a channel when the drawing has time
    point_dropout: float = 0.0  # training only: drop each point that does not start a stroke


@dataclass
class TrainCfg:
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 0.0
    step_gamma: float = 0.1
    step_epochs: list[int] = field(default_factory=list)
    amp: str = "auto"  # auto | off | bf16 | fp16  (auto: bf16 on CUDA when supported, else off)
    channels_last: bool = True
    compile: bool = False
    accum_steps: int = 1
    ema: bool = False
    ema_decay: float = 0.999
    ema_warmup: bool = True  # timm's EMA warm-up: the decay grows with the step count up to ema_decay
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    boost: bool = False  # accuracy-driven resampling: N* = N (1 - acc) + boost_floor N
    boost_floor: float = 0.25
    max_minutes: float = 0.0  # 0 = no time budget
    adapt: bool = True  # fit epochs, epoch size, batch and loader workers to the device and budget (doodle.plan)
    deterministic: bool = False
    log_every: int = 50


@dataclass
class ValCfg:
    batch_size: int = 512
    tta: str = "none"  # none | flip


@dataclass
class Config:
    data: DataCfg = field(default_factory=DataCfg)
    raster: RasterCfg = field(default_factory=RasterCfg)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    seq: SeqCfg = field(default_factory=SeqCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    val: ValCfg = field(default_factory=ValCfg)
    name: str = ""  # run name; defaults to the config file's stem

    def to_dict(self) -> dict:
        return asdict(self)


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"config key {where}: {value!r} does not fit {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-3 as text
            except ValueError:
                pass
        raise ConfigError(f"config key {where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {where}: expected text, got {value!r}")
    raise ConfigError(f"config key {where}: unsupported type {tp}")


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in hints:
            raise ConfigError(f"unknown config key '{path}'{_nearest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return data


def _set(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected section.key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def _read_with_bases(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A YAML merged on top of its `base:` (itself possibly on a base), each path relative to its file."""
    if path.resolve() in chain:
        raise ConfigError(f"config file {path}: its base: chain loops ({' -> '.join(p.name for p in chain)})")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"config file {path}: base: must be a file name, got {base!r}")
    return _deep_merge(_read_with_bases(path.parent / base, (*chain, path.resolve())), data)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- base YAML(s) <- YAML at `path` <- `--set` overrides; strict about keys and types."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        data = _read_with_bases(path)
        data.setdefault("name", path.stem)
    for o in overrides:
        _set(data, o)
    return from_dict(Config, data)


def save_config(cfg: Config, path: Path, extra: dict | None = None) -> None:
    """Write the resolved config (plus run facts such as fold, seed, commit) as YAML."""
    data = cfg.to_dict()
    if extra:
        data["run"] = extra
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


def load_resolved(path: Path) -> tuple[Config, dict]:
    """A run's saved config.yaml -> (Config, run facts)."""
    data = _read_yaml(Path(path))
    run = data.pop("run", {})
    return from_dict(Config, data), run
