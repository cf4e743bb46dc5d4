"""What every benchmark shares: the repository root, the one-core setup, the naive baseline import, a timer,
and a store prepared in a temporary folder exactly as `tools/prepare.py` prepares one."""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from doodle import resources
from doodle.store.format import Store
from doodle.store.prepare import PrepareOptions, prepare

ROOT = Path(__file__).resolve().parents[2]


def one_core() -> None:
    """One-core figures: no library thread pools on either side (our kernels have no parallel loops)."""
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def import_naive(folder: Path):
    """`folder/naive_baseline.py` as a module (loaded by path: the baseline is not a package of ours)."""
    spec = importlib.util.spec_from_file_location("naive_baseline", Path(folder) / "naive_baseline.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["naive_baseline"] = mod
    spec.loader.exec_module(mod)
    return mod


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """fn()'s result and the seconds it took."""
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls of fn, after one warm-up call."""
    fn()
    return statistics.median(timed(fn)[1] for _ in range(repeats))


def prepare_options(classes: Sequence[str] | None = None) -> PrepareOptions:
    """Options over `classes` (default: Kaggle's 340), with Google's 345 words as the known ones."""
    return PrepareOptions(classes=list(classes or resources.kaggle_classes()),
                          all_known=set(resources.google_classes()))


def prepared_store(files: Sequence[Path], out: Path, classes: Sequence[str] | None = None,
                   workers: int | None = 1) -> tuple[Store, dict, float]:
    """`files` prepared into `out` (a temporary folder of the caller's): the store, its summary, the seconds."""
    kw = {} if workers is None else {"workers": workers}
    summary, seconds = timed(lambda: prepare(list(files), out, prepare_options(classes), **kw))
    return Store(out), summary, seconds
