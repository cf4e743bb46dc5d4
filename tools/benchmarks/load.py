"""Many people labelling at once: N users save drawings through page servers; nothing may be lost.

`--servers` `streamlit run src/app.py` processes (as users start them) over `--run` (default: the page
benchmark's untrained ResNet18: the cost of a trained one) share one collected folder (`--collected`,
default a temporary one). `--users` people (each its own session; user k on server k % servers) each type a
name, open Label mode and `--saves` times draw two strokes, wait for the final guesses and press Save.

`--client protocol` (the default; `_load_ws.py`): each user speaks Streamlit's websocket protocol as the
frontend does, with the pen played as pen.js plays it, and no browser runs here: real users' browsers run on
their own devices, and on this machine 20 Chromium pages would take most of the cores from the server.
`--client browser` (`_load_users.py`): Playwright contexts in one Chromium, drawing with the mouse.
Timed: each send of the pen, from its newest point to its guesses (`ms_p50` / `ms_p95`: arriving over the
websocket, or on screen with a browser; the server's own part `server_ms_p95`), and each save, from the
click to its "Saved ..." message (`save_ms_p95`). The CPU seconds of the servers, of Chromium and of the
driver are given, to say what the cores were spent on. Then the folder is read back: every save must be one
intact line with a distinct key_id and its user's name.

`--kills K` instead kills the (one) server with SIGKILL K times while users save (each kill aimed just
after a Save click), starting a new server and new users after each; then `prepare --collected all` runs
over the folder and its rows / kept / rejected (torn lines among them) are reported.

    python tools/bench.py load --users 20 --saves 25 [--collected DIR] [--run outputs/<run>/fold0]
    python tools/bench.py load --servers 2 --users 20 --saves 50 --collected DIR
    python tools/bench.py load --kills 10 --users 4 --saves 25 --collected DIR

`--max-minutes M`: no save (or kill round) is started after M minutes; the report says `stopped_early` and
counts what was done (a busy machine can make the full run take hours).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil

from benchmarks import _load_users as browser_users
from benchmarks import _load_ws as ws_users
from benchmarks._load_users import Tally
from benchmarks.page import CHROMIUM, write_untrained_run
from doodle import resources
from doodle.app.server import start_server, stop_server
from doodle.store import collected as coll
from doodle.store.prepare import PrepareOptions, prepare

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class CpuMeter:
    """CPU seconds of this process's descendants, by kind: the page servers (their own sessions), Chromium, and
    the rest (this driver and Playwright's). Sampled every second; a process that ends between samples loses
    at most its last second."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[str, float]] = {}
        self.servers: set[int] = set()

    def sample(self) -> None:
        me = psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                kind = ("server" if os.getsid(p.pid) in self.servers else
                        "chromium" if "chrom" in p.name().lower() else "driver")
                self.seen[p.pid] = (kind, t.user + t.system)
            except (psutil.Error, ProcessLookupError):
                continue

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(1.0)

    def totals(self) -> dict:
        out = Counter()
        for kind, s in self.seen.values():
            out[kind] += s
        return {f"cpu_s_{k}": round(out[k], 1) for k in ("server", "chromium", "driver")}


async def users_on(urls: list[str], users: int, saves: int, tally: Tally, meter: CpuMeter, client: str) -> None:
    """`users` people, user k on urls[k % len(urls)], until each has saved `saves` drawings."""
    async with users_client(client) as (warm, one_user):
        sampler = asyncio.create_task(meter.run())
        try:
            await asyncio.gather(*(warm(url) for url in urls))
            await asyncio.gather(*(one_user(urls[k % len(urls)], k, saves, tally) for k in range(users)))
        finally:
            meter.sample()
            sampler.cancel()


@contextlib.asynccontextmanager
async def users_client(client: str):
    """(warm(url), one_user(url, k, saves, tally)) of `client`: websocket sessions, or contexts of one Chromium."""
    if client == "protocol":
        yield ws_users.warm, ws_users.one_user
        return
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            yield (lambda url: browser_users.warm(browser, url),
                   lambda url, k, saves, tally: browser_users.one_user(browser, url, k, saves, tally))
        finally:
            await browser.close()


async def kill_rounds(page_args: list[str], logs: Path, args, tally: Tally, meter: CpuMeter) -> int:
    """`args.kills` rounds: a server, users saving, SIGKILL just after a Save click; a last round unkilled.
    Returns how many kills landed."""
    kills = 0
    async with users_client(args.client) as (warm, one_user):
        for r in range(args.kills + 1):
            if tally.out_of_time():
                break
            proc, url = start_server(page_args, logs / f"server{r}.log")
            meter.servers.add(proc.pid)
            try:
                await warm(url)
            except (AssertionError, TimeoutError, OSError) as e:  # the page never came up (a starved machine): report what was done
                tally.errors.append(f"round {r}: the page did not come up ({str(e).splitlines()[0][:80]})")
                stop_server(proc)
                break
            tally.clicked = asyncio.Event()
            users = [asyncio.create_task(one_user(url, k, args.saves, tally)) for k in range(args.users)]
            if r < args.kills:
                done = asyncio.gather(*users, return_exceptions=True)
                clicked = asyncio.create_task(tally.clicked.wait())
                await asyncio.wait([clicked, done], return_when=asyncio.FIRST_COMPLETED)
                if clicked.done():  # a save is on its way: kill the server within the next 0.3 s
                    await asyncio.sleep(random.uniform(0.0, 0.3))
                    meter.sample()
                    stop_server(proc, signal.SIGKILL)
                    kills += 1
                clicked.cancel()
                for u in users:
                    u.cancel()
            await asyncio.gather(*users, return_exceptions=True)
            meter.sample()
            stop_server(proc)
    return kills


def check_folder(root: Path, users: int, saves: int) -> dict:
    """The collected folder read back: intact lines, distinct key_ids, saves per user."""
    items, problems = coll.read_drawings(root)
    per_user = Counter(it.author for it in items)
    return {"intact_lines": len(items), "distinct_key_ids": len({it.key_id for it in items}),
            "broken_lines": len(problems),
            "users_complete": sum(per_user.get(f"user{k:02d}", 0) == saves for k in range(users))}


def prepare_summary(collected: Path, out: Path) -> dict:
    """`prepare --collected all` over the folder: every file must parse; torn lines are rejects."""
    words = resources.kaggle_classes()
    s = prepare([collected], out, PrepareOptions(words, set(resources.google_classes()), collected="all"))
    return {k: s[k] for k in ("rows", "kept", "rejected", "duplicates", "per_reason")}


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def run(args) -> Iterator[dict]:
    users, saves, servers = args.users, args.saves, args.servers
    if args.kills and servers != 1:
        raise SystemExit("load: --kills drives one server; leave --servers at 1")
    tally, meter = Tally(), CpuMeter()
    if args.max_minutes:
        tally.deadline = time.monotonic() + 60 * args.max_minutes
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        collected = Path(args.collected or tmp / "collected")
        fold = args.run or write_untrained_run(tmp / "outputs")
        page_args = ["--outputs", str(tmp / "outputs"), "--run", str(fold), "--collected", str(collected)]
        t0 = time.perf_counter()
        if args.kills:
            kills = asyncio.run(kill_rounds(page_args, tmp, args, tally, meter))
        else:
            with contextlib.ExitStack() as stack:
                procs = [start_server(page_args, tmp / f"server{i}.log") for i in range(servers)]
                for proc, _ in procs:
                    stack.callback(stop_server, proc)
                    meter.servers.add(proc.pid)
                asyncio.run(users_on([url for _, url in procs], users, saves, tally, meter, args.client))
        wall = time.perf_counter() - t0
        folder = check_folder(collected, users, saves)
        extra = {"kills": kills, "prepare": prepare_summary(collected, tmp / "store")} if args.kills else {}
    # a confirmed save ("Saved" shown) must be on disk; with kills, a save cut short may be there too, or torn
    lost = len(tally.save_ms) - folder["intact_lines"]
    errors = (max(0, lost) if args.kills else abs(lost) + len(tally.errors) + folder["broken_lines"]) \
        + folder["intact_lines"] - folder["distinct_key_ids"]
    yield {"bench": "load", "client": args.client, "servers": servers, "users": users, "saves": saves, "saved": len(tally.save_ms),
           **folder, "errors": errors, "ms_p50": pct(tally.guess_ms, 50), "ms_p95": pct(tally.guess_ms, 95),
           "updates": len(tally.guess_ms), "not_shown": tally.not_shown, "server_ms_p50": pct(tally.server_ms, 50),
           "server_ms_p95": pct(tally.server_ms, 95), "save_ms_p50": pct(tally.save_ms, 50),
           "save_ms_p95": pct(tally.save_ms, 95), "wall_s": round(wall, 1), **meter.totals(),
           "load_avg_1min": round(os.getloadavg()[0], 2),
           "stopped_early": tally.out_of_time(), **extra, "user_errors": len(tally.errors),
           "first_errors": tally.errors[:5]}
