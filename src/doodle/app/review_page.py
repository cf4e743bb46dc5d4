"""The page's "Review labels" mode: judge the team's collected drawings, oldest first (doodle.app.review).

Thin: the queue, the decisions and every refusal are `doodle.app.review`'s; this only lays them out.
"""

from __future__ import annotations

import argparse

import streamlit as st

from doodle.app import guesses, review
from doodle.render.raster import RasterSpec
from doodle.store import collected as coll
from doodle.store.collected import Collected, CollectError

SHOWN = 4  # drawings shown at once (the queue's oldest)
VIEW = RasterSpec(size=128, encoding="grey")
ALL_WORDS = "(all words)"


def reviewer_name() -> str | None:
    """The sidebar's name, checked; None (with the reason shown) when it cannot sign a decision."""
    try:
        return coll.check_name(st.session_state.get("who", ""))
    except CollectError as e:
        st.warning(f"Type your name in the sidebar to review ({e}).")
        return None


def on_decide(root, key_id: int, who: str, decision: str) -> None:
    """Button callback: append the decision; the outcome is shown on the next run."""
    reason = st.session_state.get(f"reason_{key_id}", "")
    try:
        review.decide(root, key_id, who, decision, reason)
        st.session_state.review_msg = ("success", f"{decision}ed key_id {key_id}" + (f" ({reason})" if reason else ""))
    except (CollectError, OSError) as e:
        st.session_state.review_msg = ("error", f"Not recorded: {e}")


def card(it: Collected, root, who: str) -> None:
    try:
        image = guesses.model_image(guesses.simplify(it.drawing()), VIEW)
        st.image(guesses.display_image(255 - image), caption=f"key_id {it.key_id}")
    except (ValueError, OSError) as e:
        st.warning(f"key_id {it.key_id}: cannot draw it ({e})")
    st.markdown(f"**{it.word}** by {it.author or '(no name)'}  \n{it.timestamp}")
    st.text_input("Reason (for a reject)", key=f"reason_{it.key_id}", max_chars=200)
    a, r = st.columns(2)
    a.button("Accept", key=f"accept_{it.key_id}", on_click=on_decide, args=(root, it.key_id, who, "accept"))
    r.button("Reject", key=f"reject_{it.key_id}", on_click=on_decide, args=(root, it.key_id, who, "reject"))


def review_labels_mode(runs, args: argparse.Namespace) -> None:
    st.title("Review labels")
    st.caption(f"Drawings collected in `{args.collected}` that nobody has judged yet, oldest first. Decisions go "
               f"to `{args.collected}/_decisions.ndjson` (the latest one counts); `tools/prepare.py` keeps only "
               "accepted drawings unless told `--collected all`.")
    if kind_msg := st.session_state.pop("review_msg", None):
        getattr(st, kind_msg[0])(kind_msg[1])
    who = reviewer_name()
    if who is None:
        return
    words = sorted({it.word for it in coll.read_drawings(args.collected)[0]})
    word = st.selectbox("Word", [ALL_WORDS, *words], key="review_word")
    q = review.queue(args.collected, who, None if word == ALL_WORDS else word)
    for p in q.problems[:5]:
        st.warning(p)
    st.caption(f"{len(q.items)} to review, {q.reviewed} reviewed; {q.own} of yours left for someone else.")
    if not q.items:
        st.info("Nothing to review.")
        return
    for col, it in zip(st.columns(SHOWN), q.items[:SHOWN], strict=False):
        with col:
            card(it, args.collected, who)
