"""The page's Label mode: draw a word under your name and save it to the collected folder (doodle.app.labels).

Thin: the file format, the key_ids, the locking and every refusal are `doodle.app.labels`' and
`doodle.store.collected`'s; this lays out the word box, the challenge, the pen with its guesses, Save and the
counts so far.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from doodle import metrics, resources
from doodle.app import guesses, labels
from doodle.app.live import drawn, mount_pen, not_sure_threshold, show_guesses
from doodle.predict.loaded_run import LoadedRun
from doodle.runs.folder import RunDir, load_logits
from doodle.runs.report import confusion_pairs
from doodle.store import collected as coll

# After a save the counts re-read only the file it appended to: each file's drawings are kept (the latest
# version of each file only) until its size or mtime changes. Before, every save by anyone made the next
# full run of each saving session parse every drawing of the folder again: O(folder) per save, and growing.
_FILES: dict[Path, tuple[tuple[int, int], tuple[coll.Collected, ...]]] = {}


def file_drawings(path: Path, stamp: tuple[int, int]) -> tuple[coll.Collected, ...]:
    """The drawings of one collected file as of `stamp` (size, mtime_ns), read again only when it changed."""
    hit = _FILES.get(path)
    if hit is None or hit[0] != stamp:  # two sessions may both read a changed file: harmless, same result
        hit = _FILES[path] = (stamp, tuple(coll.read_drawing_file(path)[0]))
    return hit[1]


@st.cache_data(show_spinner=False, max_entries=4)
def collected_stats(root: str, files: tuple) -> dict:
    """Counts per person, word and review status; read again only when the collected files change
    (`files`: labels.file_stamps), and then only the files that changed (`file_drawings`)."""
    items = [it for name, size, mtime in files if name != coll.DECISIONS
             for it in file_drawings(Path(root, name), (size, mtime))]
    return coll.stats(items, coll.read_decisions(root)[0])


def class_accuracy(runs: list[LoadedRun]) -> np.ndarray | None:
    """Validation accuracy per class of the chosen model(s) (the members' mean), when the checkpoints have it."""
    acc = [r.per_class_acc for r in runs if r.per_class_acc is not None]
    return np.mean(acc, axis=0) if acc else None


@st.cache_data(show_spinner=False, max_entries=8)
def run_validation(path: str, stamp: float) -> tuple[np.ndarray, list[dict]]:
    """Per-class validation accuracy and the 30 most confused pairs, from the run's val_logits.npz."""
    v = load_logits(RunDir(path).val_logits)
    target, pred = np.asarray(v["target"]), v["logits"].argmax(axis=1)
    acc = metrics.per_class_accuracy(v["logits"], target, len(v["classes"]))
    return acc, confusion_pairs(target, pred, v["classes"], 30)


def validation_of(runs: list[LoadedRun]) -> tuple[np.ndarray | None, list[dict]]:
    """The first run's validation accuracy and confusions; the checkpoints' accuracy (no pairs) for an export
    or a run without val_logits.npz."""
    lr = runs[0]
    try:
        acc, pairs = run_validation(str(lr.run.root), lr.run.val_logits.stat().st_mtime)
        if len(acc) == len(lr.classes):
            return acc, pairs
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return class_accuracy(runs), []


def challenge(runs: list[LoadedRun], words: list[str], args: argparse.Namespace) -> None:
    """Button callback: pick a word that needs drawings most (errors, confusions, few collected), before the
    word box is drawn."""
    acc, pairs = validation_of(runs)
    have = collected_stats(str(args.collected), labels.file_stamps(args.collected))["per_word"]
    pick = labels.challenge_word(runs[0].classes, acc, np.random.default_rng(), pairs=pairs, collected=have)
    if pick.word in words:
        st.session_state.label_word = pick.word
        st.session_state.label_why = pick


def save(a: guesses.Analysis, word: str, words: list[str], args: argparse.Namespace) -> None:
    recognized = bool(a.top(1)) and a.top(1)[0][0] == word
    try:
        path, rec = labels.append_drawing(args.collected, words, word, a.raw, st.session_state.get("label_cc", ""),
                                          recognized, author=st.session_state.get("who", ""))
    except (labels.CollectError, OSError) as e:
        st.error(f"Not saved: {e}")
        return
    n = st.session_state.get("label_saved", 0)
    st.session_state.pop(f"label_pen_{n}_answer", None)
    st.session_state.label_saved = n + 1  # a new pen key: a fresh, empty pen
    guessed = ", ".join(f"{w} {p:.0%}" for w, p in a.top(3))
    st.session_state.label_msg = (f"Saved '{word}' by {rec['author']} to {path} (key_id {rec['key_id']}, "
                                  f"{'recognized' if recognized else 'not recognized'}). The model guessed: {guessed}.")
    st.rerun()


def label_mode(runs: list[LoadedRun], args: argparse.Namespace) -> None:
    words = resources.kaggle_classes()
    st.title("Label mode")
    st.caption(f"Type your name in the sidebar, pick a word, draw it, save: one Google raw ndjson line in "
               f"`{args.collected}/<word>.ndjson`, read by `tools/prepare.py` once someone else has accepted it "
               "(Review labels).")
    if "label_word" not in st.session_state:  # start with a challenge
        st.session_state.label_word = words[0]
        challenge(runs, words, args)
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    word = c1.selectbox("Word (type to search)", words, key="label_word")
    c2.button("Challenge me", on_click=challenge, args=(runs, words, args),
              help="a word that needs drawings: the model gets it wrong or confuses it, or few are collected")
    c3.text_input("Country", max_chars=2, key="label_cc", placeholder="GB")
    if msg := st.session_state.pop("label_msg", None):
        st.success(msg)
    label_live(runs, word, words, args)
    show_counts(args)


def show_counts(args: argparse.Namespace) -> None:
    """Drawings collected so far, per word and per person (with their review status)."""
    s = collected_stats(str(args.collected), labels.file_stamps(args.collected))
    st.subheader(f"Collected so far: {s['drawings']} drawing(s) of {len(s['per_word'])} word(s)")
    if not s["drawings"]:
        return
    st.caption(", ".join(f"{n} {status}" for status, n in s["per_status"].items()))
    left, right = st.columns(2)
    for col, key, name in [(left, "per_word", "word"), (right, "per_author", "person")]:
        col.dataframe(pd.DataFrame({name: list(s[key]), "drawings": list(s[key].values())}),
                      hide_index=True, height=min(400, 40 + 35 * len(s[key])))


@st.fragment
def label_live(runs: list[LoadedRun], word: str, words: list[str], args: argparse.Namespace) -> None:
    left, right = st.columns([1, 1])
    with left:
        st.markdown(f"#### Draw: **{word}**")
        why = st.session_state.get("label_why")
        if why is not None and why.word == word:
            st.caption(f"Why {word}: {why.why} (validation drawings of the model).")
        slot = st.container()
    key = f"label_pen_{st.session_state.get('label_saved', 0)}"
    a = drawn(key, runs)
    with right:
        st.subheader("Guesses")
        show_guesses(a, not_sure_threshold(runs))
        if st.button("Save drawing", type="primary", disabled=a.status != "ok" or not a.final, key="label_save"):
            save(a, word, words, args)
    mount_pen(key, a, slot)
