"""The page under Streamlit's AppTest: the pen is an unknown element there, so drawings are injected
through its session-state key (the message the pen component would send)."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest_app import ROOT, outputs_copy, tiny_run  # noqa: F401  (fixtures)
from streamlit.testing.v1 import AppTest

from doodle.drawing.pen import pen_message

APP = str(ROOT / "src" / "app.py")
TWO_STROKES = [[[10, 60, 120, 200], [20, 80, 60, 30], [0, 40, 90, 130]], [[100, 110, 105], [20, 150, 250], [400, 460, 520]]]
SEQ = iter(range(1, 10**6))


def start(monkeypatch, *args: str) -> AppTest:
    # the page reads its own arguments (`streamlit run src/app.py -- ...`) from sys.argv
    monkeypatch.setattr(sys, "argv", ["src/app.py", *map(str, args)])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def draw(at: AppTest, key: str, strokes: list, final: bool = True) -> AppTest:
    at.session_state[key] = pen_message(strokes, next(SEQ), final)
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
    draw(at, "draw_pen", TWO_STROKES)
    [text] = guesses(at)
    assert text.count("**") == 6 and "3. **" in text and "%" in text
    assert [i.value for i in at.subheader if i.value == "What the network sees"]
    assert captions(at) == ["stroke_order", "point_order", "ink"]
    assert any("ms on the server" in c.value for c in at.caption)
    draw(at, "draw_pen", [])  # cleared
    assert not guesses(at) and any("Draw something" in i.value for i in at.info)


def test_channels_follow_the_pen_lifts_and_guesses_every_send(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    """During a stroke the guesses follow each send; the channel images stay those of the last pen lift."""
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    sees = lambda: [i.value for i in at.subheader if i.value.startswith("What the network sees")]  # noqa: E731
    draw(at, "draw_pen", TWO_STROKES[:1], final=False)  # the first stroke, pen still down: nothing lifted yet
    assert len(guesses(at)) == 1 and sees() == [] and any("pen down" in c.value for c in at.caption)
    draw(at, "draw_pen", TWO_STROKES[:1])  # lifted
    lifted = [img.proto.imgs[0].url for img in at.get("image")]
    assert sees() == ["What the network sees"] and len(lifted) == 3
    draw(at, "draw_pen", TWO_STROKES, final=False)  # the second stroke, pen down: new guesses, old channels
    assert sees() == ["What the network sees (at the last pen lift)"]
    assert [img.proto.imgs[0].url for img in at.get("image")] == lifted
    draw(at, "draw_pen", TWO_STROKES)
    assert sees() == ["What the network sees"] and [img.proto.imgs[0].url for img in at.get("image")] != lifted


def test_huge_drawing_gets_a_clear_message(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    many = [[[i, i + 5], [i, i + 5], [10 * i, 10 * i + 5]] for i in range(500)]
    draw(at, "draw_pen", many)
    assert any("too large" in w.value for w in at.warning) and not guesses(at)


def test_model_choice_lists_runs_and_the_ensemble(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    shutil.copytree(outputs_copy / "tiny", outputs_copy / "tiny_b")
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    box = at.sidebar.selectbox(key="model")
    assert box.options == ["tiny/fold0", "tiny_b/fold0", "ensemble of all"]
    box.set_value("ensemble of all").run()
    draw(at, "draw_pen", TWO_STROKES)
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
    draw(at, "label_pen_0", TWO_STROKES)
    assert len(guesses(at)) == 1
    at.button(key="label_save").click().run()  # no name yet: refused, nothing written
    assert any("Not saved: name is empty" in e.value for e in at.error) and not collected.exists()
    at.sidebar.text_input(key="who").input(" Ann ").run()
    at.button(key="label_save").click().run()
    assert not at.exception, at.exception
    [line] = (collected / "crab.ndjson").read_text().splitlines()
    rec = json.loads(line)
    assert rec["word"] == "crab" and rec["countrycode"] == "DE" and len(rec["key_id"]) == 19
    assert rec["author"] == "Ann"
    assert len(rec["drawing"]) == 2 and len(rec["drawing"][0]) == 3
    assert rec["drawing"][0][2] == [0, 40, 90, 130] and rec["drawing"][1][2] == [400, 460, 520]  # the real times
    assert any("Saved 'crab' by Ann" in s.value for s in at.success)
    assert any("1 drawing(s) of 1 word(s)" in s.value for s in at.subheader)
    assert not guesses(at)  # a fresh canvas after saving
    tables = [t.value.to_dict("list") for t in at.dataframe]
    assert {"word": ["crab"], "drawings": [1]} in tables and {"person": ["Ann"], "drawings": [1]} in tables
    assert any("1 unreviewed" in c.value for c in at.caption)


def test_review_labels_accepts_others_drawings_not_ones_own(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    collected = tmp_path / "collected"
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", collected)
    at.sidebar.text_input(key="who").input("ann").run()
    at.sidebar.radio(key="mode").set_value("Label").run()
    for word in ["crab", "bear"]:
        at.selectbox(key="label_word").set_value(word).run()
        draw(at, f"label_pen_{at.session_state['label_saved'] if 'label_saved' in at.session_state else 0}",
             TWO_STROKES)
        at.button(key="label_save").click().run()
    keys = [json.loads((collected / f"{w}.ndjson").read_text())["key_id"] for w in ["crab", "bear"]]
    at.sidebar.radio(key="mode").set_value("Review labels").run()
    assert not at.exception, at.exception
    assert any("Nothing to review" in i.value for i in at.info)  # both are ann's own
    assert any("2 of yours left for someone else" in c.value for c in at.caption)
    at.sidebar.text_input(key="who").input("bob").run()
    assert [c for img in at.get("image") for c in img.captions] == [f"key_id {k}" for k in keys]  # oldest first
    at.text_input(key=f"reason_{keys[1]}").input("not a bear").run()
    at.button(key=f"reject_{keys[1]}").click().run()
    at.button(key=f"accept_{keys[0]}").click().run()
    assert not at.exception, at.exception
    assert any(f"accepted key_id {keys[0]}" in s.value for s in at.success)
    assert any("Nothing to review" in i.value for i in at.info)
    got = [json.loads(line) for line in (collected / "_decisions.ndjson").read_text().splitlines()]
    assert [(d["key_id"], d["decision"], d["reviewer"], d["reason"]) for d in got] == [
        (keys[1], "reject", "bob", "not a bear"), (keys[0], "accept", "bob", "")]
    at.sidebar.text_input(key="who").input("../bob").run()
    assert any("Type your name in the sidebar" in w.value for w in at.warning)


@pytest.mark.parametrize("word", ["../crab", "crab/../../x"])
def test_label_mode_word_box_offers_only_classes(monkeypatch, outputs_copy, tmp_path, word):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    at.sidebar.radio(key="mode").set_value("Label").run()
    assert word not in at.selectbox(key="label_word").options
    assert len(at.selectbox(key="label_word").options) == 340


def test_rapid_redraws_undo_and_clear(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    strokes = [[[10 + 9 * k, 40 + 9 * k, 80], [20, 90 + 5 * k, 200 - 7 * k], [300 * k, 300 * k + 50, 300 * k + 90]]
               for k in range(12)]
    for n in [1, 2, 3, 5, 8, 12, 11, 10, 4, 0, 2]:  # growing, undo, clear, drawing again
        draw(at, "draw_pen", strokes[:n])
        assert len(guesses(at)) == (1 if n else 0)
        assert at.session_state["draw_pen_answer"].status == ("ok" if n else "empty")
    if at.session_state["draw_pen_answer"].raw is not None:
        assert at.session_state["draw_pen_answer"].raw.n_strokes == 2


def test_stale_sends_are_dropped_and_bad_ones_explained(monkeypatch, outputs_copy, tmp_path):  # noqa: F811
    at = start(monkeypatch, "--outputs", outputs_copy, "--collected", tmp_path / "c")
    draw(at, "draw_pen", TWO_STROKES, final=False)
    newest = at.session_state["draw_pen_answer"]
    at.session_state["draw_pen"] = pen_message(TWO_STROKES[:1], newest.seq - 1)  # arrives late: stale
    at.run()
    assert at.session_state["draw_pen_answer"] is newest and len(guesses(at)) == 1
    backwards = [[[10, 20, 30], [10, 20, 30], [0, 50, 40]]]
    draw(at, "draw_pen", backwards)
    assert not at.exception and not guesses(at)
    assert any("time_backwards" in w.value for w in at.warning)
    at.session_state["draw_pen"] = {"v": 1, "seq": 10**6, "final": True, "strokes": "x" * 100}
    at.run()
    assert not at.exception and any("Cannot read" in w.value for w in at.warning)


def test_streamlit_config_keeps_the_garbage_collection_off_the_update_path():
    """`streamlit run src/app.py` from the repository root reads .streamlit/config.toml: no full collection after
    every run (it held the GIL ~300 ms while the guesses waited to be sent; see doodle.app.page)."""
    import tomllib

    from streamlit import config

    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["runner"]["postScriptGC"] is False
    assert "runner.postScriptGC" in config._config_options_template  # a real Streamlit option, not a typo


def test_label_counts_reread_only_the_file_a_save_changed(tmp_path, monkeypatch):
    """After a save the counts parse only the word file it appended to, not every drawing of the folder."""
    from doodle.app import label_page, labels
    from doodle.store import collected as coll

    real, reads = coll.read_drawing_file, []
    monkeypatch.setattr(coll, "read_drawing_file", lambda path: reads.append(path.name) or real(path))
    coll.mark_folder(tmp_path)
    line = {"countrycode": "", "timestamp": "2026-12-02 10:00:00.000000 UTC", "recognized": False,
            "drawing": TWO_STROKES, "author": "ann"}
    for i, word in enumerate(["bear", "bear", "crab"]):
        coll.append_record(tmp_path / f"{word}.ndjson", line | {"word": word, "key_id": str(10**18 + i)})
    s = label_page.collected_stats(str(tmp_path), labels.file_stamps(tmp_path))
    assert s["per_word"] == {"bear": 2, "crab": 1} and sorted(reads) == ["bear.ndjson", "crab.ndjson"]
    reads.clear()
    coll.append_record(tmp_path / "crab.ndjson", line | {"word": "crab", "key_id": str(10**18 + 3)})
    s = label_page.collected_stats(str(tmp_path), labels.file_stamps(tmp_path))
    assert s["per_word"] == {"bear": 2, "crab": 2} and reads == ["crab.ndjson"]
