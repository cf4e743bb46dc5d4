"""The Kaggle competition: credentials, an authenticated API, and the competition files.

`tools/download.py kaggle` and `tools/submit.py` both go through here, so a missing or rejected credential
gives the same one-line message (what to set, where the bundled sample is) in both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from doodle.sources.google import SAMPLE_HINT, DownloadError

log = logging.getLogger(__name__)

COMPETITION = "quickdraw-doodle-recognition"
KAGGLE_FILES = ("train_simplified.zip", "test_simplified.csv", "sample_submission.csv")


class CredentialsError(DownloadError):
    """No usable Kaggle credentials."""


def kaggle_config_dir() -> Path:
    """Where the kaggle package looks for kaggle.json (same rule as kaggle 2.x)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path.home() / ".kaggle"
    if home.exists():
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def ensure_kaggle_credentials() -> str:
    """Where the Kaggle credentials come from; CredentialsError saying what to set when there are none."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    home = Path.home() / ".kaggle"
    for p in (kaggle_config_dir() / "kaggle.json", home / "access_token", home / "access_token.txt",
              home / "credentials.json"):
        if p.is_file():
            return str(p)
    raise CredentialsError(
        f"no Kaggle credentials: put kaggle.json (https://www.kaggle.com/settings/api, 'Create New Token') "
        f"in {kaggle_config_dir()}/ or set KAGGLE_USERNAME and KAGGLE_KEY, and accept the competition rules "
        f"at https://www.kaggle.com/competitions/{COMPETITION}/rules; {SAMPLE_HINT}")


@contextlib.contextmanager
def _kaggle_errors(what: str) -> Iterator[None]:
    """Turn the kaggle package's exits and requests' exceptions into one-line DownloadErrors."""
    import requests

    try:
        yield
    except SystemExit as e:  # kaggle's authenticate() prints help and calls exit(1)
        raise CredentialsError(f"Kaggle rejected the credentials ({what}); {SAMPLE_HINT}") from e
    except requests.HTTPError as e:
        code = e.response.status_code if e.response is not None else None
        hint = {401: "check the credentials",
                403: f"accept the rules at https://www.kaggle.com/competitions/{COMPETITION}/rules",
                404: "no such file in the competition"}.get(code, "")
        raise DownloadError(f"{what}: Kaggle answered HTTP {code}; {hint}".rstrip("; ")) from e
    except (requests.ConnectionError, requests.Timeout) as e:
        raise DownloadError(f"{what}: cannot reach the Kaggle API; check the network connection; "
                            f"{SAMPLE_HINT}") from e


def make_kaggle_api() -> Any:
    """An authenticated KaggleApi (imported here: importing kaggle reads credentials and may print)."""
    ensure_kaggle_credentials()
    with _kaggle_errors("authenticate"), contextlib.redirect_stdout(io.StringIO()):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError as e:
            raise DownloadError(f"the kaggle package is not installed ({e}); pip install kaggle") from e

        api = KaggleApi()
        api.authenticate()
    return api


def _unpack_zip(archive: Path, folder: Path) -> None:
    """Extract `archive` into `folder` (unwrapping a single top folder of the same name), then delete it."""
    tmp = folder.with_name(f".{folder.name}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    except zipfile.BadZipFile as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive}: not a valid zip file ({e}); delete it and run again") from e
    inner = list(tmp.iterdir())
    src = inner[0] if len(inner) == 1 and inner[0].is_dir() and inner[0].name == folder.name else tmp
    os.replace(src, folder)
    shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink()


def download_kaggle(dest: Path, files: Sequence[str] = KAGGLE_FILES, competition: str = COMPETITION,
                    api: Any = None) -> dict[str, str]:
    """Competition files into `dest` (zips unpacked to a folder, then removed); file -> outcome."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, str] = {}
    for name in files:
        target = dest / name.removesuffix(".zip")
        if target.exists() and (target.is_file() or any(target.iterdir())):
            log.info("%s: present, skipped", target)
            outcome[name] = "skipped"
            continue
        if api is None:
            api = make_kaggle_api()
        log.info("downloading %s/%s into %s", competition, name, dest)
        with _kaggle_errors(name):
            api.competition_download_file(competition, name, path=str(dest), quiet=False, unzip=True)
        if name.endswith(".zip") and (dest / name).is_file():
            _unpack_zip(dest / name, target)
        if not target.exists():
            raise DownloadError(f"{name}: the Kaggle download left no {target}")
        outcome[name] = "downloaded"
    return outcome
