"""Stroke-space augmentation on flat batches, and the albumentations pipeline built from config."""

import warnings

import numpy as np
import pytest

from doodle.config import AlbuCfg, AugmentCfg
from doodle.drawing.batch import Batch
from doodle.drawing.flat import Drawings
from doodle.render.augment import (
    StrokeAugment,
    apply_albumentations,
    build_albumentations,
    drop_strokes,
    flip_x,
)

NONE = dict(flip=0.0, scale=0.0, stretch=0.0, shift=0.0, rotate=0.0, shear=0.0)


def batch(n_drawings: int = 20, seed: int = 0) -> Drawings:
    """Random drawings in the store's form (uint8 0..255 box): 1-6 strokes of 2-12 points, plus one empty drawing."""
    rng = np.random.default_rng(seed)
    n_strokes = np.append(rng.integers(1, 7, n_drawings), 0).astype(np.int32)
    stroke_len = rng.integers(2, 13, n_strokes.sum()).astype(np.int32)
    xy = rng.integers(0, 256, (stroke_len.sum(), 2)).astype(np.uint8)
    t = np.arange(len(xy), dtype=np.int32) * 10
    return Drawings(xy, t, stroke_len, n_strokes)


def assert_consistent(p: Drawings, xy_dtype=np.float32) -> None:
    p.check()
    assert p.xy.dtype == xy_dtype and p.n_strokes.dtype == np.int32


def test_no_op_config_leaves_points_unchanged():
    p = batch()
    out = StrokeAugment(AugmentCfg(**NONE))(p, np.random.default_rng(0))
    assert_consistent(out)
    np.testing.assert_allclose(out.xy, p.xy, atol=1e-4)


def test_moderate_affine_keeps_drawings_roughly_in_the_box():
    p = batch(200)
    out = StrokeAugment(AugmentCfg())(p, np.random.default_rng(1))  # the defaults are the moderate ones
    assert_consistent(out)
    assert out.xy.min() > -0.25 * 255 and out.xy.max() < 1.25 * 255
    assert ((out.xy >= 0) & (out.xy <= 255)).all(axis=1).mean() > 0.8
    assert np.abs(out.xy - p.xy).max() > 5, "something moved"


def test_flip_probability_one_mirrors():
    p = batch()
    out = StrokeAugment(AugmentCfg(**{**NONE, "flip": 1.0}))(p, np.random.default_rng(0))
    np.testing.assert_allclose(out.xy[:, 0], 255 - p.xy[:, 0], atol=1e-4)
    np.testing.assert_allclose(out.xy[:, 1], p.xy[:, 1], atol=1e-4)


def test_flip_x_twice_is_the_identity():
    p = batch()
    assert np.array_equal(flip_x(flip_x(p)).xy, p.xy)
    assert np.array_equal(flip_x(p).xy[:, 0], 255 - p.xy[:, 0]) and flip_x(p).xy is not p.xy
    assert flip_x(p).xy.dtype == np.uint8
    moved = StrokeAugment(AugmentCfg())(p, np.random.default_rng(0))
    np.testing.assert_allclose(flip_x(flip_x(moved)).xy, moved.xy, atol=1e-4)


def test_a_batch_keeps_its_metadata_through_augmentation():
    p = batch(5)
    b = Batch.of(p, key_id=np.arange(len(p)), word=list("abcdef"), countrycode=[""] * 6,
                 recognized=np.zeros(6, np.int8), timestamp=[""] * 6, line=np.arange(6), raw=np.ones(6, bool))
    out = StrokeAugment(AugmentCfg(stroke_dropout=0.5))(flip_x(b), np.random.default_rng(0))
    assert isinstance(out, Batch) and out.word == b.word and out.key_id is b.key_id
    assert_consistent(out)


@pytest.mark.parametrize("prob", [0.5, 0.99, 1.0])
def test_stroke_dropout_never_empties_a_drawing(prob):
    p = batch(100)
    out = drop_strokes(p, prob, np.random.default_rng(2))
    assert_consistent(out, np.uint8)
    had = p.n_strokes > 0
    assert (out.n_strokes[had] >= 1).all() and (out.n_strokes[~had] == 0).all()
    assert (out.n_strokes <= p.n_strokes).all()
    if prob == 1.0:
        assert (out.n_strokes[had] == 1).all()
        first = np.cumsum(p.n_strokes) - p.n_strokes
        assert np.array_equal(out.stroke_len, p.stroke_len[first[had]]), "the first stroke is the one kept"


def test_dropout_keeps_points_with_their_times():
    p = batch(50)
    out = drop_strokes(p, 0.5, np.random.default_rng(3))
    # times were 10 * point index: each kept point still carries its own
    original = {int(t): tuple(xy) for xy, t in zip(p.xy, p.t, strict=True)}
    assert all(original[int(t)] == tuple(xy) for xy, t in zip(out.xy, out.t, strict=True))


def test_dropout_with_empty_drawings_last_in_the_batch():
    p = batch(3)
    q = Drawings(p.xy, p.t, p.stroke_len, np.append(p.n_strokes, [0, 0]).astype(np.int32))
    out = drop_strokes(q, 0.9, np.random.default_rng(0))
    assert_consistent(out, np.uint8)
    assert list(out.n_strokes[-3:]) == [0, 0, 0] and (out.n_strokes[:-3] >= 1).all()


def test_same_seed_same_augmentation_other_seed_differs():
    cfg = AugmentCfg(stroke_dropout=0.3, point_jitter=1.0)
    p = batch()
    a = StrokeAugment(cfg)(p, np.random.default_rng(42))
    b = StrokeAugment(cfg)(p, np.random.default_rng(42))
    c = StrokeAugment(cfg)(p, np.random.default_rng(43))
    assert np.array_equal(a.xy, b.xy) and np.array_equal(a.stroke_len, b.stroke_len)
    assert not (len(a.xy) == len(c.xy) and np.array_equal(a.xy, c.xy))


def test_albumentations_built_by_name_and_applied():
    items = [AlbuCfg("Affine", {"scale": (0.9, 1.1), "translate_percent": (-0.05, 0.05), "rotate": (-10, 10),
                                "p": 1.0}),
             AlbuCfg("HorizontalFlip", {"p": 0.5})]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipeline = build_albumentations(items)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    out = apply_albumentations(pipeline, images)
    assert out.shape == images.shape and out.dtype == np.uint8 and not np.array_equal(out, images)


def test_horizontal_flip_pipeline_mirrors_images():
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    out = apply_albumentations(build_albumentations([AlbuCfg("HorizontalFlip", {"p": 1.0})]), images)
    assert np.array_equal(out, images[:, :, ::-1])


def test_no_albumentations_is_none_and_passes_images_through():
    images = np.zeros((2, 8, 8, 3), np.uint8)
    assert build_albumentations([]) is None
    assert apply_albumentations(None, images) is images


def test_unknown_transform_is_named_with_suggestions():
    with pytest.raises(ValueError, match=r"albumentations\[1\].name: unknown transform 'Afine'.*Affine"):
        build_albumentations([AlbuCfg("HorizontalFlip", {}), AlbuCfg("Afine", {})])


@pytest.mark.parametrize("item, match", [
    (AlbuCfg("Affine", {"shift_limit": 0.1}), "'shift_limit' are not valid"),  # a 1.x name, ignored by 2.x
    (AlbuCfg("GaussNoise", {"var_limit": (10, 50)}), "'var_limit' are not valid"),  # renamed std_range
    (AlbuCfg("Affine", {"scale": "big"}), "bad params"),
    (AlbuCfg("ShiftScaleRotate", {"shift_limit": 0.1}), "Please use Affine"),  # deprecated in 2.x
])
def test_bad_or_old_params_are_errors(item, match):
    with pytest.raises(ValueError, match=rf"albumentations\[0\] \({item.name}\).*{match}"):
        build_albumentations([item])
