"""Strict config: defaults, base:, --set, unknown keys and wrong types named with a suggestion."""

from pathlib import Path

import pytest

from doodle.config import ConfigError, load_config, load_resolved, save_config

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
    with pytest.raises(ConfigError, match="cannot have a base"):
        load_config(tmp_path / "a.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs/r18_boost.yaml", ["augment.albumentations=[{name: Blur, params: {blur_limit: 3}}]"])
    save_config(cfg, tmp_path / "config.yaml", {"fold": 2, "seed": 7})
    again, facts = load_resolved(tmp_path / "config.yaml")
    assert again == cfg and facts == {"fold": 2, "seed": 7}
    assert again.augment.albumentations[0].name == "Blur"
