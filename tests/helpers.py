"""Helpers shared by the test modules: the package module behind an entry script, prepare the bundled sample as a
340-class store, and the `--set` overrides that shrink a real config to a seconds-long CPU run."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "input" / "sample"


# The documented entry scripts -> the package modules they are shims over (each has `main(argv)`).
COMMANDS = {
    "src/train.py": "doodle.train.console", "src/predict.py": "doodle.predict.console",
    **{f"tools/{n}.py": f"doodle.tools.{n}" for n in
       ("prepare", "download", "ensemble", "submit", "report", "compare", "show", "make_sample", "export",
        "synthesize", "collected", "pseudo", "holdout")},
}


def command_module(path: Path):
    """The package module behind an entry script (src/train.py -> doodle.train.console), for its main(argv)."""
    return importlib.import_module(COMMANDS[Path(path).resolve().relative_to(ROOT).as_posix()])


def prepare_sample(out: Path) -> Path:
    """The sample's train CSVs and raw ndjson as a store over Kaggle's 340 classes (as the real data is)."""
    from doodle import resources
    from doodle.store.prepare import PrepareOptions, prepare

    opts = PrepareOptions(classes=resources.kaggle_classes(), all_known=set(resources.google_classes()))
    prepare([SAMPLE / "train_simplified", SAMPLE / "raw"], out, opts)
    return out


def relabel_to_340(sample: Path, out: Path) -> Path:
    """Kaggle `<word>.csv` files for all 340 classes from the sample's 27: class k gets the rows of sample
    class k % 27, relabelled (the shape of the shared data: every class present, some small)."""
    import csv

    from doodle import resources

    files = sorted((sample / "train_simplified").glob("*.csv"))
    out.mkdir(parents=True, exist_ok=True)
    for k, word in enumerate(resources.kaggle_classes()):
        with open(files[k % len(files)], newline="") as f:
            rows = list(csv.DictReader(f))
        with open(out / f"{word}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({**r, "word": word} for r in rows)
    return out


def shrink(store: Path, epochs: int, *extra: str) -> list[str]:
    """`--set` arguments: 32 px, 4 drawings per class, 3 per class to validate, `epochs` epochs, no workers."""
    sets = ["data.img_size=32", "data.per_class=4", "data.val_per_class=3", f"train.epochs={epochs}",
            "train.batch_size=32", "data.num_workers=0", "train.max_minutes=0", *extra, f"data.store={store}"]
    return [a for s in sets for a in ("--set", s)]


# Runs an entry script as `python script ARGS` does, then prints on stderr, last, which heavy modules got imported.
HEAVY = ("torch", "timm", "sklearn", "lightgbm")
_RUN_AND_TELL = f"""
import runpy, sys
sys.argv = sys.argv[1:]
code = 0  # a script that ends without sys.exit
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    code = e.code
print("imported:", ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def run_telling_imports(script: str, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`python ROOT/script ARGS` run in ROOT: the finished process, and which of HEAVY it had imported by the end."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([sys.executable, "-c", _RUN_AND_TELL, str(ROOT / script), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
    assert last.startswith("imported:"), res.stderr[-2000:]
    return res, {m for m in last.removeprefix("imported:").strip().split(",") if m}
