"""The page as a process: `streamlit run src/app.py` on a free local port, for the browser tests and the
page benchmark (tools/benchmarks/page.py). Started in its own session so stopping it ends it and nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"  # src/app.py
STARTUP_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, startup_s: float = STARTUP_S) -> None:
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"streamlit not healthy after {startup_s} s:\n{log.read_text()[-2000:]}")


def start_server(page_args: list[str], log: Path, cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A page server with `page_args` (`--outputs DIR ...`), in its own session, once healthy: (process, URL).
    Stop it with `stop_server` (its whole session, nothing else)."""
    port = free_port()
    src = str(APP.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--", *page_args], cwd=cwd or APP.parents[1], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
    except BaseException:
        stop_server(proc, signal.SIGKILL)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """End the server's session (SIGKILL: as a crash would, mid-save or not); SIGKILL after 15 s of SIGTERM."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def page_server(page_args: list[str], log: Path, cwd: Path | None = None) -> Iterator[str]:
    """Yields the page's URL while a server runs with `page_args` (`--outputs DIR ...`); always stopped after."""
    proc, url = start_server(page_args, log, cwd)
    try:
        yield url
    finally:
        stop_server(proc)
