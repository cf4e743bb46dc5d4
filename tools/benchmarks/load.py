"""Many people labelling at once: N browser users save drawings through one page server; nothing may be lost.

One `streamlit run src/app.py` (as users start it) over `--run` (default: the page benchmark's untrained
ResNet18) and a collected folder (`--collected`, default a temporary one). `--users` Playwright browser
contexts in one Chromium (each its own session, as separate people) each type a name, open Label mode and
`--saves` times draw two strokes with the mouse, wait for Save to be enabled and press it. Timed: from the
click to that save's "Saved ..." message on the page. Then the folder is read back: every save must be one
intact line with a distinct key_id and its user's name.

    python tools/bench.py load --users 20 --saves 25 [--collected DIR] [--run outputs/<run>/fold0]
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.page import CHROMIUM, PEN, write_untrained_run
from doodle.app.server import page_server
from doodle.store import collected as coll

TIMEOUT_MS = 180_000


async def settle(pg) -> None:
    """Wait until the page's script run has finished (a stroke during a rerun can hit a pen being replaced)."""
    from playwright.async_api import expect

    await expect(pg.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning",
                                                               timeout=TIMEOUT_MS)


async def draw(pg, k: int, s: int) -> None:
    """Two strokes, different for every user and save."""
    await settle(pg)
    ink = pg.frame_locator(PEN).first.locator("#ink")
    await ink.wait_for(timeout=TIMEOUT_MS)
    box = await ink.bounding_box()
    x0, y0 = box["x"] + 40 + 7 * (k % 10), box["y"] + 40 + 5 * (s % 20)
    for pts in ([(0, 0), (120, 30), (160, 150)], [(20, 140), (90 + s % 50, 60)]):
        await pg.mouse.move(x0 + pts[0][0], y0 + pts[0][1])
        await pg.mouse.down()
        for x, y in pts[1:]:
            await pg.mouse.move(x0 + x, y0 + y, steps=4)
        await pg.mouse.up()


async def saved_texts(pg) -> set[str]:
    return set(await pg.get_by_text("Saved '", exact=False).all_inner_texts())


async def one_user(browser, url: str, k: int, saves: int, lat: list, errors: list) -> None:
    from playwright.async_api import expect

    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        pg = await ctx.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        await pg.goto(url)
        await expect(pg.get_by_text("Draw something")).to_be_visible(timeout=TIMEOUT_MS)
        name = pg.locator("[data-testid=stSidebar]").get_by_role("textbox", name="Your name")
        await name.fill(f"user{k:02d}")
        await name.press("Enter")
        await settle(pg)
        await pg.locator("[data-testid=stSidebar]").get_by_text("Label", exact=True).click()
        await expect(pg.get_by_text("Label mode")).to_be_visible(timeout=TIMEOUT_MS)
        for s in range(saves):
            try:
                await draw(pg, k, s)
                button = pg.get_by_role("button", name="Save drawing")
                await expect(button).to_be_enabled(timeout=TIMEOUT_MS)
                before = await saved_texts(pg)
                t0 = time.perf_counter()
                await button.click()
                while not (await saved_texts(pg)) - before:
                    if time.perf_counter() - t0 > TIMEOUT_MS / 1e3:
                        raise TimeoutError("no 'Saved' message")
                    await asyncio.sleep(0.02)
                lat.append(1e3 * (time.perf_counter() - t0))
            except Exception as e:  # noqa: BLE001  (counted and reported: a benchmark goes on)
                errors.append(f"user{k:02d} save {s}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    finally:
        await ctx.close()


async def drive(url: str, users: int, saves: int) -> tuple[list[float], list[str]]:
    from playwright.async_api import async_playwright

    lat, errors = [], []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            await asyncio.gather(*(one_user(browser, url, k, saves, lat, errors) for k in range(users)))
        finally:
            await browser.close()
    return lat, errors


def check_folder(root: Path, users: int, saves: int) -> dict:
    """The collected folder read back: intact lines, distinct key_ids, saves per user."""
    items, problems = coll.read_drawings(root)
    per_user = Counter(it.author for it in items)
    return {"intact_lines": len(items), "distinct_key_ids": len({it.key_id for it in items}),
            "broken_lines": len(problems),
            "users_complete": sum(per_user.get(f"user{k:02d}", 0) == saves for k in range(users))}


def run(args) -> Iterator[dict]:
    users, saves = args.users, args.saves
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        collected = Path(args.collected or tmp / "collected")
        fold = args.run or write_untrained_run(tmp / "outputs")
        page_args = ["--outputs", str(tmp / "outputs"), "--run", str(fold), "--collected", str(collected)]
        t0 = time.perf_counter()
        with page_server(page_args, tmp / "server.log") as url:
            lat, errors = asyncio.run(drive(url, users, saves))
        wall = time.perf_counter() - t0
        folder = check_folder(collected, users, saves)
    lost = len(lat) - folder["intact_lines"]
    lat = np.array(lat)
    yield {"bench": "load", "users": users, "saves": saves, "saved": int(len(lat)), **folder,
           "errors": len(errors) + folder["broken_lines"] + abs(lost)
           + (folder["intact_lines"] - folder["distinct_key_ids"]),
           "ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
           "ms_p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
           "wall_s": round(wall, 1), "load_avg_1min": round(os.getloadavg()[0], 2), "first_errors": errors[:5]}
