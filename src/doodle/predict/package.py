"""The one-file model package (`.doodle`): a zip of JSON and safetensors, written and read without pickle.

    <name>.doodle  (zip, entries stored with fixed timestamps, so the same run gives the same bytes)
        doodle-package.json   format tag, fold, input kind, and the sha256 of every other entry
        config.json           {"config": the run's resolved config, "run": its facts (fold, seed, commit, ...)}
        classes.json          the class list, in the model's output order
        metrics.json          the run's summary.json (+ per-class validation accuracy when the run had it)
        checks.json           what the export verified before writing (package vs run logits)
        weights.safetensors   the state dict (tensors only: safetensors holds no code and runs none)

Reading checks the entry list (nothing more, nothing less), every checksum and every JSON's shape, so a
truncated, foreign or tampered file is refused with an error naming it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from doodle.errors import DoodleError

PACKAGE_FORMAT = "doodle-package/1"
MANIFEST = "doodle-package.json"
ENTRIES = ("config.json", "classes.json", "metrics.json", "checks.json", "weights.safetensors")
_EPOCH = (1980, 1, 1, 0, 0, 0)


class ExportError(DoodleError, ValueError):
    """An exported model (.onnx or .doodle) that cannot be written or used: corrupt, foreign, failed checks."""


@dataclass
class Package:
    """A package's contents: the resolved config and run facts as dicts, classes, metrics, checks, weights."""

    config: dict
    facts: dict
    classes: list[str]
    metrics: dict
    checks: dict
    state_dict: dict[str, torch.Tensor]

    @property
    def fold(self) -> int:
        return int(self.facts.get("fold", 0))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_bytes(pkg: Package) -> bytes:
    """The package as zip bytes (deterministic: same contents, same bytes)."""
    from safetensors.torch import save

    weights = save({k: v.detach().cpu().contiguous() for k, v in pkg.state_dict.items()})
    blobs = {"config.json": _json({"config": pkg.config, "run": pkg.facts}), "classes.json": _json(pkg.classes),
             "metrics.json": _json(pkg.metrics), "checks.json": _json(pkg.checks), "weights.safetensors": weights}
    manifest = {"format": PACKAGE_FORMAT, "fold": pkg.fold, "n_classes": len(pkg.classes),
                "sha256": {name: _sha256(b) for name, b in blobs.items()}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in [(MANIFEST, _json(manifest)), *blobs.items()]:
            z.writestr(zipfile.ZipInfo(name, _EPOCH), data)
    return buf.getvalue()


def _json(obj) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=_plain).encode()


def _plain(obj):
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} into a package")


def read_package(source: str | Path | bytes, name: str | None = None) -> Package:
    """A package file (or its bytes) -> Package; ExportError naming the file for anything not a sound package."""
    name = name or str(source)
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as z:
            listed = sorted(z.namelist())
            if listed != sorted((MANIFEST, *ENTRIES)):
                raise ExportError(f"{name}: not a doodle package (entries {listed[:8]}; expected {MANIFEST} and "
                                  f"{', '.join(ENTRIES)})")
            blobs = {n: z.read(n) for n in (MANIFEST, *ENTRIES)}
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ExportError(f"{name}: truncated or not a doodle package ({type(e).__name__}: {e})") from None
    manifest = _load_json(blobs[MANIFEST], name, MANIFEST, dict)
    if manifest.get("format") != PACKAGE_FORMAT:
        raise ExportError(f"{name}: package format {manifest.get('format')!r}, this code reads {PACKAGE_FORMAT}")
    sums = manifest.get("sha256") or {}
    for entry in ENTRIES:
        if sums.get(entry) != _sha256(blobs[entry]):
            raise ExportError(f"{name}: {entry} does not match its checksum in {MANIFEST} (corrupt or altered)")
    cfg = _load_json(blobs["config.json"], name, "config.json", dict)
    classes = _load_json(blobs["classes.json"], name, "classes.json", list)
    if not isinstance(cfg.get("config"), dict) or not all(isinstance(c, str) for c in classes):
        raise ExportError(f"{name}: config.json or classes.json has the wrong shape")
    return Package(cfg["config"], dict(cfg.get("run") or {}), classes,
                   _load_json(blobs["metrics.json"], name, "metrics.json", dict),
                   _load_json(blobs["checks.json"], name, "checks.json", dict),
                   _load_weights(blobs["weights.safetensors"], name))


def _load_json(data: bytes, name: str, entry: str, kind: type):
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{name}: {entry} is not JSON ({e})") from None
    if not isinstance(obj, kind):
        raise ExportError(f"{name}: {entry} holds a {type(obj).__name__}, expected a {kind.__name__}")
    return obj


def _load_weights(data: bytes, name: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ExportError(f"{name}: weights.safetensors is unreadable ({str(e).splitlines()[0][:100]})") from None
