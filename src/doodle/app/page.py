"""The drawing page: draw and see the top-3 guesses (while drawing) and the network's input; label drawings
under your name; review the team's labels; review the model's mistakes.

    streamlit run src/app.py [-- --run outputs/r18_boost] [--outputs outputs] [--collected input/collected]

Runs are the finished fold folders under --outputs (config.yaml + checkpoints/best.pt); each renders with
its own saved config. This module holds the sidebar, the Draw mode and the model's mistakes (Review); the
other modes have their own modules: Label (doodle.app.label_page over doodle.app.labels) and Review labels
(doodle.app.review_page over doodle.app.review). The pen with its guesses, shared by Draw and Label, is
doodle.app.live; the logic of drawing -> guesses is doodle.app.guesses. The pen (doodle.app.pen_input)
records each point's time and sends the drawing while it is drawn; the pen and its guesses are one
fragment: an update reruns only that part of the page.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import streamlit as st
import torch

from doodle.app import guesses
from doodle.app.label_page import label_mode
from doodle.app.live import drawn, mount_pen, not_sure_threshold, settled, show_channels, show_guesses
from doodle.app.review_page import review_labels_mode
from doodle.predict.exported import is_exported, load_model
from doodle.predict.loaded_run import LoadedRun
from doodle.runs.folder import RunDir, find_folds
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
