"""Strict config: defaults, base:, --set, unknown keys, wrong types, enum typos and out-of-range numbers
named with a suggestion."""

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from helpers import command_module

from doodle import config
from doodle.config import Config, ConfigError, from_dict, load_config, load_resolved, save_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.data.img_size > 0 and cfg.train.epochs > 0


def test_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.1\n  epochs: 3\ndata:\n  img_size: 32\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  epochs: 5\n")
    cfg = load_config(tmp_path / "child.yaml", ["data.img_size=48", "train.lr=1e-3", "model.name=resnet34"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.data.img_size) == (1e-3, 5, 48)
    assert cfg.model.name == "resnet34" and cfg.name == "child"


def test_boost_config_only_states_its_delta():
    base, boost = load_config(ROOT / "configs/r18.yaml"), load_config(ROOT / "configs/r18_boost.yaml")
    assert boost.train.boost and not base.train.boost
    assert boost.data == base.data and boost.model == base.model


@pytest.mark.parametrize("override, message", [
    ("train.lrr=0.1", "unknown config key 'train.lrr' (did you mean 'lr'?)"),
    ("trian.lr=0.1", "unknown config key 'trian' (did you mean 'train'?)"),
    ("train.epochs=ten", "config key train.epochs: expected an integer, got 'ten'"),
    ("train.boost=maybe", "config key train.boost: expected true/false, got 'maybe'"),
    ("data.img_size=64.5", "config key data.img_size: expected an integer"),
    ("train.lr", "expected section.key=value"),
    ("app.not_sure=1.5", "config key app.not_sure: must be in [0, 1], got 1.5"),
    ("app.not_sur=0.5", "unknown config key 'app.not_sur' (did you mean 'not_sure'?)"),
])
def test_bad_keys_and_types_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/demo.yaml", [override])
    assert message in str(e.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="c.yaml not found"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="base: chain loops"):
        load_config(tmp_path / "a.yaml")


def test_a_misspelt_config_file_names_the_nearest_one():
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/r18_boot.yaml")
    typo, meant = ROOT / "configs/r18_boot.yaml", ROOT / "configs/r18_boost.yaml"
    assert str(e.value) == f"config file {typo} not found (did you mean {meant}?)"
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/zzzz.yaml")
    assert str(e.value).endswith("zzzz.yaml not found")


def test_bases_chain(tmp_path):
    """A variant of a variant: each file states only its deltas; the nearest file wins."""
    (tmp_path / "base.yaml").write_text("train: {lr: 0.1, epochs: 3}\ndata: {img_size: 32}\n")
    (tmp_path / "mid.yaml").write_text("base: base.yaml\ntrain: {lr: 0.2}\n")
    (tmp_path / "top.yaml").write_text("base: mid.yaml\ndata: {img_size: 48}\n")
    cfg = load_config(tmp_path / "top.yaml")
    assert (cfg.train.lr, cfg.train.epochs, cfg.data.img_size, cfg.name) == (0.2, 3, 48, "top")
    big = load_config(ROOT / "configs/seq_gru_l.yaml")
    assert big.model.kwargs["hidden"] == 256 and big.seq.max_points == 160 and big.train.ema  # from r18.yaml


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs/r18_boost.yaml", ["augment.albumentations=[{name: Blur, params: {blur_limit: 3}}]"])
    save_config(cfg, tmp_path / "config.yaml", {"fold": 2, "seed": 7})
    again, facts = load_resolved(tmp_path / "config.yaml")
    assert again == cfg and facts == {"fold": 2, "seed": 7}
    assert again.augment.albumentations[0].name == "Blur"


def test_defaults_pass_their_own_checks():
    assert from_dict(Config, Config().to_dict()) == Config()


@pytest.mark.parametrize("override, message", [
    ("val.tta=flp", "config key val.tta: 'flp' is not one of none, flip (did you mean 'flip'?)"),
    ("train.scheduler=cosin", "config key train.scheduler: 'cosin' is not one of cosine, step, constant "
                              "(did you mean 'cosine'?)"),
    ("train.amp=bf61", "config key train.amp: 'bf61' is not one of auto, off, bf16, fp16 "
                       "(did you mean 'bf16'?)"),
    ("train.optimizer=adamm", "config key train.optimizer: 'adamm' is not one of adamw, sgd, adam, lamb, "
                              "lion, rmsprop, nadamw, momentum (did you mean 'adam"),
    ("raster.encoding=order4", "config key raster.encoding: 'order4' is not one of order3, time3, rt3, "
                               "grey (did you mean 'order3'?)"),
    ("train.optimizer=xyzzy", "config key train.optimizer: 'xyzzy' is not one of adamw, sgd, adam, lamb, "
                              "lion, rmsprop, nadamw, momentum"),
    ("val.tta=no", "config key val.tta: False is not one of none, flip (YAML reads a bare no/yes/off/on"),
    ("val.tta=1", "config key val.tta: 1 is not one of none, flip"),
])
def test_enum_typos_name_the_key_and_the_allowed_values(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/demo.yaml", [override])
    assert message in str(e.value)


def test_enum_values_in_any_case_and_a_bare_off_are_stored_as_spelled_in_the_code():
    cfg = load_config(ROOT / "configs/demo.yaml", ["train.optimizer=AdamW", "train.amp=off", "val.tta=FLIP"])
    assert (cfg.train.optimizer, cfg.train.amp, cfg.val.tta) == ("adamw", "off", "flip")


@pytest.mark.parametrize("override, message", [
    ("data.img_size=-1", "config key data.img_size: must be in [8, 1024], got -1"),
    ("data.per_class=0", "config key data.per_class: must be at least 1, got 0"),
    ("data.num_workers=-1", "config key data.num_workers: must be at least 0, got -1"),
    ("train.batch_size=0", "config key train.batch_size: must be at least 1, got 0"),
    ("train.epochs=0", "config key train.epochs: must be at least 1, got 0"),
    ("train.lr=0", "config key train.lr: must be above 0, got 0.0"),
    ("train.lr=.nan", "config key train.lr: must be above 0, got nan"),
    ("train.max_minutes=-5", "config key train.max_minutes: must be at least 0, got -5.0"),
    ("train.ema_decay=1", "config key train.ema_decay: must be in (0, 1), got 1.0"),
    ("train.ema_decay=0", "config key train.ema_decay: must be in (0, 1), got 0.0"),
    ("train.label_smoothing=1", "config key train.label_smoothing: must be in [0, 1), got 1.0"),
    ("train.step_epochs=[3, -1]", "config key train.step_epochs[1]: must be at least 0, got -1"),
    ("augment.flip=1.5", "config key augment.flip: must be in [0, 1], got 1.5"),
    ("augment.stroke_dropout=-1", "config key augment.stroke_dropout: must be in [0, 1], got -1.0"),
    ("val.batch_size=0", "config key val.batch_size: must be at least 1, got 0"),
    ("data.source_weights={pseudo: -1}", "config key data.source_weights.pseudo: must be at least 0, got -1.0"),
    ("data.source_caps={pseudo: 2.5}", "config key data.source_caps.pseudo: expected an integer, got 2.5"),
    ("data.source_weights=3", "config key data.source_weights: expected a mapping, got 3"),
    ("data.source_weights={1: 2}", "config key data.source_weights: keys must be text, got 1"),
    ("data.exclude_folds=[-1]", "config key data.exclude_folds[0]: must be at least 0, got -1"),
])
def test_numbers_out_of_range_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/demo.yaml", [override])
    assert message in str(e.value)


@pytest.mark.parametrize("section, key, value", [
    ("augment", "flip", 1.0), ("augment", "flip", 0.0), ("train", "label_smoothing", 0.0),
    ("data", "val_per_class", 0), ("train", "max_minutes", 0.0), ("data", "img_size", 8),
    ("data", "img_size", 1024), ("train", "ema_decay", 0.99999), ("augment", "rotate", 180.0),
])
def test_range_edges_are_accepted(section, key, value):
    cfg = load_config(ROOT / "configs/demo.yaml", [f"{section}.{key}={value}"])
    assert getattr(getattr(cfg, section), key) == value


def _allowed(alias) -> tuple[str, ...]:
    return typing.get_args(alias)


def test_every_allowed_value_is_accepted_where_it_is_used():
    """The config's closed sets are exactly what the consumers take (they keep their own checks)."""
    import torch

    from doodle.render.raster import ENCODINGS, RasterSpec
    from doodle.train.engine import resolve_precision
    from doodle.train.optim import build_optimizer, build_scheduler

    assert set(_allowed(config.Encoding)) == set(ENCODINGS)
    for encoding in _allowed(config.Encoding):
        assert RasterSpec(encoding=encoding).channels >= 1
    model = torch.nn.Linear(2, 2)
    for name in _allowed(config.Optimizer):
        optimizer = build_optimizer(load_config(None, [f"train.optimizer={name}"]), model)
        assert isinstance(optimizer, torch.optim.Optimizer)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for name in _allowed(config.Scheduler):
        build_scheduler(load_config(None, [f"train.scheduler={name}"]), opt).step(0.5)
    for amp in _allowed(config.Amp):
        if amp == "fp16":
            with pytest.raises(ValueError, match="fp16 needs CUDA"):
                resolve_precision(amp, torch.device("cpu"))
        else:
            resolve_precision(amp, torch.device("cpu"))
    predict = command_module(ROOT / "src/predict.py")
    for tta in _allowed(config.Tta):
        assert predict.parse_args(["--run", "r", "--test", "t.csv", "--tta", tta]).tta == tta


@pytest.mark.parametrize("cls, key, spec_key", [
    (config.DataCfg, "img_size", "size"), (config.RasterCfg, "line_width", "line_width"),
    (config.RasterCfg, "floor", "floor"),
])
def test_raster_limits_in_the_config_are_the_renderers(cls, key, spec_key):
    from doodle.render.raster import RasterSpec

    _, bounds = typing.get_args(typing.get_type_hints(cls, include_extras=True)[key])
    RasterSpec(**{spec_key: bounds.lo})
    RasterSpec(**{spec_key: bounds.hi})
    for outside in (bounds.lo - 1, bounds.hi + 1):
        with pytest.raises(ValueError):
            RasterSpec(**{spec_key: outside})


@pytest.mark.parametrize("script", ["src/train.py", "tools/show.py"])
def test_set_takes_several_assignments_at_once(script):
    parse_args = command_module(ROOT / script).parse_args
    args = parse_args(["--cfg", "c.yaml", "--set", "a.b=1", "c.d=2", "--set", "e.f=3", "--seed", "4"])
    assert args.set == ["a.b=1", "c.d=2", "e.f=3"] and args.seed == 4
    assert parse_args(["--cfg", "c.yaml"]).set == []


def test_train_cli_reports_an_enum_typo_in_one_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1",
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [sys.executable, str(ROOT / "src/train.py"), "--cfg", str(ROOT / "configs/demo.yaml"),
           "--set", "val.tta=flp"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-1500:]
    assert res.stderr.strip().splitlines() == [
        "error: config key val.tta: 'flp' is not one of none, flip (did you mean 'flip'?)"]
