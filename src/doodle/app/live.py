"""The pen and its guesses, shared by the page's Draw and Label modes (doodle.app.page, doodle.app.label_page).

The newest send of the pen is answered (`drawn`), its guesses and the network's input are shown, and the pen
is mounted after them so it learns which send was answered.
"""

from __future__ import annotations

import streamlit as st

from doodle.app import guesses
from doodle.app.pen_input import pen
from doodle.predict.loaded_run import LoadedRun

CANVAS_PX = 400  # the pen's largest side; it shrinks to fit a narrow column (a phone)


def drawn(key: str, runs: list[LoadedRun]) -> guesses.Analysis:
    """The pen's drawing (read from the session: the pen is mounted later, by `mount_pen`), judged.

    The newest send is answered: Streamlit folds sends that arrive while a run is busy into one rerun with the
    latest value; a send older than the one answered last is dropped (its answer would be stale), and a rerun
    for another reason reuses the last answer.
    """
    message = st.session_state.get(key)
    memo = f"{key}_answer"
    if message is None:  # a fresh pen (first run, or mounted again): forget answers to an older one
        st.session_state.pop(memo, None)
    last = st.session_state.get(memo)
    seq = message.get("seq") if isinstance(message, dict) else None
    if last is not None and isinstance(seq, int) and seq <= last.seq:
        return last
    a = st.session_state[memo] = guesses.analyse(message, runs)
    return a


def settled(key: str, a: guesses.Analysis) -> guesses.Analysis | None:
    """The analysis of the drawing as of the last pen lift (`a` itself once the pen is up).

    While a stroke is drawn the channel images stay those of the last lift: they are the same image elements
    as before, so the browser has nothing new to fetch and lay out, and the guesses show ~100 ms sooner
    (tools/bench.py page: p95 258 -> 189 ms). They catch up when the pen lifts.
    """
    memo = f"{key}_settled"
    if a.final or a.status != "ok":
        st.session_state[memo] = a
    return st.session_state.get(memo)


def mount_pen(key: str, a: guesses.Analysis, where) -> None:
    """The pen, in `where` (a container placed earlier), mounted after the guesses are on the page: it learns
    there which send was answered, and during a stroke waits for that before sending again (one update in
    flight, as Google's game polls), so a new send never cuts short the run that shows the previous one."""
    with where:
        pen(key, CANVAS_PX, answered=a.seq)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def not_sure_threshold(runs: list[LoadedRun]) -> float:
    return runs[0].cfg.app.not_sure if runs else 0.0


def show_guesses(a: guesses.Analysis, threshold: float) -> None:
    if a.status == "empty":
        st.info(a.message)
        return
    if a.status != "ok":
        st.warning(a.message)
        return
    top = a.top(3)
    if guesses.not_sure(a, threshold):
        st.markdown(f"#### Not sure\nThe best guess has {top[0][1]:.0%}, under {threshold:.0%}: these are only "
                    "hunches. Keep drawing.")
    else:
        st.markdown(f"#### It's **{top[0][0]}**")
    st.markdown("\n".join(f"{i}. **{w}** {p:.0%}" for i, (w, p) in enumerate(top, 1)))
    ms = a.ms
    st.caption(f"update {a.seq}{'' if a.final else ', pen down'}: {ms['total']:.0f} ms on the server (parse "
               f"{ms['parse']:.1f}, simplify {ms['simplify']:.1f}, render + model {ms['model']:.1f}); "
               f"{plural(a.raw.n_strokes, 'stroke')}, {plural(a.simplified.n_points, 'point')} after "
               "simplification; calibrated probabilities")


def show_channels(a: guesses.Analysis | None, pen_down: bool = False) -> None:
    """What the network sees: each channel of each distinct input spec as a grey image."""
    if a is None or a.status != "ok":
        return
    st.subheader("What the network sees" + (" (at the last pen lift)" if pen_down else ""))
    for spec, image in zip(a.specs, a.images, strict=True):
        st.caption(f"{spec.encoding} encoding, {spec.size} x {spec.size} px, line width {spec.line_width}")
        chans = guesses.channels(image, spec, zoom=max(1, 128 // spec.size))
        for col, (name, grey) in zip(st.columns(max(len(chans), 3)), chans, strict=False):
            col.image(grey, caption=name)
