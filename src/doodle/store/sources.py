"""Where a store's drawings came from: source names, and pseudo-label folders (train-only drawings).

A drawing's *source* in meta.parquet is the file it was read from, as given to `prepare`; its source *name* is
the folder holding that file (`train_simplified` for Kaggle's files, the folder of a collected or a pseudo-label
set), or the file's stem for a file given on its own without a folder. Training configs weight or cap drawings
by that name (`data.source_weights`, `data.source_caps`).

A *pseudo-label folder* (written by `tools/pseudo.py`) holds `_pseudo.json` (its manifest: name, classes,
threshold, the runs that labelled it) and the labelled drawings as Kaggle CSV rows. Its drawings come from a test
set, so `prepare` gives them fold -1: they are trained on for every fold and validated in none.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from doodle.errors import UserError

PSEUDO_MANIFEST = "_pseudo.json"
TRAIN_ONLY_FOLD = -1


def source_name(source: str) -> str:
    """The name of a source file path: the folder holding it, else (a bare file name) its stem."""
    p = Path(source)
    return p.parent.name or p.stem


def row_sources(store_root: Path, n_rows: int) -> tuple[np.ndarray, list[str]]:
    """Per drawing of the store, the index of its source name in the returned sorted list of names."""
    meta = Path(store_root) / "meta.parquet"
    if not meta.is_file():
        raise UserError(f"{store_root}: no meta.parquet, so no drawing sources; prepare the store again")
    col = pc.dictionary_encode(pq.read_table(meta, columns=["source"])["source"]).combine_chunks()
    if len(col) != n_rows:
        raise UserError(f"{meta}: {len(col)} rows for {n_rows} drawings; prepare the store again")
    paths = col.dictionary.to_pylist()
    names = sorted({source_name(p) for p in paths})
    path_to_name = np.array([names.index(source_name(p)) for p in paths], np.int32)
    return path_to_name[col.indices.to_numpy(zero_copy_only=False)], names


def is_pseudo_folder(folder: str | Path) -> bool:
    return (Path(folder) / PSEUDO_MANIFEST).is_file()


def read_pseudo_manifest(folder: str | Path) -> dict:
    """A pseudo-label folder's manifest; a one-line error for a missing or broken one."""
    path = Path(folder) / PSEUDO_MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable pseudo-label manifest ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("classes"), list):
        raise UserError(f"{path}: not a pseudo-label manifest (no classes list)")
    return manifest


def check_pseudo_classes(folder: str | Path, classes: list[str]) -> dict:
    """The manifest of a pseudo-label folder whose labels were chosen among exactly `classes` (any order).

    A drawing pseudo-labelled by a model of other classes was never weighed against the missing ones (or was
    given a class this store does not have): refused, naming the folder and a differing class."""
    manifest = read_pseudo_manifest(folder)
    theirs, ours = set(manifest["classes"]), set(classes)
    if theirs != ours:
        diff = sorted(theirs - ours)
        what = (f"{diff[0]!r} is not among this store's" if diff
                else f"{sorted(ours - theirs)[0]!r} is missing from them")
        raise UserError(f"{Path(folder) / PSEUDO_MANIFEST}: pseudo-labels chosen among {len(theirs)} classes, this "
                        f"store has {len(ours)} ({what}); pseudo-label with models of the store's classes")
    return manifest
