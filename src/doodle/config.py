"""Typed, strict configuration: defaults in code, a short YAML on top (`base:` chains), `--set a.b=v`.

Unknown keys, wrong types, values outside a closed set (`Literal[...]`) and numbers outside their range
(`Annotated[..., Range(...)]`) are errors that name the key (and the nearest valid key or value). An
enumerated value may be written in any letter case, and a bare `off` (YAML reads it as false) counts as the
word; it is stored as spelled here. The run folder gets the fully resolved config (`config.yaml`); predict,
the page and the tools read that copy.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from doodle.errors import DoodleError, nearest_path


class ConfigError(DoodleError, ValueError):
    """A config problem, with the key or file that caused it."""


@dataclass(frozen=True)
class Range:
    """Bounds of a number field, as `Annotated[float, Range(0, 1)]`; an open end excludes its bound."""

    lo: float
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False

    def __contains__(self, v: float) -> bool:
        above = v > self.lo if self.open_lo else v >= self.lo
        below = self.hi is None or (v < self.hi if self.open_hi else v <= self.hi)
        return above and below  # NaN is neither

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'above' if self.open_lo else 'at least'} {self.lo:g}"
        return f"in {'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}{')' if self.open_hi else ']'}"


Count = Annotated[int, Range(1)]
NonNegInt = Annotated[int, Range(0)]  # 0 often means "off" or "all"
NonNeg = Annotated[float, Range(0)]
Positive = Annotated[float, Range(0, open_lo=True)]
Prob = Annotated[float, Range(0, 1)]
Fraction = Annotated[float, Range(0, 1, open_hi=True)]  # [0, 1)

# The closed sets, as their consumers accept them (tests/test_config.py builds each value downstream).
Encoding = Literal["order3", "time3", "rt3", "grey"]  # raster.ENCODINGS
Optimizer = Literal[  # train.optim.build_optimizer (timm's names)
    "adamw", "sgd", "adam", "lamb", "lion", "rmsprop", "nadamw", "momentum"]
Scheduler = Literal["cosine", "step", "constant"]  # train.optim.build_scheduler
Amp = Literal["auto", "off", "bf16", "fp16"]  # engine.resolve_precision
Tta = Literal["none", "flip"]  # the train recipe's validation, the predict recipe's --tta
Blend = Literal["prob_mean", "logit_mean"]  # predict.ensemble.BLENDERS
TeacherTta = Literal["run", "none", "flip"]  # run: each teacher's own val.tta (as its val_logits were made)
DistillInit = Literal["none", "teacher"]  # predict.teachers.teacher_weights
# once, held_out: predict.teachers.soft_targets; online: predict.teachers.OnlineTeachers
DistillTargets = Literal["once", "held_out", "online"]


@dataclass
class DataCfg:
    store: str = "input/store"
    classes: Any = "all"  # "all", a list of words, or a file with one word per line
    img_size: Annotated[int, Range(8, 1024)] = 64  # raster.RasterSpec's limits
    per_class: Count = 1000  # N: drawings per class in one epoch (before boosting)
    val_per_class: NonNegInt = 0  # cap per class on the validation fold (0 = all of it)
    max_drawings: NonNegInt = 0  # cap on the store's drawings used (0 = all), for quick experiments
    exclude_folds: list[NonNegInt] = field(default_factory=list)  # folds never trained on (a held-out "test" fold)
    # by source name (the folder a drawing's file was read from: train_simplified, a pseudo-label folder, ...):
    # a drawing's chance of being drawn relative to its class's others (default 1; 0 = never), and at most
    # this many drawings per class from that source (chosen by a fixed hash of key_id); doodle.train.sources
    source_weights: dict[str, NonNeg] = field(default_factory=dict)
    source_caps: dict[str, NonNegInt] = field(default_factory=dict)
    num_workers: NonNegInt = 2


@dataclass
class RasterCfg:
    encoding: Encoding = "order3"
    line_width: Annotated[int, Range(1, 32)] = 2  # raster.RasterSpec's limits
    margin: NonNegInt = 1
    antialias: bool = False
    floor: Annotated[int, Range(0, 254)] = 55


@dataclass
class AlbuCfg:
    name: str = ""
    params: dict = field(default_factory=dict)


@dataclass
class AugmentCfg:
    flip: Prob = 0.5  # probability of a horizontal flip
    scale: Fraction = 0.1  # +- relative scale (1 or more could shrink a drawing to nothing)
    stretch: Fraction = 0.1  # +- extra relative scale on x only (aspect)
    shift: NonNeg = 0.08  # +- fraction of the box
    rotate: Annotated[float, Range(0, 180)] = 10.0  # +- degrees
    shear: NonNeg = 0.1  # +- shear factor
    stroke_dropout: Prob = 0.0  # probability of dropping each stroke (never all)
    point_jitter: NonNeg = 0.0  # std of per-point noise, in 0..255 box pixels
    # between the images of a batch (doodle.train.mix, timm's Mixup): Beta(alpha, alpha) alphas, 0 = off; with both
    # on, a mixed batch is one or the other with equal odds; mix_prob = the share of batches mixed
    mixup: NonNeg = 0.0
    cutmix: NonNeg = 0.0
    mix_prob: Prob = 1.0
    albumentations: list[AlbuCfg] = field(default_factory=list)


@dataclass
class ModelCfg:
    name: str = "resnet18"
    pretrained: bool = False
    weights: str = ""  # local file of weights to start from
    drop_rate: Fraction = 0.0
    kwargs: dict = field(default_factory=dict)  # passed to the model builder (sequence models)


@dataclass
class SeqCfg:
    max_points: Count = 256  # cap on points per drawing (longer ones are evenly subsampled)
    time: bool = True  # add dt as a channel when the drawing has time
    point_dropout: Fraction = 0.0  # training only: drop each point that does not start a stroke


@dataclass
class TrainCfg:
    epochs: Count = 10
    batch_size: Count = 256
    optimizer: Optimizer = "adamw"
    lr: Positive = 2e-3
    weight_decay: NonNeg = 0.05
    momentum: Fraction = 0.9
    scheduler: Scheduler = "cosine"
    warmup_epochs: NonNeg = 0.0
    step_gamma: Positive = 0.1
    step_epochs: list[NonNegInt] = field(default_factory=list)
    amp: Amp = "auto"  # auto: bf16 on CUDA when supported, else off
    channels_last: bool = True
    compile: bool = False
    accum_steps: Count = 1
    ema: bool = False
    ema_decay: Annotated[float, Range(0, 1, open_lo=True, open_hi=True)] = 0.999
    ema_warmup: bool = True  # timm's EMA warm-up: the decay grows with the step count up to ema_decay
    swa_last: NonNegInt = 0  # average the raw weights of the last K planned epochs' ends (doodle.train.swa); 0 = off
    label_smoothing: Fraction = 0.0
    grad_clip: NonNeg = 0.0
    boost: bool = False  # accuracy-driven resampling: N* = N (1 - acc) + boost_floor N
    boost_floor: NonNeg = 0.25
    max_minutes: NonNeg = 0.0  # 0 = no time budget
    adapt: bool = True  # fit epochs, epoch size, batch and loader workers to the device and budget (doodle.train.plan)
    deterministic: bool = False
    log_every: Count = 50


@dataclass
class ValCfg:
    batch_size: Count = 512
    tta: Tta = "none"


@dataclass
class AppCfg:
    # the page says "not sure" (and still lists its top guesses) when the calibrated top probability is lower
    not_sure: Prob = 0.4


@dataclass
class DistillCfg:
    """Train on the soft targets of finished runs (doodle.train.distill, doodle.predict.teachers)."""

    enabled: bool = False  # configs/distill.yaml turns it on; then teachers must be given
    teachers: list[str] = field(default_factory=list)  # run folders; their fold-k model teaches fold k
    # loss = (1 - alpha) CE(hard labels) + alpha T^2 KL(teacher_T || student_T)
    alpha: Prob = 0.9
    temperature: Positive = 2.0
    method: Blend = "prob_mean"  # how the teachers are averaged, as tools/ensemble.py --method does
    # once: the teachers predict the clean training drawings once, before training (kept in distill.cache), and the
    # student's augmented views are taught those fixed targets. online: the teachers predict every training batch,
    # the very view the student sees ("consistent teaching", Beyer et al. 2022), inside the student's time budget.
    # held_out: as once, but each training drawing is taught only by the teachers that never trained on it: teacher
    # runs trained with data.exclude_folds, whose fold-k model teaches the drawings of the folds it excluded
    targets: DistillTargets = "once"
    tta: TeacherTta = "run"  # the teachers' test-time augmentation of targets=once / held_out (online: the student's view only)
    cache: str = ""  # folder of the teachers' log-probabilities (default <run>/fold<k>/teacher/); reused when present
    # teacher: start from the weights of the first teacher whose network is the student's (same model and input);
    # none: from scratch (or model.weights)
    init: DistillInit = "none"
    # share of each epoch's drawings taken from the transfer set (Hinton et al. 2015): the store's training-fold
    # drawings of classes the student does not learn (outside data.classes), taught by the teachers' soft
    # targets alone (no label of the student's). 0: off
    transfer: Annotated[float, Range(0, 0.9)] = 0.0


@dataclass
class Config:
    data: DataCfg = field(default_factory=DataCfg)
    raster: RasterCfg = field(default_factory=RasterCfg)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    seq: SeqCfg = field(default_factory=SeqCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    val: ValCfg = field(default_factory=ValCfg)
    app: AppCfg = field(default_factory=AppCfg)
    distill: DistillCfg = field(default_factory=DistillCfg)
    name: str = ""  # run name; defaults to the config file's stem

    def to_dict(self) -> dict:
        return asdict(self)


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    """One of `allowed`, matched in any letter case and returned as spelled in `allowed`."""
    word = {False: "off", True: "on"}.get(value) if isinstance(value, bool) else None
    if word in allowed:  # YAML reads a bare `amp: off` (or `--set train.amp=off`) as false
        return word
    if isinstance(value, str):
        for a in allowed:
            if value.lower() == a.lower():
                return a
    close = difflib.get_close_matches(str(value).lower(), allowed, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if isinstance(value, bool):
        hint = " (YAML reads a bare no/yes/off/on as false/true: quote the word)"
    raise ConfigError(f"config key {where}: {value!r} is not one of {', '.join(allowed)}{hint}")


def _in_range(value: Any, tp: Any, where: str) -> Any:
    """An `Annotated[base, Range(...)]` value: the base type's check, then the bounds."""
    base, *marks = typing.get_args(tp)
    value = _coerce(value, base, where)
    for r in marks:
        if isinstance(r, Range) and value not in r:
            raise ConfigError(f"config key {where}: must be {r}, got {value!r}")
    return value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        return _choice(value, typing.get_args(tp), where)
    if origin is Annotated:
        return _in_range(value, tp, where)
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
        if origin is None:
            return dict(value)
        _, arg = typing.get_args(tp)  # dict[str, X]: text keys, each value checked as an X
        for k in value:
            if not isinstance(k, str):
                raise ConfigError(f"config key {where}: keys must be text, got {k!r}")
        return {k: _coerce(v, arg, f"{where}.{k}") for k, v in value.items()}
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
    """Build dataclass `cls` from a mapping; unknown keys, wrong types and bad values raise ConfigError."""
    hints = typing.get_type_hints(cls, include_extras=True)
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
        raise ConfigError(f"config file {path} not found{nearest_path(path, '*.yaml')}")
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
