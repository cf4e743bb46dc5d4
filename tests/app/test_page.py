"""The drawing page's logic (doodle.app.guesses) and label-mode storage (doodle.app.labels), without Streamlit."""

from __future__ import annotations

import copy
import json
import os
import threading

import numpy as np
import pytest
from conftest_app import RAW, outputs_copy, tiny_run  # noqa: F401  (fixtures)

from doodle import resources
from doodle.app import guesses as page
from doodle.app import labels as collect
from doodle.drawing.flat import Drawings
from doodle.drawing.pen import parse_pen, pen_message
from doodle.drawing.strokes import simplify_raw
from doodle.models.factory import build_model
from doodle.predict.loaded_run import load_run
from doodle.render.raster import RasterSpec, render_drawing
from doodle.store import collected as coll
from doodle.store.format import Store
from doodle.store.prepare import PrepareOptions, prepare
from doodle.store.readers import read_ndjson
from doodle.train.data import make_inputs

WORDS = resources.kaggle_classes()


def raw_records(n: int | None = None) -> list[dict]:
    lines = [json.loads(line) for p in sorted(RAW.glob("*.ndjson")) for line in p.read_text().splitlines()]
    return lines[:n] if n else lines


def pen_of(rec: dict) -> dict:
    """A raw record as the pen component sends it (its strokes with every point's time)."""
    return pen_message(rec["drawing"])


@pytest.fixture(scope="module")
def loaded(tiny_run):  # noqa: F811
    return load_run(tiny_run[1] / "tiny" / "fold0")


# ---- pen -> image is the store's image ----------------------------------------------------------------

def test_pen_drawing_renders_as_the_store_does(tiny_run, loaded):  # noqa: F811
    """Raw ndjson -> the pen's message -> the page's path gives the points, times and images (all channels,
    time encodings included) that the store path (prepare -> render) gives, for every raw sample drawing."""
    store = Store(tiny_run[0])
    row = {int(k): i for i, k in enumerate(np.asarray(store.key_id))}
    recs = raw_records()
    assert len(recs) == len(store) > 100
    specs = [RasterSpec(size=loaded.spec.size, encoding="time3"), RasterSpec(size=64, encoding="rt3"),
             RasterSpec(size=64, encoding="time3", line_width=3, antialias=True), loaded.spec,
             RasterSpec(size=48, encoding="grey")]
    for k, rec in enumerate(recs):
        stored = store.drawing(row[int(rec["key_id"])])
        message = pen_of(rec)
        if k % 10 == 0:  # the whole page step, model included, on a tenth of them (the forward is the cost)
            a = page.analyse(message, [loaded])
            assert a.status == "ok", a.message
            simplified = a.simplified
            np.testing.assert_array_equal(a.images[0], render_drawing(stored, loaded.spec))
        else:  # the same chain as analyse, without the model
            simplified = page.simplify(parse_pen(message, page.PAGE_LIMITS).drawing)
        np.testing.assert_array_equal(simplified.xy, stored.xy)
        np.testing.assert_array_equal(simplified.ends, stored.ends)
        np.testing.assert_array_equal(simplified.t - simplified.t.min(), stored.t)
        for spec in specs:
            np.testing.assert_array_equal(page.model_image(simplified, spec), render_drawing(stored, spec))


def test_shown_image_is_the_model_input(loaded):
    rec = raw_records(1)[0]
    a = page.analyse(pen_of(rec), [loaded])
    fed = make_inputs(Drawings.pack([a.simplified]), loaded.cfg, loaded.spec, loaded.input_kind)["image"]
    np.testing.assert_array_equal(a.images[0], fed[0].numpy())
    assert a.probs.shape == (len(loaded.classes),) and abs(a.probs.sum() - 1) < 1e-6
    top = a.top(3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    names = [n for n, _ in page.channels(a.images[0], loaded.spec, zoom=4)]
    assert names == ["stroke_order", "point_order", "ink"]
    assert page.channels(a.images[0], loaded.spec, zoom=4)[0][1].shape == (128, 128)


def test_ensemble_renders_per_run_and_averages(loaded):
    other = copy.copy(loaded)
    other.cfg = copy.deepcopy(loaded.cfg)
    other.cfg.raster.encoding, other.cfg.data.img_size = "grey", 48
    # a 3-channel model cannot read a 1-channel image: the member's own model must match its own spec
    other.model = build_model(other.cfg, len(loaded.classes), 1).eval()
    a = page.analyse(pen_of(raw_records(1)[0]), [loaded, other])
    assert [s.encoding for s in a.specs] == ["order3", "grey"] and a.images[1].shape == (48, 48, 1)
    one = page.analyse(pen_of(raw_records(1)[0]), [loaded]).probs
    two = page.analyse(pen_of(raw_records(1)[0]), [other]).probs
    np.testing.assert_allclose(a.probs, (one + two) / 2, atol=1e-6)


# ---- guard rails -------------------------------------------------------------------------------------

def test_empty_and_broken_messages():
    assert page.analyse(None, []).status == "empty"
    assert page.analyse(pen_message([]), []).status == "empty"
    assert page.analyse(pen_message([[[], [], []]]), []).status == "empty"
    for bad in ({"v": 1, "seq": 1, "final": True, "strokes": [[["a"], [1], [0]]]}, "text", [1, 2],
                {"v": 2, "seq": 1, "final": True, "strokes": []}):
        a = page.analyse(bad, [])
        assert a.status == "invalid" and "Cannot read" in a.message


def test_huge_drawings_are_refused_clearly():
    rng = np.random.default_rng(0)
    scribble = pen_message([[*rng.uniform(0, 280, (2, 10_000)), np.arange(10_000)]])
    many = pen_message([[*rng.uniform(0, 280, (2, 5)), np.arange(5) + 10 * k] for k in range(500)])
    for data in (scribble, many):
        a = page.analyse(data, [])
        assert a.status == "too_large" and "too large" in a.message.lower()


def test_long_but_reasonable_drawing_is_accepted(loaded):
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(0, 3, (3000, 2)), axis=0)
    walk = (walk - walk.min(0)) / np.ptp(walk, 0).max() * 270
    a = page.analyse(pen_message([[*walk.T, np.arange(3000) * 8]]), [loaded])
    assert a.status == "ok" and len(a.top(3)) == 3


def test_temperature_calibrates_and_keeps_the_ranking(loaded):
    import dataclasses

    rec = raw_records(1)[0]
    summary = json.loads(loaded.run.summary.read_text())
    assert summary["val/temperature"] > 0 and summary["val/ece"] >= 0 and summary["val/ece_calibrated"] >= 0
    assert loaded.temperature == pytest.approx(summary["val/temperature"])  # best.pt carries it
    plain = page.analyse(pen_of(rec), [dataclasses.replace(loaded, temperature=1.0)]).probs
    soft = page.analyse(pen_of(rec), [dataclasses.replace(loaded, temperature=4.0)]).probs
    assert list(np.argsort(-soft)[:3]) == list(np.argsort(-plain)[:3]) and soft.max() < plain.max()
    a = page.analyse(pen_of(rec), [loaded])
    assert page.not_sure(a, 1.0) and not page.not_sure(a, 0.0)


def test_runs_without_a_temperature_are_not_rescaled():
    from doodle.predict.loaded_run import temperature_of

    assert [temperature_of(v) for v in (None, 0, -2.0, float("nan"), "2", 1e9)] == [1.0] * 6
    assert temperature_of(0.77) == 0.77


# ---- runs and review --------------------------------------------------------------------------------------

def test_find_runs(outputs_copy, tmp_path):  # noqa: F811
    fold = outputs_copy / "tiny" / "fold0"
    (outputs_copy / "half" / "fold0").mkdir(parents=True)
    (outputs_copy / "half" / "fold0" / "config.yaml").write_text("{}")  # no best.pt: not finished
    assert page.find_runs(outputs_copy) == [fold]
    assert page.find_runs(fold) == [fold]
    assert page.find_runs(tmp_path / "missing") == []
    assert page.run_label(fold, outputs_copy) == "tiny/fold0"


def test_mistakes_worst_classes_first(loaded):
    found = page.mistakes(loaded)
    assert found and all(m.guesses[0][0] != m.true for m in found)
    accs = [m.class_acc for m in found]
    assert accs == sorted(accs)
    assert all(len(m.guesses) == 3 and m.guesses[0][1] >= m.guesses[2][1] for m in found)


def test_review_drawings_come_from_the_store(tiny_run, loaded):  # noqa: F811
    index = page.KeyIndex(Store(tiny_run[0]))
    m = page.mistakes(loaded)[0]
    assert index.drawing(m.key_id).n_points > 0
    with pytest.raises(KeyError):
        index.drawing(1)
    assert page.page_slice(25, 3, 12) == (slice(24, 25), 3)
    assert page.page_slice(0, 5, 12) == (slice(0, 0), 1)


# ---- label mode ---------------------------------------------------------------------------------------

def pen_drawing(k: int = 0):
    return parse_pen(pen_of(raw_records(k + 1)[k])).drawing


def test_saves_append_lines_with_unique_key_ids(tmp_path):
    root = tmp_path / "collected"
    d = pen_drawing()
    path, first = collect.append_drawing(root, WORDS, "bear", d, "gb", recognized=True, author="ann")
    before = path.read_bytes()
    keys = {first["key_id"]}
    for k in range(5):
        _, rec = collect.append_drawing(root, WORDS, "bear", d, author=["ann", "bob"][k % 2])
        keys.add(rec["key_id"])
    data = path.read_bytes()
    assert data.startswith(before) and data.count(b"\n") == 6  # appended, never rewritten
    assert len(keys) == 6 and all(len(k) == 19 for k in keys)
    assert path == (root / "bear.ndjson").resolve()
    assert first["countrycode"] == "GB" and first["recognized"] is True and first["timestamp"].endswith(" UTC")
    s = coll.stats(coll.read_drawings(root)[0], {})
    assert (s["per_word"], s["per_author"], s["per_status"]) == ({"bear": 6}, {"ann": 4, "bob": 2}, {"unreviewed": 6})


def test_threads_saving_at_once_get_distinct_key_ids_and_whole_lines(tmp_path):
    """The key_id is picked with the file locked: 6 sessions saving 4 drawings each at once, 24 distinct ids."""
    d = pen_drawing()

    def user(k):
        for _ in range(4):
            collect.append_drawing(tmp_path, WORDS, "bear", d, author=f"user{k}")

    threads = [threading.Thread(target=user, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items, problems = coll.read_drawings(tmp_path)
    assert not problems and len({it.key_id for it in items}) == 24
    assert coll.stats(items, {})["per_author"] == {f"user{k}": 4 for k in range(6)}


def test_key_ids_stay_distinct_with_each_byte_read_once(tmp_path, monkeypatch):
    """The clock frozen and the random digits always 0, so every save first tries the same key_id: the index
    of the file's key_ids (with lines another process appended in between) still makes each one distinct,
    and a save reads only what was appended since the last one (O(1) amortised, not O(file))."""
    monkeypatch.setattr(collect.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    monkeypatch.setattr(collect.secrets, "randbelow", lambda n: 0)
    d, root = pen_drawing(), tmp_path / "collected"
    first = 1_700_000_000_000_000 * 1000
    keys = []
    for k in range(20):
        path, rec = collect.append_drawing(root, WORDS, "bear", d, author="ann")
        keys.append(int(rec["key_id"]))
        if k % 5 == 0:  # another server appends the key_id the next save would pick
            coll.append_record(path, rec | {"key_id": str(first + 1000 * (k + 1 + k // 5)), "author": "other"})
    items, problems = coll.read_drawings(root)
    assert not problems and len(items) == 24 and len({it.key_id for it in items}) == 24
    assert keys[0] == first and len(set(keys)) == 20
    index = collect._INDEXES[path]
    assert index.bytes_read <= path.stat().st_size and index.keys == {it.key_id for it in items} - {keys[-1]}


def test_new_key_id_skips_taken_ones():
    now = 1_700_000_000_000_000
    taken = {now * 1000 + i for i in range(1000)}
    key = collect.new_key_id(taken, now_us=now)
    assert key not in taken and len(str(key)) == 19


@pytest.mark.parametrize("word", ["../bear", "../../etc/passwd", "bear/../../x", "/tmp/bear", "bear\x00",
                                  "bear\n", "béar", "ＢＥＡＲ", "", None, 7, "b" * 10_000, ".", "..",
                                  "The Eiffel Tower/..", "bear.ndjson"])
def test_words_outside_the_class_list_never_reach_the_disk(tmp_path, word):
    root = tmp_path / "collected"
    with pytest.raises(collect.CollectError):
        collect.append_drawing(root, WORDS, word, pen_drawing(), author="ann")
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_odd_class_list_entries_cannot_escape(tmp_path):
    root = tmp_path / "collected"
    for word in ["../evil", "a/b", "..", "x\x00y"]:
        with pytest.raises(collect.CollectError):
            collect.append_drawing(root, [word], word, pen_drawing(), author="ann")
    assert list(tmp_path.rglob("*")) == []


def test_symlink_planted_at_a_word_file_is_refused(tmp_path):
    root, outside = tmp_path / "collected", tmp_path / "outside.ndjson"
    root.mkdir()
    outside.write_text("")
    os.symlink(outside, root / "bear.ndjson")
    with pytest.raises(collect.CollectError):
        collect.append_drawing(root, WORDS, "bear", pen_drawing(), author="ann")
    assert outside.read_text() == ""


def test_bad_country_codes_are_refused(tmp_path):
    for cc in ("GBR", "1A", "G", "é!"):
        with pytest.raises(collect.CollectError):
            collect.append_drawing(tmp_path, WORDS, "bear", pen_drawing(), cc, author="ann")
    assert not (tmp_path / "bear.ndjson").exists()


def test_collected_files_round_trip_through_read_ndjson_and_prepare(tmp_path):
    root = tmp_path / "collected"
    saved = []
    for k, word in enumerate(["bear", "The Eiffel Tower", "bear"]):
        d = pen_drawing(k)
        _, rec = collect.append_drawing(root, WORDS, word, d, "FR", recognized=k == 0, author="ann")
        saved.append((rec, d))
    batches = [b for p in sorted(root.glob("*.ndjson")) for b, rejects in read_ndjson(p) if not rejects]
    got = {int(k): (b, i) for b in batches for i, k in enumerate(b.key_id)}
    assert len(got) == 3
    for rec, d in saved:
        b, i = got[int(rec["key_id"])]
        assert b.word[i] == rec["word"] and b.countrycode[i] == "FR" and bool(b.recognized[i]) == rec["recognized"]
        expect = simplify_raw(d)
        np.testing.assert_array_equal(b.drawing(i).xy, expect.xy)
        np.testing.assert_array_equal(b.drawing(i).ends, expect.ends)
    summary = prepare([root], tmp_path / "store", PrepareOptions(classes=WORDS, all_known=set(WORDS)))
    assert summary["kept"] == 0 and summary["collected"]["left_out"] == {"unreviewed": 3}  # nobody reviewed them
    summary = prepare([root], tmp_path / "store", PrepareOptions(WORDS, set(WORDS), collected="all"))
    assert summary["kept"] == 3 and summary["rejected"] == 0


def test_challenge_picks_among_the_worst_classes():
    classes = [f"w{i}" for i in range(50)]
    acc = np.linspace(0, 1, 50)
    rng = np.random.default_rng(0)
    picks = {collect.challenge_word(classes, acc, rng, n_worst=5).word for _ in range(200)}
    assert picks <= {"w0", "w1", "w2", "w3", "w4"} and "w0" in picks
    assert collect.challenge_word(classes, None, rng).word in classes


def test_challenge_weighs_errors_confusions_and_scarcity():
    """Hand-worked: weight = (1 - acc) + min(1, confusion shares) + 1 / (1 + collected)."""
    classes = ["cat", "dog", "sun", "cup"]
    acc = np.array([0.9, 0.5, np.nan, 0.95])
    pairs = [{"true": "cat", "pred": "dog", "share": 0.3}, {"true": "dog", "pred": "cat", "share": 0.2},
             {"true": "cup", "pred": "mug?", "share": 0.9}]
    w = collect.challenge_weights(classes, acc, pairs, {"cat": 3, "sun": 1, "cup": 0})
    np.testing.assert_allclose(w, [0.1 + 0.5 + 0.25, 0.5 + 0.5 + 1.0, 0.5 + 0 + 0.5, 0.05 + 0.9 + 1.0])
    assert np.argmax(w) == 1  # the confused, never drawn dog; the cup (right 95%, confused 90%) next
    pick = collect.challenge_word(classes, acc, np.random.default_rng(0), n_worst=1, pairs=pairs,
                                  collected={"cat": 3, "sun": 1})
    assert pick.word == "dog"
    assert pick.why == "the model gets it right 50% of the time; cat is mistaken for dog (30%); 0 collected so far"
    many = collect.challenge_weights(classes, acc, pairs, {"dog": 1000})
    assert np.argmax(many) == 3  # enough dogs collected: the cup instead


def test_challenge_words_exist(loaded):
    word = collect.challenge_word(loaded.classes, loaded.per_class_acc, np.random.default_rng(0)).word
    assert word in loaded.classes and word in WORDS
