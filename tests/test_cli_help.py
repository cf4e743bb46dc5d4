"""Every command-line entry point starts, and every benchmark module imports (the benchmarks themselves need
the shared data, so `make test` cannot run them; this catches a refactor that breaks their imports)."""

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import run_telling_imports

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tools").glob("*.py")) + [
    "src/train.py", "src/predict.py"]
CONSOLE_SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BENCHMARKS = sorted(p.stem for p in (ROOT / "tools/benchmarks").glob("*.py") if not p.stem.startswith("_"))


def test_there_is_something_to_check():
    assert len(ENTRY_POINTS) >= 12 and "tools/bench.py" in ENTRY_POINTS
    assert {"doodle-train", "doodle-predict", "doodle-prepare", "doodle-ensemble", "doodle-submit",
            "doodle-download"} <= set(CONSOLE_SCRIPTS)
    assert {"prepare", "raster", "loader", "train", "submission", "app", "seq"} <= set(BENCHMARKS)


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_entry_point_answers_help(script):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("usage:")


def test_the_gpu_check_answers_help():
    """`bash tools/gpu_check.sh --help` (README) prints its usage without touching a GPU."""
    res = subprocess.run(["bash", str(ROOT / "tools/gpu_check.sh"), "--help"], cwd=ROOT,
                         env={**os.environ, "PY": sys.executable}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("usage: tools/gpu_check.sh") and "--cpu-dry-run" in res.stdout


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_module_imports(name, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    mod = importlib.import_module(f"benchmarks.{name}")
    assert callable(mod.run)


@pytest.mark.parametrize("name", sorted(CONSOLE_SCRIPTS))
def test_console_script_answers_help(name, monkeypatch, capsys):
    """What `pip install -e .` installs as `name` (pyproject's [project.scripts]) starts and prints its usage."""
    module, func = CONSOLE_SCRIPTS[name].split(":")
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exc:
        getattr(importlib.import_module(module), func)()
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


SHIMS = ["src/train.py", "src/predict.py", "src/app.py"] + [
    str(p.relative_to(ROOT)) for p in (ROOT / "tools").glob("*.py") if p.stem not in ("bench", "demo", "gpu_check")]


@pytest.mark.parametrize("script", SHIMS)
def test_entry_scripts_are_shims_over_the_package(script):
    """The documented scripts only call into the package: their code lives in doodle.* (and is tested there)."""
    code = [ln for ln in (ROOT / script).read_text().splitlines() if ln.strip() and not ln.startswith(("#", '"""'))]
    assert any(ln.startswith("from doodle.") for ln in code) and len(code) <= 12, code


def test_bench_train_refuses_a_run_without_summary_before_timing(tmp_path, monkeypatch):
    """`bench.py train --run DIR` checks DIR first: a wrong path used to fail after minutes of timing."""
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    bench = importlib.import_module("benchmarks.train")
    args = SimpleNamespace(run=tmp_path / "outputs/r18_boost", data=tmp_path / "no-data", min_drawings=120)
    with pytest.raises(SystemExit, match="no summary.json there"):
        next(iter(bench.run(args)))


@pytest.mark.parametrize("script, args, code, says", [
    ("src/train.py", ["--help"], 0, "usage: "),
    ("src/train.py", ["--cfg", "configs/r18.yaml", "--fodl", "0"], 2, "unrecognized arguments: --fodl"),
    ("src/train.py", ["--cfg", "configs/r18.yaml", "--set", "train.lrr=1"], 2, "train.lrr"),
    ("src/train.py", ["--cfg", "configs/r18.yaml", "--set", "val.tta=flp"], 2, "flp"),
    ("src/predict.py", ["--help"], 0, "usage: "),
    ("src/predict.py", ["--run", "outputs/x", "--tta", "flp"], 2, "invalid choice: 'flp'"),
    ("tools/ensemble.py", ["--help"], 0, "usage: "),
    ("tools/ensemble.py", ["outputs/x", "--method", "stak"], 2, "invalid choice: 'stak'"),
    ("tools/pseudo.py", ["--help"], 0, "usage: "),
    ("tools/export.py", ["--help"], 0, "usage: "),
    ("tools/export.py", ["--run", "outputs/x", "--format", "onxx"], 2, "invalid choice: 'onxx'"),
    ("tools/report.py", ["--help"], 0, "usage: "),
], ids=["train-help", "train-option", "train-key", "train-value", "predict-help", "predict-option", "ensemble-help",
        "ensemble-option", "pseudo-help", "export-help", "export-option", "report-help"])
def test_commands_answer_help_and_mistakes_before_torch_loads(script, args, code, says):
    """Importing torch and timm takes ~10 s on a 2-core CPU: `--help`, a mistyped option and a wrong config key
    or value must not wait for it (train and predict parse, and load the config, before importing their recipe;
    the ensemble and pseudo-label tools need torch only for exported members, export only after its arguments,
    report only for its inputs section)."""
    res, imported = run_telling_imports(script, *args)
    assert res.returncode == code, res.stderr[-2000:]
    assert says in res.stdout + res.stderr
    assert "torch" not in imported and "timm" not in imported, imported
