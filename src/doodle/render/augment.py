"""Augmentation from config: stroke-space transforms on `Drawings` (cost independent of image size) and an
optional albumentations pipeline on the rendered images.

Stroke-space transforms act on a whole batch at once in the 0..255 box: one random affine per drawing
(scale, aspect stretch, rotation, shear, shift, horizontal flip about the box centre), stroke dropout
(never every stroke of a drawing) and per-point jitter. Each returns `Drawings` of the same rows (a `Batch`
keeps its metadata).
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import replace

import numpy as np

from doodle.config import AlbuCfg, AugmentCfg
from doodle.drawing.flat import Drawings
from doodle.errors import UserError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

CENTRE = 127.5


def flip_x(d: Drawings) -> Drawings:
    """Mirror left-right in the 0..255 box (x -> 255 - x), keeping the coordinates' dtype.

    Flipping twice gives the input exactly for the store's integer coordinates (and to within float32
    rounding for augmented ones).
    """
    xy = d.xy.copy()
    xy[:, 0] = 255 - xy[:, 0]
    return replace(d, xy=xy)


def random_affine(n: int, cfg: AugmentCfg, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-drawing 2x2 matrices and shifts (in box pixels)."""
    s = 1.0 + rng.uniform(-cfg.scale, cfg.scale, n)
    sx = s * (1.0 + rng.uniform(-cfg.stretch, cfg.stretch, n))
    theta = np.deg2rad(rng.uniform(-cfg.rotate, cfg.rotate, n))
    shear = rng.uniform(-cfg.shear, cfg.shear, n)
    flip = np.where(rng.random(n) < cfg.flip, -1.0, 1.0)
    c, si = np.cos(theta), np.sin(theta)
    # M = R @ Shear @ diag(sx * flip, s)
    m = np.empty((n, 2, 2))
    m[:, 0, 0] = c * sx * flip
    m[:, 0, 1] = (c * shear - si) * s
    m[:, 1, 0] = si * sx * flip
    m[:, 1, 1] = (si * shear + c) * s
    shift = rng.uniform(-cfg.shift, cfg.shift, (n, 2)) * 255.0
    return m, shift


def drop_strokes(d: Drawings, prob: float, rng: np.random.Generator) -> Drawings:
    """Drop each stroke with probability `prob`, keeping at least one stroke per drawing (its first)."""
    if prob <= 0 or len(d.stroke_len) == 0:
        return d
    keep = rng.random(len(d.stroke_len)) >= prob
    owner = np.repeat(np.arange(len(d)), d.n_strokes)
    kept_per = np.bincount(owner[keep], minlength=len(d))
    first = np.cumsum(d.n_strokes) - d.n_strokes
    keep[first[(kept_per == 0) & (d.n_strokes > 0)]] = True  # never empty a drawing
    pts = np.repeat(keep, d.stroke_len)
    n_strokes = np.bincount(owner[keep], minlength=len(d)).astype(np.int32)
    return replace(d, xy=d.xy[pts], t=d.t[pts], stroke_len=d.stroke_len[keep], n_strokes=n_strokes)


class StrokeAugment:
    """Random stroke-space augmentation of a batch; deterministic for a given Generator state."""

    def __init__(self, cfg: AugmentCfg):
        self.cfg = cfg

    def __call__(self, d: Drawings, rng: np.random.Generator) -> Drawings:
        """The batch with float32 coordinates, each drawing moved by its own random affine."""
        cfg = self.cfg
        d = drop_strokes(d, cfg.stroke_dropout, rng)
        m, shift = random_affine(len(d), cfg, rng)
        owner = np.repeat(np.arange(len(d)), d.points_per_drawing())
        centred = d.xy.astype(np.float64) - CENTRE
        xy = np.einsum("pij,pj->pi", m[owner], centred) + CENTRE + shift[owner]
        if cfg.point_jitter > 0:
            xy += rng.normal(0.0, cfg.point_jitter, xy.shape)
        return replace(d, xy=xy.astype(np.float32))


def build_albumentations(items: list[AlbuCfg]):
    """An albumentations Compose from config entries `{name: Affine, params: {...}}`, or None if empty.

    Only albumentations 2.x names are accepted: albumentations merely warns about an argument it does not
    know (a 1.x name such as GaussNoise's `var_limit` is silently ignored) or a deprecated transform, so
    any warning while building a transform is turned into an error naming the entry.
    """
    if not items:
        return None
    import albumentations as A

    transforms = []
    for i, item in enumerate(items):
        where = f"augment.albumentations[{i}]"
        cls = getattr(A, item.name, None)
        if cls is None or not isinstance(cls, type):
            names = [n for n in dir(A) if n[:1].isupper()]
            close = difflib.get_close_matches(item.name, names, n=3)
            raise UserError(f"{where}.name: unknown transform {item.name!r}"
                             + (f" (did you mean {', '.join(close)}?)" if close else ""))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                transforms.append(cls(**item.params))
            except (TypeError, ValueError) as e:
                raise UserError(f"{where} ({item.name}): bad params {item.params}: {e}") from None
        if caught:
            raise UserError(f"{where} ({item.name}): {caught[0].message} (albumentations {A.__version__} "
                             "names only)")
    return A.Compose(transforms)


def apply_albumentations(pipeline, images: np.ndarray) -> np.ndarray:
    """Apply a Compose to each (H, W, C) uint8 image of a batch."""
    if pipeline is None:
        return images
    return np.stack([pipeline(image=im)["image"] for im in images])
