// The drawing page's pen: records every point as (x, y, t) - canvas pixels, ms since the drawing's first
// point - with strokes kept apart (Google's raw ndjson format), from mouse, touch and pen alike (pointer
// events). Plain JS, no build step: it speaks Streamlit's component protocol (streamlit-component-lib's
// postMessage messages) by hand. Sends {v, seq, final, strokes}: during a stroke at most every THROTTLE_MS and
// only once the page has answered the previous send (its `answered` argument; after WAIT_MS without an
// answer it sends anyway), then once more when the pen lifts (final), and after undo or clear.
"use strict";
(function () {
  const THROTTLE_MS = 150;
  const WAIT_MS = 2000;
  const MAX_POINTS = 30000;  // the server refuses more (doodle.app.guesses.PAGE_LIMITS)
  const BAR_PX = 44;
  const canvas = document.getElementById("ink");
  const ctx = canvas.getContext("2d");
  const undoBtn = document.getElementById("undo");
  const clearBtn = document.getElementById("clear");
  const info = document.getElementById("info");
  let strokes = [];        // [[xs], [ys], [ts]] per stroke
  let drawing = null;      // the stroke under the pen, or null
  let pointer = null;      // the pointerId drawing it (a second finger is ignored)
  let t0 = null;           // event timeStamp of the drawing's first point
  let nPoints = 0, seq = 0, answered = 0, lastSent = -Infinity, timer = null, size = 0, maxSize = 400;
  let lastMove = 0, dirty = false;  // dirty: points not sent yet
  // when the newest point of each send was made and when it was sent (shared clock: epoch ms), for
  // tools/benchmarks/page.py, which matches them with the moment the guesses for that send appear
  window.penLog = [];

  const clock = (stamp) => performance.timeOrigin + stamp;
  function post(type, extra) {
    window.parent.postMessage(Object.assign({isStreamlitMessage: true, type: type}, extra), "*");
  }

  function send(final) {
    clearTimeout(timer);
    timer = null;
    seq += 1;
    lastSent = performance.now();
    dirty = false;
    window.penLog.push({seq: seq, move: clock(lastMove), sent: clock(lastSent), final: final});
    if (window.penLog.length > 5000) window.penLog.shift();
    post("streamlit:setComponentValue", {value: {v: 1, seq: seq, final: final, strokes: strokes}, dataType: "json"});
    document.body.dataset.seq = String(seq);
    document.body.dataset.strokes = String(strokes.length);
    undoBtn.disabled = clearBtn.disabled = strokes.length === 0;
  }

  function throttled() {  // leading edge, then at most one trailing send per THROTTLE_MS, one in flight
    dirty = true;
    if (timer !== null) return;
    const since = performance.now() - lastSent;
    const waiting = answered < seq && since < WAIT_MS;
    const wait = waiting ? WAIT_MS - since : THROTTLE_MS - since;
    if (wait <= 0) send(false);
    else timer = setTimeout(() => { timer = null; if (dirty && drawing !== null) throttled(); }, wait);
  }

  function redraw() {
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, size, size);
    ctx.lineWidth = 4; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000";
    for (const [xs, ys] of strokes) {
      ctx.beginPath();
      ctx.moveTo(xs[0], ys[0]);
      for (let i = 1; i < xs.length; i++) ctx.lineTo(xs[i], ys[i]);
      if (xs.length === 1) ctx.lineTo(xs[0] + 0.01, ys[0]);  // a dot
      ctx.stroke();
    }
  }

  function resize() {  // a square that fits the column (a phone's width too); strokes scale along
    const want = Math.max(120, Math.min(maxSize, document.documentElement.clientWidth - 4));
    if (want === size) return;
    const k = size ? want / size : 1;
    strokes = strokes.map(([xs, ys, ts]) => [xs.map((v) => round1(v * k)), ys.map((v) => round1(v * k)), ts]);
    size = want;
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = canvas.style.height = size + "px";
    canvas.width = canvas.height = Math.round(size * dpr);
    redraw();
    post("streamlit:setFrameHeight", {height: size + 2 + BAR_PX});
  }

  const round1 = (v) => Math.round(v * 10) / 10;

  function add(e) {  // one pointer sample -> a point of the current stroke (repeats dropped)
    const r = canvas.getBoundingClientRect();
    const x = round1(Math.min(Math.max(e.clientX - r.left, 0), size));
    const y = round1(Math.min(Math.max(e.clientY - r.top, 0), size));
    if (t0 === null) t0 = e.timeStamp;
    const t = Math.max(0, Math.round(e.timeStamp - t0));
    const [xs, ys, ts] = drawing;
    const n = xs.length;
    if (n && xs[n - 1] === x && ys[n - 1] === y) return;
    if (nPoints >= MAX_POINTS) { info.textContent = "too many points: undo or clear"; return; }
    // times never go backwards, even across events the browser stamped out of order
    xs.push(x); ys.push(y); ts.push(n ? Math.max(t, ts[n - 1]) : t);
    nPoints += 1;
    if (n) {
      ctx.beginPath(); ctx.moveTo(xs[n - 1], ys[n - 1]); ctx.lineTo(x, y); ctx.stroke();
    } else {
      ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + 0.01, y); ctx.stroke();
    }
    lastMove = e.timeStamp;
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (drawing !== null || (e.pointerType === "mouse" && e.button !== 0)) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    pointer = e.pointerId;
    document.body.dataset.pointer = e.pointerType;  // mouse, touch or pen (the browser tests read it)
    drawing = [[], [], []];
    strokes.push(drawing);
    add(e);
    throttled();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (drawing === null || e.pointerId !== pointer) return;
    e.preventDefault();
    const samples = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const s of (samples.length ? samples : [e])) add(s);
    throttled();
  });
  function lift(e) {
    if (drawing === null || e.pointerId !== pointer) return;
    if (e.type === "pointerup") add(e);  // a cancelled pointer has no position to add
    drawing = null;
    pointer = null;
    send(true);  // the final update: the guesses for the whole stroke stay
  }
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());

  undoBtn.addEventListener("click", () => {
    if (drawing !== null || !strokes.length) return;
    nPoints -= strokes.pop()[0].length;
    if (!strokes.length) t0 = null;
    info.textContent = "";
    redraw();
    send(true);
  });
  clearBtn.addEventListener("click", () => {
    if (drawing !== null) return;
    strokes = []; nPoints = 0; t0 = null;
    info.textContent = "";
    redraw();
    send(true);
  });

  window.addEventListener("message", (event) => {
    if (!event.data || event.data.type !== "streamlit:render") return;
    const args = event.data.args || {};
    if (typeof args.size === "number" && args.size > 0) maxSize = args.size;
    if (typeof args.answered === "number" && args.answered > answered) {
      answered = args.answered;
      if (dirty && drawing !== null && answered >= seq) {  // the page caught up: send what is new
        clearTimeout(timer);
        timer = null;
        throttled();
      }
    }
    resize();
  });
  window.addEventListener("resize", resize);
  post("streamlit:componentReady", {apiVersion: 1});
})();
