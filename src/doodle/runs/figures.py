"""The report's figures: learning curves, per-class accuracy, quotas, image grids and channels.

Drawn on matplotlib `Figure`s with the Agg canvas, so no GUI backend or pyplot state is involved; each
function saves its PNG and returns the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from doodle.runs.report import Run

GOOD, BAD = "#1a7f37", "#cf222e"


def save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_curves(run: Run, path: Path) -> Path:
    """Loss, validation MAP@3 / accuracy, training accuracy and learning rate per epoch, one colour per fold."""
    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2).ravel()
    panels = [("loss", [("train/loss", "-", "train"), ("val/loss", "--", "val")]),
              ("validation MAP@3 and accuracy", [("val/map3", "-", "MAP@3"), ("val/acc1", "--", "acc@1")]),
              ("training accuracy (augmented batches)", [("train/acc1", "-", "acc@1")]),
              ("learning rate (end of epoch)", [("train/lr", "-", "lr")])]
    for ax, (title, series) in zip(axes, panels, strict=True):
        for i, f in enumerate(run.folds):
            for col, style, label in series:
                if col in f.metrics:
                    ax.plot(f.metrics["epoch"], f.metrics[col], style, marker="o", ms=3, color=f"C{i}",
                            label=f"fold {f.k} {label}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("cross-entropy")
    axes[1].set_ylabel("score")
    axes[2].set_ylabel("accuracy")
    axes[3].set_ylabel("lr")
    fig.suptitle(f"{run.name}: learning curves")
    fig.tight_layout()
    return save(fig, path)


def plot_class_accuracy(acc: np.ndarray, counts: np.ndarray, classes: list[str], path: Path,
                        n: int = 20) -> Path:
    """Horizontal bars of the n worst and n best classes by top-1 accuracy (halves when fewer classes)."""
    valid = np.flatnonzero(counts > 0)
    order = valid[np.lexsort((np.array(classes, dtype=object)[valid], acc[valid]))]
    n = min(n, (len(order) + 1) // 2)
    fig = Figure(figsize=(11, 0.26 * n + 1.4))
    for ax, idx, title, colour in zip(fig.subplots(1, 2), (order[:n], order[::-1][:n]),
                                      (f"worst {n} classes", f"best {n} classes"), (BAD, GOOD), strict=True):
        y = np.arange(len(idx))
        ax.barh(y, acc[idx], color=colour, alpha=0.8)
        ax.set_yticks(y, [f"{classes[i]} (n={counts[i]})" for i in idx], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("top-1 accuracy (out-of-fold)")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        for yi, i in zip(y, idx, strict=True):
            ax.text(min(acc[i] + 0.01, 0.9), yi, f"{acc[i]:.2f}", va="center", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_quotas(quotas: pd.DataFrame, path: Path, title: str, n: int = 15) -> Path:
    """Heatmap of the classes with the largest and smallest last-epoch quota, plus min/median/max lines."""
    last = quotas.iloc[-1].sort_values(ascending=False, kind="stable")
    names = list(last.index) if len(last) <= 2 * n else [*last.index[:n], *last.index[-n:]]
    data = quotas[names].T.to_numpy()
    fig = Figure(figsize=(0.4 * max(len(quotas), 6) + 6.5, 0.27 * len(names) + 1.8))
    ax, ax2 = fig.subplots(1, 2, width_ratios=[max(len(quotas), 6) + 3, 6])
    im = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xticks(range(len(quotas)), [str(e) for e in quotas.index])
    ax.set_xlabel("epoch")
    if len(names) < len(last):
        ax.axhline(n - 0.5, color="white", lw=2)
    if data.size <= 600:
        for (r, c), v in np.ndenumerate(data):
            ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7,
                    color="black" if v > data.max() * 0.6 else "white")
    fig.colorbar(im, ax=ax, label="drawings per epoch", fraction=0.06, pad=0.02)
    ax.set_title(title, fontsize=10)
    for q, style in ((0.0, ":"), (0.5, "-"), (1.0, "--")):
        ax2.plot(quotas.index, quotas.quantile(q, axis=1), style, marker="o", ms=3, color="C0",
                 label={0.0: "min", 0.5: "median", 1.0: "max"}[q])
    ax2.set_title("quota over all classes", fontsize=10)
    ax2.set_xlabel("epoch")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_ylabel("drawings per class")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 as displayed: grey for one channel, the first three channels as RGB otherwise."""
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 2:
        return np.concatenate([img, np.zeros_like(img[..., :1])], axis=2)
    return img[..., :3]


def plot_image_grid(rows: list[tuple[str, list[tuple[np.ndarray, str, str]]]], path: Path, title: str) -> Path:
    """Rows of (label, [(image, caption, colour)]): each image is the channel composite the model sees."""
    ncol = max(len(cells) for _, cells in rows)
    fig = Figure(figsize=(1.55 * ncol + 1.6, 1.75 * len(rows) + 0.6))
    axes = np.asarray(fig.subplots(len(rows), ncol, squeeze=False))
    for (label, cells), line in zip(rows, axes, strict=True):
        for j, ax in enumerate(line):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(cells):
                ax.set_axis_off()
                continue
            img, caption, colour = cells[j]
            ax.imshow(to_rgb(img), interpolation="nearest")
            ax.set_title(caption, fontsize=8, color=colour)
        line[0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def plot_channels(images: list[np.ndarray], labels: list[str], channel_names: tuple[str, ...], path: Path) -> Path:
    """Each drawing's channels side by side (grey, black = no ink), then their composite."""
    ncol = len(channel_names) + (len(channel_names) > 1)
    fig = Figure(figsize=(1.7 * ncol + 1.6, 1.8 * len(images) + 0.6))
    axes = np.asarray(fig.subplots(len(images), ncol, squeeze=False))
    for img, label, line in zip(images, labels, axes, strict=True):
        for j, ax in enumerate(line):
            if j < len(channel_names):
                ax.imshow(img[..., j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                ax.set_title(channel_names[j], fontsize=8)
            else:
                ax.imshow(to_rgb(img), interpolation="nearest")
                ax.set_title("composite", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        line[0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    fig.suptitle("channels of the input (0 = background; ink is mapped to floor..255)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_reliability(curves: dict[str, dict], path: Path, title: str) -> Path:
    """Reliability diagram: accuracy of the top guess against its confidence, per confidence bin, one line per
    curve (`metrics.reliability` dicts, e.g. before / after temperature scaling), with the bins' share below."""
    fig = Figure(figsize=(6.5, 7))
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    width = 1 / len(next(iter(curves.values()))["count"])
    for i, (name, r) in enumerate(curves.items()):
        used = r["count"] > 0
        centres = (r["edges"][:-1] + r["edges"][1:]) / 2
        top.plot(r["confidence"][used], r["accuracy"][used], "-o", ms=4, color=f"C{i}", label=name)
        bottom.bar(centres + (i - 0.5) * width / 2, r["count"] / r["count"].sum(), width / 2, color=f"C{i}")
    top.set_ylabel("accuracy of the top guess")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_xlabel("confidence of the top guess")
    bottom.set_ylabel("share of drawings")
    bottom.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
