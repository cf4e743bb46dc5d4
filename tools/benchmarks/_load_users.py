"""The simulated people of `tools/bench.py load` (tools/benchmarks/load.py): Playwright browser contexts that
type a name, open Label mode and save drawings, timing each stroke's guesses and each save.

Stroke -> guesses is timed in the browser, as `bench.py page` does: the pen logs the time of the newest pointer
event each send carries (`window.penLog`), and a watcher on the page logs the animation frame in which the
guesses answering that send ("update N: X ms on the server") first show, with the server's own X ms.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from benchmarks.page import PEN

TIMEOUT_MS = 600_000  # a save that takes minutes on a crowded machine is slow, not lost
WARM_MS = 900_000
# the frame in which each "update N" caption first shows (epoch ms, as the pen's log), and its server ms
WATCH = """() => {
  window.shown = {}; window.serverMs = {};
  const scan = () => requestAnimationFrame(() => {
    const now = performance.timeOrigin + performance.now();
    for (const el of document.querySelectorAll('[data-testid="stCaptionContainer"]')) {
      const m = /update (\\d+)(?:, pen down)?: (\\d+) ms on the server/.exec(el.textContent);
      if (m && !(m[1] in window.shown)) { window.shown[m[1]] = now; window.serverMs[m[1]] = +m[2]; }
    }
  });
  new MutationObserver(scan).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
FORGET = "() => { window.shown = {}; window.serverMs = {}; }"


@dataclass
class Tally:
    """What every user measured, shared (one asyncio loop: no locks needed)."""

    save_ms: list[float] = field(default_factory=list)
    guess_ms: list[float] = field(default_factory=list)  # pointer event -> its guesses on screen
    server_ms: list[float] = field(default_factory=list)  # of those: the server's parse + simplify + model
    not_shown: int = 0  # sends superseded by a newer one before their answer showed (Streamlit folds them)
    errors: list[str] = field(default_factory=list)
    clicked: asyncio.Event | None = None  # set at each Save click (the kill mode aims its kills at saves)
    deadline: float = float("inf")  # time.monotonic() after which no user starts another save (--max-minutes)

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline


async def settle(pg) -> None:
    """Wait until the page's script run has finished (a stroke during a rerun can hit a pen being replaced)."""
    from playwright.async_api import expect

    await expect(pg.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning",
                                                               timeout=TIMEOUT_MS)


def user_strokes(k: int, s: int) -> list[list[tuple[int, int]]]:
    """User k's save s: two polylines (px of the pen's canvas, from its corner), different for every user and
    save; both clients draw these."""
    x0, y0 = 40 + 7 * (k % 10), 40 + 5 * (s % 20)
    return [[(x0 + x, y0 + y) for x, y in pts] for pts in ([(0, 0), (120, 30), (160, 150)], [(20, 140), (90 + s % 50, 60)])]


async def draw(pg, k: int, s: int) -> None:
    """User k's save s, drawn with the mouse."""
    ink = pg.frame_locator(PEN).first.locator("#ink")
    await ink.wait_for(timeout=TIMEOUT_MS)
    box = await ink.bounding_box()
    for pts in user_strokes(k, s):
        await pg.mouse.move(box["x"] + pts[0][0], box["y"] + pts[0][1])
        await pg.mouse.down()
        for x, y in pts[1:]:
            await pg.mouse.move(box["x"] + x, box["y"] + y, steps=4)
        await pg.mouse.up()


async def collect_guess_times(pg, tally: Tally) -> None:
    """The latencies of this drawing's sends, from the pen's log and the page's watcher."""
    frame = await (await pg.locator(PEN).first.element_handle()).content_frame()
    log = await frame.evaluate("window.penLog")
    shown, server = await pg.evaluate("[window.shown, window.serverMs]")
    for e in log:
        if str(e["seq"]) in shown:
            tally.guess_ms.append(shown[str(e["seq"])] - e["move"])
            tally.server_ms.append(server[str(e["seq"])])
        else:
            tally.not_shown += 1


async def saved_texts(pg) -> set[str]:
    return set(await pg.get_by_text("Saved '", exact=False).all_inner_texts())


async def save_one(pg, k: int, s: int, tally: Tally) -> None:
    from playwright.async_api import expect

    await settle(pg)
    await pg.evaluate(FORGET)
    await draw(pg, k, s)
    button = pg.get_by_role("button", name="Save drawing")
    await expect(button).to_be_enabled(timeout=TIMEOUT_MS)  # the final guesses are on the page
    await collect_guess_times(pg, tally)
    before = await saved_texts(pg)
    t0 = time.perf_counter()
    await button.click()
    if tally.clicked is not None:
        tally.clicked.set()
    while not (await saved_texts(pg)) - before:
        if time.perf_counter() - t0 > TIMEOUT_MS / 1e3:
            raise TimeoutError("no 'Saved' message")
        await asyncio.sleep(0.02)
    tally.save_ms.append(1e3 * (time.perf_counter() - t0))


async def warm(browser, url: str) -> None:
    """Open the page once and wait for it: the server's first run imports torch and loads the model (a minute
    or more on a busy machine), a cost of starting the server, not of the people using it."""
    from playwright.async_api import expect

    ctx = await browser.new_context()
    try:
        pg = await ctx.new_page()
        await pg.goto(url, timeout=WARM_MS)
        await expect(pg.get_by_text("Draw something")).to_be_visible(timeout=WARM_MS)
    finally:
        await ctx.close()


async def save_loop(k: int, saves: int, tally: Tally, save) -> None:
    """User k's `saves` saves, `save(n)` each, until the deadline; a failed save is counted and the user goes on."""
    for n in range(saves):
        if tally.out_of_time():
            break
        try:
            await save(n)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001  (counted and reported: a benchmark goes on)
            tally.errors.append(f"user{k:02d} save {n}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")


async def one_user(browser, url: str, k: int, saves: int, tally: Tally) -> None:
    """User k: name `userKK`, Label mode, `saves` drawings (a failed save is counted, and the user goes on)."""
    from playwright.async_api import expect

    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        pg = await ctx.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        await pg.goto(url)
        await expect(pg.get_by_text("Draw something")).to_be_visible(timeout=TIMEOUT_MS)
        await pg.evaluate(WATCH)
        name = pg.locator("[data-testid=stSidebar]").get_by_role("textbox", name="Your name")
        await name.fill(f"user{k:02d}")
        await name.press("Enter")
        await settle(pg)
        await pg.locator("[data-testid=stSidebar]").get_by_text("Label", exact=True).click()
        await expect(pg.get_by_text("Label mode")).to_be_visible(timeout=TIMEOUT_MS)
        await save_loop(k, saves, tally, lambda n: save_one(pg, k, n, tally))
    finally:
        await ctx.close()
