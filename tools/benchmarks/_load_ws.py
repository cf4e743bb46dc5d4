"""The simulated people of `tools/bench.py load --client protocol`: each speaks Streamlit's own websocket
protocol to a page server, as the browser's frontend does, with no browser at all.

A user is one websocket session (`/_stcore/stream`): it sends `BackMsg`s (a rerun with the state of every
widget it has seen; a fragment rerun for a widget inside an `st.fragment`, as the frontend does) and reads the
`ForwardMsg`s the script run sends back (the elements with their widget ids, the "update N: X ms on the server"
captions, the "Saved ..." message, script finished). The pen is played as `doodle/app/pen/pen.js` plays it: a
point every 16 ms, a send at most every 150 ms during a stroke and only once the previous send is answered
(the pen's `answered` argument; after 2 s it sends anyway), a final send at each pen lift.

Timed as in the browser benchmark, less the browser's own drawing of the page: from a send (its newest point)
to the arrival of the caption that answers it, and from a Save to the arrival of its "Saved ..." message.
With no browsers on the machine, the cores go to the page servers, which is what a room full of people on
their own devices costs the server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

from benchmarks._load_users import TIMEOUT_MS, WARM_MS, Tally, save_loop, user_strokes

THROTTLE_S, WAIT_S, POINT_S = 0.150, 2.0, 1 / 60  # pen.js: THROTTLE_MS, WAIT_MS; a 60 Hz pointer
CAPTION = re.compile(r"update (\d+)(?:, pen down)?: (\d+) ms on the server")
WIDGETS = {"text_input": "string_value", "radio": "string_value", "selectbox": "string_value",
           "button": "trigger_value", "component_instance": "json_value", "number_input": "double_value"}


@dataclass
class Widget:
    id: str
    kind: str
    label: str  # the label, or the component's name (`doodle.app.pen_input.pen` -> `pen`)
    fragment_id: str
    args: dict = field(default_factory=dict)  # a component's arguments (the pen's `answered`)


class Session:
    """One page session over Streamlit's websocket: send reruns, read what the runs send back."""

    def __init__(self, url: str):
        self.url = url
        self.ws = None
        self.page_hash = ""
        self.states: dict[str, WidgetState] = {}  # every widget value the frontend would hold
        self.widgets: dict[str, Widget] = {}  # label -> the newest element of that label
        self.shown: dict[int, tuple[float, int]] = {}  # caption "update N" -> (arrival, server ms)
        self.texts: list[tuple[float, str]] = []  # (arrival, text) of alerts ("Saved ...", errors)
        self.finished = asyncio.Event()
        self.seen_ids: set[str] = set()
        self.full_runs = 0  # whole-page runs finished
        self.reader: asyncio.Task | None = None

    async def open(self) -> None:
        import websockets

        ws_url = self.url.replace("http://", "ws://", 1) + "/_stcore/stream"
        self.ws = await websockets.connect(ws_url, subprotocols=["streamlit"], origin=self.url, max_size=None,
                                           open_timeout=WARM_MS / 1e3)
        self.reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = msg.new_session.page_script_hash or self.page_hash
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                self._element(msg.delta.new_element, msg.delta.fragment_id)
            elif kind == "script_finished":
                if msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:  # a whole page: forget unmounted widgets
                    self.states = {i: v for i, v in self.states.items() if i in self.seen_ids}
                    self.full_runs += 1
                self.seen_ids = set()
                if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:  # else another run follows
                    self.finished.set()

    def _element(self, el, fragment_id: str) -> None:
        kind = el.WhichOneof("type")
        now = time.perf_counter()
        if kind == "markdown" and (m := CAPTION.search(el.markdown.body)):
            self.shown.setdefault(int(m[1]), (now, int(m[2])))
        elif kind == "alert":
            self.texts.append((now, el.alert.body))
        elif kind in WIDGETS:
            proto = getattr(el, kind)
            label = proto.component_name.rsplit(".", 1)[-1] if kind == "component_instance" else proto.label
            args = json.loads(proto.json_args or "{}") if kind == "component_instance" else {}
            self.widgets[label] = Widget(proto.id, kind, label, fragment_id, args)
            self.seen_ids.add(proto.id)
            if kind in ("text_input", "radio", "selectbox") and proto.id not in self.states:
                self.states[proto.id] = self._default(proto, kind)

    @staticmethod
    def _default(proto, kind: str) -> WidgetState:
        """The value the frontend sets when a widget mounts (its default; the server's for a keyed one)."""
        if kind == "text_input":
            return WidgetState(id=proto.id, string_value=proto.value if proto.set_value else proto.default)
        value = proto.raw_value or (proto.options[proto.default] if len(proto.options) > proto.default else "")
        return WidgetState(id=proto.id, string_value=value)

    def widget(self, label: str) -> Widget:
        if label not in self.widgets:
            raise AssertionError(f"no widget {label!r} on the page (have {sorted(self.widgets)})")
        return self.widgets[label]

    async def rerun(self, fragment_id: str = "", trigger: str | None = None, wait: bool = True) -> None:
        """A rerun with every widget's value (and `trigger`, a button's id, pressed once); waits for its end."""
        msg = BackMsg()
        cs = msg.rerun_script
        cs.page_script_hash = self.page_hash
        cs.fragment_id = fragment_id
        cs.widget_states.widgets.extend(self.states.values())
        if trigger is not None:
            cs.widget_states.widgets.append(WidgetState(id=trigger, trigger_value=True))
        self.finished.clear()
        await self.ws.send(msg.SerializeToString())
        if wait:
            await self.settle()

    async def settle(self) -> None:
        await asyncio.wait_for(self.finished.wait(), TIMEOUT_MS / 1e3)

    async def set_value(self, label: str, value: str) -> None:
        w = self.widget(label)
        self.states[w.id] = WidgetState(id=w.id, string_value=value)
        await self.rerun(w.fragment_id)


class Pen:
    """The pen component of one drawing, played as pen.js plays it."""

    def __init__(self, s: Session):
        self.s, self.strokes, self.seq, self.last_sent, self.t0 = s, [], 0, -1e9, None
        self.sent: dict[int, float] = {}

    def answered(self) -> int:
        return int(self.s.widget("pen").args.get("answered", -1))

    async def send(self, final: bool) -> None:
        self.seq += 1
        self.last_sent = time.perf_counter()
        self.sent[self.seq] = self.last_sent
        w = self.s.widget("pen")
        value = {"v": 1, "seq": self.seq, "final": final, "strokes": self.strokes}
        self.s.states[w.id] = WidgetState(id=w.id, json_value=json.dumps(value, separators=(",", ":")))
        await self.s.rerun(w.fragment_id, wait=False)

    async def stroke(self, points: list[tuple[float, float]]) -> None:
        xs, ys, ts = [], [], []
        self.strokes.append([xs, ys, ts])
        for x, y in points:
            now = time.perf_counter()
            self.t0 = now if self.t0 is None else self.t0
            xs.append(round(x, 1)), ys.append(round(y, 1)), ts.append(round(1e3 * (now - self.t0)))
            since = now - self.last_sent
            if since >= THROTTLE_S and (self.answered() >= self.seq or since >= WAIT_S):
                await self.send(False)
            await asyncio.sleep(POINT_S)
        await self.send(True)


def stroke_points(k: int, s: int) -> list[list[tuple[float, float]]]:
    """User k's save s (`user_strokes`) as a 60 Hz pointer gives it: 25 and 21 points (12 per segment of the
    bent first stroke, 20 along the straight second), ~0.4 s a stroke."""
    out = []
    for pts in user_strokes(k, s):
        line, n = [pts[0]], 12 if len(pts) > 2 else 20
        for (ax, ay), (bx, by) in zip(pts, pts[1:], strict=False):
            line += [(ax + (bx - ax) * i / n, ay + (by - ay) * i / n) for i in range(1, n + 1)]
        out.append(line)
    return out


async def until(done, what: str, t0: float | None = None) -> None:
    """Poll `done()` every 10 ms until it holds; TimeoutError naming `what` after TIMEOUT_MS (from `t0`)."""
    deadline = (time.perf_counter() if t0 is None else t0) + TIMEOUT_MS / 1e3
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


async def draw_and_save(s: Session, k: int, n: int, tally: Tally) -> None:
    s.shown.clear()
    pen = Pen(s)
    for points in stroke_points(k, n):
        await pen.stroke(points)
    await until(lambda: pen.seq in s.shown, f"no guesses for send {pen.seq}")  # final guesses shown: Save is enabled
    await s.settle()
    for seq, sent in pen.sent.items():
        if seq in s.shown:
            tally.guess_ms.append(1e3 * (s.shown[seq][0] - sent))
            tally.server_ms.append(s.shown[seq][1])
        else:
            tally.not_shown += 1
    before, runs = len(s.texts), s.full_runs
    save = s.widget("Save drawing")
    t0 = time.perf_counter()
    await s.rerun(save.fragment_id, trigger=save.id, wait=False)
    if tally.clicked is not None:
        tally.clicked.set()
    def saved() -> bool:
        texts = [t for _, t in s.texts[before:]]
        if bad := [t for t in texts if t.startswith("Not saved")]:
            raise RuntimeError(bad[0])
        return any(t.startswith("Saved '") for t in texts)

    await until(saved, "no 'Saved' message", t0)
    tally.save_ms.append(1e3 * (time.perf_counter() - t0))
    await until(lambda: s.full_runs != runs, "no page run after the save", t0)  # it mounts a fresh pen


async def warm(url: str) -> None:
    """One session's first run: the server imports torch and loads the model (a cost of starting it)."""
    s = Session(url)
    await s.open()
    try:
        await asyncio.wait_for(s.rerun(wait=False), WARM_MS / 1e3)
        await asyncio.wait_for(s.finished.wait(), WARM_MS / 1e3)
    finally:
        await s.close()


async def one_user(url: str, k: int, saves: int, tally: Tally) -> None:
    """User k: name `userKK`, Label mode, `saves` drawings (a failed save is counted, and the user goes on)."""
    s = Session(url)
    await s.open()
    try:
        await s.rerun()
        await s.set_value("Your name", f"user{k:02d}")
        await s.set_value("Mode", "Label")
        s.widget("Save drawing")  # Label mode is up
        await save_loop(k, saves, tally, lambda n: draw_and_save(s, k, n, tally))
    finally:
        await s.close()
