"""Shared fixtures: the bundled sample (input/sample/), Kaggle-format files written on the fly, and one
prepared sample store per session (tests read it and must not write into it).

The doodle modules are imported inside the fixtures, so test files that need none of them stay light.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# Fuzz tests explore a fixed set of cases in CI (reproducible failures, no flakes); set
# HYPOTHESIS_PROFILE=explore to draw fresh random cases locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Under pytest-xdist (`make test` runs a worker per core) each worker's torch, and the training runs its tests
# start (they inherit the variable), get the worker's share of the cores: every worker using all of them would
# oversubscribe the CPU and slow every test down.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "input" / "sample"
KAGGLE_HEADER = ["countrycode", "drawing", "key_id", "recognized", "timestamp", "word"]
# DOODLE_GPU_TESTS_ON_CPU=1 runs the gpu-marked tests on the CPU (their CUDA-only checks skip, each with its
# reason): a check of the tests' own code on a machine without a GPU, not of the CUDA paths
GPU_TESTS_ON_CPU = "DOODLE_GPU_TESTS_ON_CPU"
NEEDS_CUDA = ("needs CUDA: torch.cuda.is_available() is False here (bash tools/gpu_check.sh runs the gpu tests "
              "on a GPU)")


def pytest_collection_modifyitems(config, items):
    """Each `gpu`-marked test is skipped where CUDA is missing, with the reason (listed by -rs, never silent)."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu or os.environ.get(GPU_TESTS_ON_CPU) == "1":
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason=NEEDS_CUDA))


@pytest.fixture(scope="session")
def gpu_device():
    """The device of the gpu-marked tests: CUDA (the CPU only under DOODLE_GPU_TESTS_ON_CPU=1)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled 27-class sample: train_simplified/*.csv, raw/*.ndjson, test_simplified.csv, test_labels.csv."""
    assert (SAMPLE / "classes.txt").is_file(), f"{SAMPLE} is missing; it ships with the repository"
    return SAMPLE


@pytest.fixture(scope="session")
def sample_classes(sample_dir) -> list[str]:
    return [w for w in (sample_dir / "classes.txt").read_text().splitlines() if w]


@pytest.fixture(scope="session")
def make_opts(sample_classes) -> Callable:
    """PrepareOptions for the sample classes (or `classes`), with Google's 345 words as the known ones."""
    from doodle import resources
    from doodle.store.prepare import PrepareOptions

    def make(classes: list[str] | None = None, **kw) -> PrepareOptions:
        return PrepareOptions(classes=list(classes or sample_classes), all_known=set(resources.google_classes()),
                              **kw)
    return make


def kaggle_row(key_id, word, strokes, countrycode="US", recognized="True",
               timestamp="2017-03-01 12:00:00.000000") -> dict:
    """One Kaggle train row; `strokes` is a list of [xs, ys] or a ready-made drawing string."""
    drawing = strokes if isinstance(strokes, str) else json.dumps(strokes, separators=(", ", ": "))
    return {"countrycode": countrycode, "drawing": drawing, "key_id": str(key_id),
            "recognized": recognized, "timestamp": timestamp, "word": word}


@pytest.fixture
def write_kaggle_csv() -> Callable[..., Path]:
    """Write rows (dicts from `kaggle_row`) as a Kaggle CSV the way Kaggle quotes it (only the drawing)."""
    def write(path: Path, rows: list[dict], header: list[str] = KAGGLE_HEADER) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, header, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        return path
    return write


@pytest.fixture(scope="session")
def kaggle_store(tmp_path_factory) -> Path:
    """The sample prepared over Kaggle's 340 classes, as training sees the real data (read-only for tests)."""
    from helpers import prepare_sample

    return prepare_sample(tmp_path_factory.mktemp("kaggle_store") / "store")


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory, sample_dir, make_opts) -> tuple[Path, dict]:
    """The sample's train CSVs and raw ndjson prepared once (read-only for tests): (store folder, summary)."""
    from doodle.store.prepare import prepare

    out = tmp_path_factory.mktemp("sample_store") / "store"
    summary = prepare([sample_dir / "train_simplified", sample_dir / "raw"], out, make_opts())
    return out, summary
