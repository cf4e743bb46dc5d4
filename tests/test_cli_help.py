"""Every command-line entry point starts, and every benchmark module imports (the benchmarks themselves need
the shared data, so `make test` cannot run them; this catches a refactor that breaks their imports)."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tools").glob("*.py")) + [
    "src/train.py", "src/predict.py"]
BENCHMARKS = sorted(p.stem for p in (ROOT / "tools/benchmarks").glob("*.py") if p.stem != "__init__")


def test_there_is_something_to_check():
    assert len(ENTRY_POINTS) >= 12 and "tools/bench.py" in ENTRY_POINTS
    assert {"prepare", "raster", "loader", "train", "submission", "app", "seq"} <= set(BENCHMARKS)


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_entry_point_answers_help(script):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("usage:")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_module_imports(name, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    mod = importlib.import_module(f"benchmarks.{name}")
    assert callable(mod.run)
