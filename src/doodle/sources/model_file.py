"""Fetch an exported model (`.onnx` / `.doodle`) by URL or path, resumably, and verify its sha256.

The bytes go to `<name>.unverified` (through `google.download_file`'s resumable `.part`); the file gets its
final name only once the checksum matches, so a half-downloaded or altered file is never used. A mismatch
deletes the unverified copy and says so, naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

from doodle.errors import UserError
from doodle.sources.google import DownloadError, download_file

log = logging.getLogger(__name__)
MODEL_SUFFIXES = (".onnx", ".doodle")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_name(source: str) -> str:
    """The file name a URL or path ends with; it must be an exported model's."""
    name = Path(unquote(urlsplit(source).path) if "://" in source else source).name
    if Path(name).suffix not in MODEL_SUFFIXES:
        raise UserError(f"{source}: not an exported model's name (expected *{' or *'.join(MODEL_SUFFIXES)})")
    return name


def fetch_model(source: str, dest: Path, sha256: str, timeout: float = 60.0, progress: bool = True) -> dict:
    """`source` (http(s) URL or local path) -> `dest/<name>`, checksum verified; {'path', 'outcome'}."""
    sha256 = sha256.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise UserError(f"--sha256 {sha256!r}: expected 64 hex digits")
    final = Path(dest) / model_name(source)
    if final.exists():
        if file_sha256(final) != sha256:
            raise DownloadError(f"{final}: present but its sha256 is not {sha256}; delete it to fetch it again")
        return {"path": str(final), "outcome": "skipped"}
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(final.name + ".unverified")
    if "://" in source:
        outcome = download_file(source, staging, timeout=timeout, progress=progress)
    elif Path(source).is_file():
        shutil.copyfile(source, staging)
        outcome = "copied"
    else:
        raise FileNotFoundError(f"{source}: no such model file (and not an http(s) URL)")
    got = file_sha256(staging)
    if got != sha256:
        staging.unlink()
        raise DownloadError(f"{final}: sha256 {got} does not match the expected {sha256}; the download was "
                            "deleted (a wrong URL, or an altered or corrupt file)")
    os.replace(staging, final)
    log.info("%s: %s, sha256 verified", final, outcome)
    return {"path": str(final), "outcome": outcome}
