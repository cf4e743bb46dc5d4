"""Fetch Google's per-class ndjson files (HTTP); the Kaggle competition files are `kaggle_api`'s.

Google downloads are resumable: bytes go to `<file>.part`, a rerun continues it with an HTTP Range
request, and the file gets its final name only once its size matches what the server announced.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from tqdm import tqdm

from doodle.errors import DoodleError, UserError

log = logging.getLogger(__name__)

GOOGLE_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full"
GOOGLE_FORMATS = ("raw", "simplified")
SAMPLE_HINT = "a bundled sample to try the pipeline is at input/sample/ (make demo)"


class DownloadError(DoodleError, OSError):
    """A download failed in a way the user can act on (network, HTTP status, size, credentials)."""


class UnreachableError(DownloadError):
    """The server could not be reached at all (no network, refused, DNS)."""


# ----------------------------------------------------------------------------- Google's bucket


def google_urls(classes: Sequence[str], fmt: str, base_url: str = GOOGLE_BASE_URL) -> dict[str, str]:
    """Word -> URL of its ndjson file (`<base_url>/<fmt>/<word>.ndjson`, spaces as %20)."""
    if fmt not in GOOGLE_FORMATS:
        raise UserError(f"format {fmt!r}: expected one of {', '.join(GOOGLE_FORMATS)}")
    return {w: f"{base_url.rstrip('/')}/{fmt}/{quote(w)}.ndjson" for w in classes}


def _open(url: str, timeout: float, method: str = "GET", offset: int = 0) -> Any:
    """urlopen that turns 'cannot connect' into a one-line UnreachableError; HTTPError is left to the caller."""
    req = urllib.request.Request(url, method=method, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError, socket.gaierror) as e:
        reason = getattr(e, "reason", e)
        raise UnreachableError(f"cannot reach {urlsplit(url).netloc} ({reason}); check the network "
                            "connection (or --base-url)") from e


def _http_error(url: str, e: urllib.error.HTTPError) -> DownloadError:
    hint = "; check the class name, --format and --base-url" if e.code == 404 else ""
    return DownloadError(f"{url}: HTTP {e.code} {e.reason}{hint}")


def remote_size(url: str, timeout: float = 60.0) -> int | None:
    """Size announced by a HEAD request (None when the server does not say)."""
    try:
        with _open(url, timeout, method="HEAD") as r:
            length = r.headers.get("Content-Length")
    except urllib.error.HTTPError as e:
        raise _http_error(url, e) from e
    return int(length) if length is not None else None


def _total_from(resp: Any, offset: int, part: Path) -> int | None:
    """Full size of the remote file from a 200 (Content-Length) or 206 (Content-Range) response."""
    if resp.status == 206:
        unit_range, _, total = resp.headers.get("Content-Range", "").partition("/")
        start = unit_range.removeprefix("bytes ").split("-")[0]
        if not start.isdigit() or int(start) != offset:
            raise DownloadError(f"{part}: asked to resume at byte {offset}, server sent "
                                f"Content-Range {resp.headers.get('Content-Range')!r}")
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length")
    return int(length) if length is not None else None


def _fetch(url: str, part: Path, timeout: float, chunk_size: int, bar: tqdm | None, progress: bool) -> int | None:
    """Append the rest of `url` to `part` (starting over if the server ignores Range); the announced total."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, timeout, offset=offset)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the part may already be whole
            total = e.headers.get("Content-Range", "").rpartition("/")[2]
            return int(total) if total.isdigit() else None
        raise _http_error(url, e) from e
    with resp, open(part, "ab" if resp.status == 206 else "wb") as f:
        if offset and resp.status != 206:
            log.info("%s: server ignored the Range request, starting over", part.name)
            offset = 0
        total = _total_from(resp, offset, part)
        own = None if bar is not None else tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                                 desc=part.name[:-5], disable=not progress, leave=False)
        if bar is not None and total is not None:
            with _BAR_LOCK:
                bar.total = (bar.total or 0) + total - offset
                bar.refresh()
        try:
            _copy(resp, f, chunk_size, own if own is not None else bar, part)
        finally:
            if own is not None:
                own.close()
    return total


def _copy(resp: Any, f: io.BufferedWriter, chunk_size: int, bar: tqdm, part: Path) -> None:
    while True:
        try:
            chunk = resp.read(chunk_size)
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(f"{part}: connection lost after {f.tell()} bytes ({e!r}); "
                                "run again to resume") from e
        if not chunk:
            return
        f.write(chunk)
        bar.update(len(chunk))


_BAR_LOCK = threading.Lock()


def download_file(url: str, dest: Path, *, timeout: float = 60.0, chunk_size: int = 1 << 20,
                  bar: tqdm | None = None, progress: bool = True) -> str:
    """Download `url` to `dest` resumably; 'downloaded', 'resumed' or 'skipped' (complete file present).

    A present `dest` is checked against a HEAD request (kept unchecked when the server is unreachable).
    A size that differs from the server's is a DownloadError naming the file.
    """
    dest = Path(dest)
    if dest.exists():
        try:
            size = remote_size(url, timeout)
        except UnreachableError as e:
            log.warning("%s: present, not verified (%s)", dest, e)
            return "skipped"
        if size is not None and size != dest.stat().st_size:
            raise DownloadError(f"{dest}: {dest.stat().st_size} bytes but the server has {size}; "
                                "delete it to download it again")
        return "skipped"
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = part.exists() and part.stat().st_size > 0
    total = _fetch(url, part, timeout, chunk_size, bar, progress)
    got = part.stat().st_size
    if total is None:
        log.warning("%s: server did not announce a size; %d bytes unchecked", dest, got)
    elif got != total:
        hint = "run again to resume" if got < total else f"delete {part.name} and run again"
        raise DownloadError(f"{dest}: got {got} bytes, server announced {total}; {hint}")
    os.replace(part, dest)
    return "resumed" if resumed else "downloaded"


def download_many(jobs: dict[Path, str], workers: int = 1, timeout: float = 60.0,
                  progress: bool = True) -> Counter:
    """Download {dest: url} with `workers` threads; counts per outcome. Failures are reported together."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    # One shared byte bar when files download in parallel: per-file bars would overwrite each other.
    shared = tqdm(total=0, unit="B", unit_scale=True, desc="download", disable=not progress) \
        if workers > 1 else None

    def one(job: tuple[Path, str]) -> tuple[str, str | None]:
        try:
            return download_file(job[1], job[0], timeout=timeout, bar=shared, progress=progress), None
        except DownloadError as e:
            return "failed", str(e)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, jobs.items()))
    if shared is not None:
        shared.close()
    counts = Counter(outcome for outcome, _ in results)
    errors = [err for _, err in results if err]
    if errors:
        raise DownloadError(f"{len(errors)} of {len(jobs)} file(s) failed; first: {errors[0]}")
    return counts


__all__ = ["GOOGLE_BASE_URL", "GOOGLE_FORMATS", "SAMPLE_HINT", "DownloadError", "UnreachableError",
           "google_urls", "remote_size", "download_file", "download_many"]
