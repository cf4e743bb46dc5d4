"""Fixtures for the page's tests: a store of the bundled raw drawings and a tiny trained run on it.

Imported by tests/app/test_page.py, test_app.py and test_app_browser.py (`from conftest_app import ...`). The
run is built once per test session whichever module asks first (a module-level cache, since the same
fixture imported into several modules would otherwise be built once per module).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import command_module

from doodle import resources
from doodle.store.prepare import PrepareOptions, prepare

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "input" / "sample" / "raw"
_BUILT: dict[Path, tuple[Path, Path]] = {}


def train_main():
    return command_module(ROOT / "src" / "train.py").main


def build_tiny_run(base: Path) -> tuple[Path, Path]:
    """(store, outputs root holding tiny/fold0): 1 epoch of resnet18 at 32 px on the 202 raw drawings."""
    if base in _BUILT:
        return _BUILT[base]
    store = base / "store"
    prepare([RAW], store, PrepareOptions(classes=resources.kaggle_classes(),
                                         all_known=set(resources.google_classes()), n_folds=5))
    outputs = base / "outputs"
    train_main()(["--cfg", str(ROOT / "configs" / "demo.yaml"), "--fold", "0", "--out", str(outputs),
                  "--name", "tiny", "--set", f"data.store={store}", "--set", "train.epochs=1",
                  "--set", "data.per_class=8", "--set", "data.img_size=32", "--set", "data.num_workers=0",
                  "--set", "train.max_minutes=0", "--set", "train.batch_size=32", "--no-progress"])
    _BUILT[base] = (store, outputs)
    return store, outputs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(store, outputs): outputs/tiny/fold0 is a finished run whose config points at the store."""
    return build_tiny_run(tmp_path_factory.getbasetemp() / "page_run")


@pytest.fixture
def outputs_copy(tiny_run, tmp_path) -> Path:
    """A private outputs root with the tiny run (tests may add runs next to it)."""
    out = tmp_path / "outputs"
    shutil.copytree(tiny_run[1], out)
    return out
