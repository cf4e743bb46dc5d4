"""Save a PNG grid of drawings exactly as the model sees them: the image, then each channel alone.

    python tools/show.py --store input/store --n 32 --out samples.png [--augment] [--cfg configs/r18.yaml]
                         [--size 128] [--set raster.encoding=rt3] [--seed 0]

Each drawing gets a block captioned with its word (and "timed" when it has real times): the first row is
the plain input (colour composite, then each channel in grey), the second, with --augment, is the same
drawing through the training augmentation of the config. Inputs come from the same dataset code as
training (`doodle.train.data.BatchDataset`), so what you see is what the model gets.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from doodle import cli
from doodle.config import load_config
from doodle.render.raster import (
    ENCODINGS,
    raster_spec,
)
from doodle.store.format import Store
from doodle.train.data import BatchDataset, Split

GAP, BLOCK_GAP, CAPTION = 2, 12, 16  # pixels between panels, between blocks, above a block
BACKGROUND, PANEL_EDGE = 0.82, 0.55  # figure grey, and the frame drawn around each black panel


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--store", type=Path, default=Path("input/store"), help="prepared store folder")
    p.add_argument("--n", type=int, default=32, help="how many drawings")
    p.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG to write")
    p.add_argument("--augment", action="store_true", help="add a row through the training augmentation")
    p.add_argument("--cfg", type=Path, default=Path("configs/r18.yaml"), help="config giving the raster spec")
    p.add_argument("--size", type=int, help="image size (overrides data.img_size)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys: --set a.b=1 c.d=2 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="which drawings, and the augmentation's randomness")
    return cli.add_debug_flag(p).parse_args(argv)


def panels(image: np.ndarray, zoom: int) -> list[np.ndarray]:
    """(H, W, C) uint8 -> float RGB panels in 0..1: the composite (if C > 1), then each channel in grey.

    Small images are enlarged `zoom` times (whole pixels, no smoothing) so strokes stay visible on screen.
    """
    im = np.repeat(np.repeat(image, zoom, axis=0), zoom, axis=1).astype(np.float32) / 255.0
    grey = [np.repeat(im[..., c : c + 1], 3, axis=2) for c in range(im.shape[2])]
    return grey if im.shape[2] == 1 else [im[..., :3], *grey]


def mosaic(rows_per_block: list[list[np.ndarray]], size: int, cols: int) -> tuple[np.ndarray, list]:
    """Blocks (each a list of rows of panels) laid out `cols` per line; returns the image and caption spots."""
    n_rows, n_panels = len(rows_per_block[0]), len(rows_per_block[0][0])
    bw = n_panels * size + (n_panels - 1) * GAP
    bh = CAPTION + n_rows * size + (n_rows - 1) * GAP
    lines = math.ceil(len(rows_per_block) / cols)
    canvas = np.full((BLOCK_GAP + lines * (bh + BLOCK_GAP), BLOCK_GAP + cols * (bw + BLOCK_GAP), 3), BACKGROUND,
                     np.float32)
    spots = []
    for k, block in enumerate(rows_per_block):
        x0 = BLOCK_GAP + (k % cols) * (bw + BLOCK_GAP)
        y0 = BLOCK_GAP + (k // cols) * (bh + BLOCK_GAP)
        spots.append((x0, y0 + CAPTION - 3))
        for r, row in enumerate(block):
            for c, panel in enumerate(row):
                y, x = y0 + CAPTION + r * (size + GAP), x0 + c * (size + GAP)
                canvas[y - 1 : y + size + 1, x - 1 : x + size + 1] = PANEL_EDGE
                canvas[y : y + size, x : x + size] = panel
    return canvas, spots


def render_inputs(store: Store, idx: np.ndarray, cfg, augment: bool, seed: int) -> list[np.ndarray]:
    """The uint8 (B, H, W, C) batches the model would get: plain, and augmented when asked."""
    split = Split(store.classes, idx, idx, np.arange(len(store.classes)))
    out = [BatchDataset(store, split, cfg)[idx.tolist()]["image"].numpy()]
    if augment:
        out.append(BatchDataset(store, split, cfg, train=True, seed=seed)[idx.tolist()]["image"].numpy())
    return out


def save_figure(canvas: np.ndarray, spots: list, captions: list[str], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi, top = 100, 40
    h, w = canvas.shape[:2]
    fig = plt.figure(figsize=(w / dpi, (h + top) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, h / (h + top)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for (x, y), text in zip(spots, captions, strict=True):
        ax.text(x, y, text, fontsize=9, va="bottom", ha="left", family="DejaVu Sans")
    fig.text(0.5, 1 - 6 / (h + top), title, ha="center", va="top", fontsize=10, wrap=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor=(BACKGROUND,) * 3)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.n < 1:
        raise cli.UserError(f"--n must be at least 1, got {args.n}")
    overrides = list(args.set) + ([f"data.img_size={args.size}"] if args.size else [])
    cfg = load_config(args.cfg, overrides)
    spec = raster_spec(cfg)
    store = Store(args.store)
    if len(store) == 0:
        raise cli.UserError(f"{args.store}: the store holds no drawings")
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(store), size=min(args.n, len(store)), replace=False))
    batches = render_inputs(store, idx, cfg, args.augment, args.seed)
    zoom = max(1, 128 // spec.size)
    blocks = [[panels(b[k], zoom) for b in batches] for k in range(len(idx))]
    n_panels = len(blocks[0][0])
    cols = max(1, round(math.sqrt(len(idx) * len(batches) / n_panels)))  # a roughly square picture
    canvas, spots = mosaic(blocks, spec.size * zoom, cols)
    timed = np.asarray(store.arrays["raw"])[idx] if store.info.has_time else np.zeros(len(idx), bool)
    captions = [store.classes[int(store.label[i])] + ("  (timed)" if tm else "") for i, tm in zip(idx, timed,
                                                                                                 strict=True)]
    names = ENCODINGS[spec.encoding]
    columns = " | ".join((["composite"] if len(names) > 1 else []) + list(names))
    rows = "rows: plain / augmented" if args.augment else "plain inputs"
    title = (f"{args.store}  -  {spec.size} px{f' (shown x{zoom})' if zoom > 1 else ''}, encoding {spec.encoding}, line width {spec.line_width}  -  "
             f"columns: {columns}  -  {rows}")
    save_figure(canvas, spots, captions, title, args.out)
    print(args.out)
    return 0


def console() -> int:
    """`doodle-show`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
