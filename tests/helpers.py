"""Helpers shared by the test modules: load an entry script as a module, prepare the bundled sample as a
340-class store, and the `--set` overrides that shrink a real config to a seconds-long CPU run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "input" / "sample"


def load_script(path: Path):
    """A script (src/train.py, tools/ensemble.py, ...) imported as a module, so tests can call its main()."""
    name = f"{path.parent.name}_{path.stem}_under_test"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses in a script look their module up while being defined
    spec.loader.exec_module(mod)
    return mod


def prepare_sample(out: Path) -> Path:
    """The sample's train CSVs and raw ndjson as a store over Kaggle's 340 classes (as the real data is)."""
    from doodle import resources
    from doodle.store.prepare import PrepareOptions, prepare

    opts = PrepareOptions(classes=resources.kaggle_classes(), all_known=set(resources.google_classes()))
    prepare([SAMPLE / "train_simplified", SAMPLE / "raw"], out, opts)
    return out


def shrink(store: Path, epochs: int, *extra: str) -> list[str]:
    """`--set` arguments: 32 px, 4 drawings per class, 3 per class to validate, `epochs` epochs, no workers."""
    sets = ["data.img_size=32", "data.per_class=4", "data.val_per_class=3", f"train.epochs={epochs}",
            "train.batch_size=32", "data.num_workers=0", "train.max_minutes=0", *extra, f"data.store={store}"]
    return [a for s in sets for a in ("--set", s)]
