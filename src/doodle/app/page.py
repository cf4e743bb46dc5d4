"""The drawing page: draw and see the top-3 guesses (while drawing) and the network's input; label drawings
under your name; review the team's labels; review the model's mistakes.

    streamlit run src/app.py [-- --run outputs/r18_boost] [--outputs outputs] [--collected input/collected]

Runs are the finished fold folders under --outputs (config.yaml + checkpoints/best.pt); each renders with
its own saved config. The logic lives in doodle.app.guesses (drawing -> guesses), doodle.app.labels (label mode)
and doodle.app.review (review of collected drawings; its page mode: doodle.app.review_page);
the pen (doodle.app.pen_input) records each point's time and sends the drawing while it is drawn. The pen and
its guesses are one fragment: an update reruns only that part of the page.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from doodle import metrics, resources
from doodle.app import guesses, labels
from doodle.app.pen_input import pen
from doodle.app.review_page import review_labels_mode
from doodle.predict.exported import is_exported, load_model
from doodle.predict.loaded_run import LoadedRun
from doodle.runs.folder import RunDir, find_folds, load_logits
from doodle.runs.report import confusion_pairs
from doodle.store import collected as coll
from doodle.store.format import Store

# Streamlit collects garbage after every script run (runner.postScriptGC). With torch, timm and numba loaded
# that walks every object and holds the GIL for ~300 ms on this CPU, and the page's messages wait to be sent
# meanwhile: a guess took ~0.4 s to show instead of ~0.15. What lives as long as the server (the modules, then
# each loaded model, see `_load`) is taken out of the collector's sight once (gc.freeze), so the collection
# walks only what the runs made. .streamlit/config.toml also turns that collection off for a page started
# from the repository root.
gc.freeze()
ENSEMBLE = "ensemble of all"
CANVAS_PX = 400  # the pen's largest side; it shrinks to fit a narrow column (a phone)
PER_PAGE = 12
NO_RUN = """**No trained run under `{root}`.** The page needs one: a folder with `config.yaml` and
`checkpoints/best.pt`. Make one on the bundled sample (a few minutes on a CPU):

    make demo

or step by step:

    python tools/prepare.py --src input/sample --out input/demo_store
    python src/train.py --cfg configs/demo.yaml

then reload this page (or start it with `-- --outputs DIR` / `-- --run outputs/<run>`)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="streamlit run src/app.py --", description="the doodle drawing page")
    p.add_argument("--outputs", type=Path, default=Path("outputs"), help="folder searched for finished runs")
    p.add_argument("--run", type=Path, help="a run (or fold) folder to select first")
    p.add_argument("--collected", type=Path, default=Path("input/collected"),
                   help="label mode writes <word>.ndjson here")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per guess (1 stays fast when other work shares the cores)")
    args, unknown = p.parse_known_args(argv)
    args.unknown = unknown
    return args


# No cap on entries: the "ensemble of all" needs every fold loaded at once, however many there are.
@st.cache_resource(show_spinner="Loading model...", max_entries=None)
def _load(path: str, stamp: float) -> LoadedRun:
    lr = load_model(path, "cpu")
    gc.freeze()  # the model lives as long as the server: out of the collector's sight (see the top)
    return lr


def loaded(path: Path) -> LoadedRun:
    """The run (or exported file) at `path`, loaded once per server (reloaded when its best.pt / file changes)."""
    return _load(str(path), (path if is_exported(path) else RunDir(path).best).stat().st_mtime)


@st.cache_resource(show_spinner="Finding the drawings in the store...", max_entries=4)
def key_index(store_root: str, stamp: float, run: str, run_stamp: float) -> guesses.KeyIndex:
    """The store rows of the run's mistakes, found in one pass over its key_ids (not an index of every drawing)."""
    return guesses.KeyIndex(Store(store_root), [m.key_id for m in run_mistakes(run, run_stamp)])


@st.cache_resource(show_spinner="Finding mistakes...", max_entries=16)
def run_mistakes(path: str, stamp: float) -> list[guesses.Mistake]:
    """Shared, not copied, between reruns and sessions: the page only reads it."""
    return guesses.mistakes(loaded(Path(path)))


@st.cache_data(show_spinner=False, max_entries=4)
def collected_stats(root: str, files: tuple) -> dict:
    """Counts per person, word and review status; read again only when the collected files change
    (`files`: labels.file_stamps)."""
    items, _ = coll.read_drawings(root)
    return coll.stats(items, coll.read_decisions(root)[0])


def choose_runs(args: argparse.Namespace) -> list[Path]:
    """The sidebar's model choice: one run, or every run for the ensemble."""
    runs = guesses.find_runs(args.outputs)
    if args.run:
        try:
            first = [args.run] if is_exported(args.run) else [f.root for f in find_folds(args.run)]
        except FileNotFoundError as e:
            st.sidebar.error(str(e))
            first = []
        runs = first + [r for r in runs if r.resolve() not in {f.resolve() for f in first}]
    named = {guesses.run_label(r, args.outputs): r for r in runs}
    if not named:
        return []
    options = list(named) + ([ENSEMBLE] if len(named) > 1 else [])
    choice = st.sidebar.selectbox("Model", options, key="model",
                                  help=f"finished runs under {args.outputs}; the ensemble averages probabilities")
    return list(named.values()) if choice == ENSEMBLE else [named[choice]]


def load_members(paths: list[Path]) -> list[LoadedRun]:
    try:
        runs = [loaded(p) for p in paths]
    except (OSError, ValueError) as e:
        st.error(f"Cannot load the model: {e}")
        st.stop()
    members, left_out = guesses.compatible(runs)
    if left_out:
        st.sidebar.warning(f"left out of the ensemble (other classes): {', '.join(r.run.run_name for r in left_out)}")
    for lr in members[:4]:
        st.sidebar.caption(f"`{lr.run.root}`: {lr.cfg.model.name}, {lr.spec.encoding} at {lr.spec.size} px, "
                           f"{len(lr.classes)} classes")
    return members


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


@st.fragment
def draw_live(runs: list[LoadedRun]) -> None:
    left, right = st.columns([1, 1])
    with left:
        st.subheader("Draw here")
        slot = st.container()
    a = drawn("draw_pen", runs)
    with right:
        st.subheader("Guesses")
        show_guesses(a, not_sure_threshold(runs))
    show_channels(settled("draw_pen", a), pen_down=not a.final)
    mount_pen("draw_pen", a, slot)


def draw_mode(runs: list[LoadedRun], args: argparse.Namespace) -> None:
    st.title("Draw a doodle")
    st.caption("Draw with the mouse, a finger or a pen: the guesses follow the pen while you draw. "
               "Undo and Clear are under the drawing.")
    draw_live(runs)


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


def review_mode(runs: list[LoadedRun], args: argparse.Namespace) -> None:
    st.title("Validation mistakes")
    lr = runs[0]
    if len(runs) > 1:
        names = [str(r.run.root) for r in runs]
        lr = runs[names.index(st.selectbox("Run", names, key="review_run"))]
    try:
        run, run_stamp = str(lr.run.root), lr.run.val_logits.stat().st_mtime
        found = run_mistakes(run, run_stamp)
        index = key_index(lr.cfg.data.store, Path(lr.cfg.data.store, "store.json").stat().st_mtime, run, run_stamp)
    except (OSError, ValueError) as e:
        st.warning(f"Cannot review {lr.run.root}: {e}")
        return
    sl, pages = guesses.page_slice(len(found), st.session_state.get("review_page", 1), PER_PAGE)
    st.caption(f"{len(found)} drawings of the validation fold whose top guess is wrong, worst classes first "
               f"(per-class accuracy), rendered from `{lr.cfg.data.store}` as `{lr.run.run_name}` sees them.")
    st.columns([1, 3])[0].number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key="review_page")
    zoom = max(1, 128 // lr.spec.size)
    for start in range(sl.start, sl.stop, 4):
        for col, m in zip(st.columns(4), found[start : min(start + 4, sl.stop)], strict=False):
            with col:
                try:
                    img = guesses.display_image(guesses.model_image(index.drawing(m.key_id), lr.spec))
                except KeyError as e:
                    st.warning(str(e))
                    continue
                st.image(guesses.enlarge(img, zoom), caption=f"key_id {m.key_id}")
                st.markdown(f"true **{m.true}** (class accuracy {m.class_acc:.0%})  \n"
                            + "  \n".join(f"{i}. {w} {p:.0%}" for i, (w, p) in enumerate(m.guesses, 1)))


MODES = {"Draw": draw_mode, "Label": label_mode, "Review labels": review_labels_mode, "Review": review_mode}


def main() -> None:
    st.set_page_config(page_title="doodle", layout="wide")
    args = parse_args(sys.argv[1:])
    torch.set_num_threads(max(1, args.threads))
    if args.unknown:
        st.sidebar.warning(f"ignored arguments: {' '.join(args.unknown)}")
    st.sidebar.title("doodle")
    mode = st.sidebar.radio("Mode", list(MODES), key="mode", horizontal=True,
                            help="Review: the model's validation mistakes; Review labels: the team's drawings")
    st.sidebar.text_input("Your name", key="who", max_chars=coll.MAX_NAME, placeholder="saved with your drawings",
                          help="who drew or reviewed (no password: it says who, it proves nothing)")
    paths = choose_runs(args)
    if not paths:
        st.info(NO_RUN.format(root=args.outputs))
        st.stop()
    MODES[mode](load_members(paths), args)
