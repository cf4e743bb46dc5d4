"""The page under Streamlit's AppTest: the canvas is an unknown element there, so drawings are injected
through its session-state key (the value the canvas component would send)."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest_app import ROOT, outputs_copy, tiny_run  # noqa: F401  (fixtures)
from streamlit.testing.v1 import AppTest

from doodle.app import guesses as page

APP = str(ROOT / "src" / "app.py")
TWO_STROKES = page.canvas_from_strokes([[[10, 60, 120, 200], [20, 80, 60, 30]], [[100, 110, 105], [20, 150, 250]]])


def start(monkeypatch, *args: str) -> AppTest:
    # the page reads its own arguments (`streamlit run src/app.py -- ...`) from sys.argv
    monkeypatch.setattr(sys, "argv", ["src/app.py", *map(str, args)])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def draw(at: AppTest, key: str, data: dict) -> AppTest:
    at.session_state[key] = {"drawing": {"raw": data, "data": None}}
    at.run()
    assert not at.exception, at.exception
    return at


def guesses(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("1. **")]


def captions(at: AppTest) -> list[str]:
    return [c for img in at.get("image") for c in img.captions]


def test_no_run_says_how_to_make_one(monkeypatch, tmp_path):
    at = start(monkeypatch, "--outputs", tmp_path / "empty", "--collected", tmp_path / "c")
    text = " ".join(i.value for i in at.info)
    assert "No trained run" in text and "make demo" in text and "configs/demo.yaml" in text


def test_draw_shows_three_guesses_and_the_channels(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    assert at.sidebar.selectbox(key="model").options == ["tiny/fold0"]
    assert any("Draw something" in i.value for i in at.info)
    draw(at, "draw_canvas", TWO_STROKES)
    [text] = guesses(at)
    assert text.count("**") == 6 and "3. **" in text and "%" in text
    assert [i.value for i in at.subheader if i.value == "What the network sees"]
    assert captions(at) == ["stroke_order", "point_order", "ink"]
    assert any("ms on the server" in c.value for c in at.caption)
    draw(at, "draw_canvas", {"objects": []})  # cleared
    assert not guesses(at) and any("Draw something" in i.value for i in at.info)


def test_huge_drawing_gets_a_clear_message(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    many = page.canvas_from_strokes([[[i, i + 5], [i, i + 5]] for i in range(500)])
    draw(at, "draw_canvas", many)
    assert any("too large" in w.value for w in at.warning) and not guesses(at)


def test_model_choice_lists_runs_and_the_ensemble(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    shutil.copytree(outputs_copy / "tiny", outputs_copy / "tiny_b")
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    box = at.sidebar.selectbox(key="model")
    assert box.options == ["tiny/fold0", "tiny_b/fold0", "ensemble of all"]
    box.set_value("ensemble of all").run()
    draw(at, "draw_canvas", TWO_STROKES)
    assert len(guesses(at)) == 1


def test_run_argument_is_selected_first(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    shutil.copytree(outputs_copy / "tiny", outputs_copy / "alpha")
    at = start(monkeypatch, "--outputs", outputs_copy, "--run", outputs_copy / "tiny", "--collected", tmp_path)
    assert at.sidebar.selectbox(key="model").value == "tiny/fold0"


def test_review_shows_mistakes_worst_classes_first(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    at.sidebar.radio(key="mode").set_value("Review").run()
    assert not at.exception, at.exception
    cards = [m.value for m in at.markdown if m.value.startswith("true **")]
    assert 0 < len(cards) <= 12 and all("1. " in c and "3. " in c for c in cards)
    assert len(captions(at)) == len(cards) and all(c.startswith("key_id ") for c in captions(at))
    at.number_input(key="review_page").set_value(2).run()
    assert not at.exception
    assert [m.value for m in at.markdown if m.value.startswith("true **")] != cards


def test_label_mode_saves_a_line(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    collected = tmp_path / "collected"
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", collected)
    at.sidebar.radio(key="mode").set_value("Label").run()
    at.selectbox(key="label_word").set_value("crab").run()
    at.text_input(key="label_cc").input("de").run()
    draw(at, "label_canvas_0", TWO_STROKES)
    assert len(guesses(at)) == 1
    at.button(key="label_save").click().run()
    assert not at.exception, at.exception
    [line] = (collected / "crab.ndjson").read_text().splitlines()
    rec = json.loads(line)
    assert rec["word"] == "crab" and rec["countrycode"] == "DE" and len(rec["key_id"]) == 19
    assert len(rec["drawing"]) == 2 and len(rec["drawing"][0]) == 3
    assert any("Saved 'crab'" in s.value for s in at.success)
    assert any("1 drawing(s) of 1 word(s)" in s.value for s in at.subheader)
    assert not guesses(at)  # a fresh canvas after saving


@pytest.mark.parametrize("word", ["../crab", "crab/../../x"])
def test_label_mode_word_box_offers_only_classes(monkeypatch, outputs_copy, tmp_path, word):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    at.sidebar.radio(key="mode").set_value("Label").run()
    assert word not in at.selectbox(key="label_word").options
    assert len(at.selectbox(key="label_word").options) == 340


def test_rapid_redraws_undo_and_clear(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    strokes = [[[10 + 9 * k, 40 + 9 * k, 80], [20, 90 + 5 * k, 200 - 7 * k]] for k in range(12)]
    for n in [1, 2, 3, 5, 8, 12, 11, 10, 4, 0, 2]:  # growing, undo, clear, drawing again
        draw(at, "draw_canvas", page.canvas_from_strokes(strokes[:n]))
        assert len(guesses(at)) == (1 if n else 0)
        assert len(at.session_state["draw_canvas_times"]) == n
