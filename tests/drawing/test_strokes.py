"""strokes.py: the careful parsers, key_ids, limits, and raw -> simplified as Google documents it."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doodle.drawing.canvas import parse_canvas
from doodle.drawing.strokes import (
    Drawing,
    DrawingError,
    Limits,
    from_strokes,
    parse_kaggle_drawing,
    parse_key_id,
    parse_ndjson_line,
    rdp_indices,
    simplify_raw,
)


def reason(fn, *args, **kw) -> str:
    with pytest.raises(DrawingError) as e:
        fn(*args, **kw)
    return e.value.reason


def test_kaggle_drawing_round_trips_to_lists():
    strokes = [[[0, 10, 255], [5, 5, 0]], [[3], [4]]]
    d = parse_kaggle_drawing(json.dumps(strokes))
    assert d.n_strokes == 2 and d.n_points == 4
    assert d.ends.tolist() == [3, 4]
    assert d.t is None
    assert d.to_lists() == strokes
    assert d.xy.dtype == np.float32


def test_kaggle_drawing_accepts_bytes_and_whitespace():
    assert parse_kaggle_drawing(b" [ [ [1 ,2] , [3, 4] ] ] ").to_lists() == [[[1, 2], [3, 4]]]


def test_an_empty_stroke_is_dropped_but_an_empty_drawing_is_rejected():
    assert parse_kaggle_drawing("[[[], []], [[1], [2]]]").to_lists() == [[[1], [2]]]
    assert reason(parse_kaggle_drawing, "[]") == "empty_drawing"
    assert reason(parse_kaggle_drawing, "[[[], []]]") == "empty_drawing"


@pytest.mark.parametrize("text, why", [
    ("", "bad_json"),
    ("[[[1, 2], [3, 4]]", "bad_json"),
    ("{}", "bad_structure"),
    ('"abc"', "bad_structure"),
    ("[[[1, 2]]]", "bad_structure"),
    ("[[[1, 2], [3, 4], [5, 6], [7, 8]]]", "bad_structure"),
    ("[[[1, 2], [3, 4], [0, 9]]]", "bad_structure"),       # three arrays: raw, not Kaggle's simplified
    ("[[[1, 2], [3]]]", "length_mismatch"),
    ("[[[1, [2]], [3, 4]]]", "bad_number"),
    ("[[[1, null], [3, 4]]]", "bad_number"),
    ('[[["1", "2"], [3, 4]]]', "bad_number"),                 # numbers written as strings
    ("[[[true, false], [3, 4]]]", "bad_number"),
    ("[[[NaN, 1], [3, 4]]]", "bad_number"),
    ("[[[Infinity, 1], [3, 4]]]", "bad_number"),
    ("[[[1.5, 1], [3, 4]]]", "bad_number"),                   # simplified coordinates are integers
    ("[[[-1, 1], [3, 4]]]", "out_of_range"),
    ("[[[256, 1], [3, 4]]]", "out_of_range"),
    ("[[[1e300, 1], [3, 4]]]", "out_of_range"),
    ("[[[100000000000000000000000, 1], [3, 4]]]", "out_of_range"),
])
def test_kaggle_drawing_rejections_name_the_reason(text, why):
    assert reason(parse_kaggle_drawing, text) == why


def test_limits_cap_points_strokes_and_size():
    lim = Limits(max_strokes=2, max_points=5, max_chars=200)
    assert parse_kaggle_drawing("[[[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]]", lim).n_points == 5
    assert reason(parse_kaggle_drawing, "[[[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]]]", lim) == "too_many_points"
    assert reason(parse_kaggle_drawing, "[[[1], [1]], [[1], [1]], [[1], [1]]]", lim) == "too_many_strokes"
    assert reason(parse_kaggle_drawing, "[" + " " * 300 + "]", lim) == "too_large"


def test_deep_nesting_is_a_drawing_error_not_a_recursion_error():
    assert reason(parse_kaggle_drawing, "[" * 100_000 + "]" * 100_000) in {"bad_json", "too_large", "bad_structure"}


@pytest.mark.parametrize("value, expected", [("5", 5), (" 42 ", 42), (42, 42), ("9223372036854775807", 2**63 - 1)])
def test_key_id_accepts_non_negative_int64(value, expected):
    assert parse_key_id(value) == expected


@pytest.mark.parametrize("value", ["", "-1", "1.0", 1.5, "12a", "9223372036854775808", "1" * 20, True, None,
                                   "²", "١٢٣", "1_000", -1, 2**63, [1], {"a": 1}])
def test_key_id_rejects_everything_else(value):
    assert reason(parse_key_id, value) == "bad_key_id"


def test_key_id_of_thousands_of_digits_is_rejected_not_a_crash():
    assert reason(parse_key_id, 10**5000) == "bad_key_id"  # str() of it would raise ValueError


SIMPLE_LINE = {"word": "cat", "countrycode": "US", "timestamp": "2017-03-01 12:00:00.0 UTC", "recognized": True,
               "key_id": "123", "drawing": [[[0, 255], [0, 100]]]}


def test_google_simplified_ndjson_line():
    r = parse_ndjson_line(json.dumps(SIMPLE_LINE))
    assert (r.key_id, r.word, r.countrycode, r.recognized, r.raw) == (123, "cat", "US", True, False)
    assert r.drawing.to_lists() == [[[0, 255], [0, 100]]]


def test_google_raw_ndjson_line_is_simplified_with_times():
    raw = {**SIMPLE_LINE, "drawing": [[[10, 20.5, 30], [400, 400, 400], [0, 17, 40]], [[10], [500], [100]]]}
    r = parse_ndjson_line(json.dumps(raw))
    assert r.raw and r.drawing.t is not None
    kept = parse_ndjson_line(json.dumps(raw), simplify=False)
    assert kept.drawing.xy[:, 0].tolist() == [10, 20.5, 30, 10]  # canvas pixels as given


@pytest.mark.parametrize("change, why", [
    ({"drawing": None}, "bad_structure"),
    ({"key_id": "x"}, "bad_key_id"),
    ({"word": 5}, "bad_word"),
    ({"drawing": [[[0, 300], [0, 1]]]}, "out_of_range"),
])
def test_ndjson_rejections(change, why):
    assert reason(parse_ndjson_line, json.dumps({**SIMPLE_LINE, **change})) == why


def test_ndjson_needs_an_object_with_a_drawing():
    assert reason(parse_ndjson_line, "[1, 2]") == "bad_structure"
    assert reason(parse_ndjson_line, json.dumps({"key_id": "1"})) == "missing_field"
    assert reason(parse_ndjson_line, b"\xff\xfe") == "bad_encoding"


def test_ndjson_missing_word_and_odd_metadata():
    line = {k: v for k, v in SIMPLE_LINE.items() if k != "word"} | {"recognized": "yes", "countrycode": None}
    r = parse_ndjson_line(json.dumps(line))
    assert r.word is None and r.recognized is None and r.countrycode == ""


# --- raw -> simplified ------------------------------------------------------------------------------------


def raw(strokes) -> Drawing:
    return from_strokes([[list(map(float, a)) for a in s] for s in strokes])


def test_simplify_hand_worked_line_and_box():
    d = simplify_raw(raw([[[10, 20], [30, 50], [0, 100]]]))  # extent 20 on y: scaled by 255/20
    assert d.to_lists() == [[[0, 128], [0, 255], [0, 100]]]  # rint(127.5) = 128
    box = simplify_raw(raw([[[0, 100, 100, 0, 0], [0, 0, 40, 40, 0], [0, 10, 20, 30, 40]]]))
    assert box.to_lists()[0] == [[0, 255, 255, 0, 0], [0, 0, 102, 102, 0], [0, 10, 20, 30, 40]]


def test_simplify_keeps_a_dot_as_two_points_like_google():
    d = simplify_raw(raw([[[0, 50], [0, 50], [0, 5]], [[25], [60], [9]], [[7, 7, 7], [8, 8, 8], [10, 11, 12]]]))
    strokes = d.to_lists()
    assert [len(s[0]) for s in strokes] == [2, 2, 2]
    assert strokes[1] == [[106, 106], [255, 255], [9, 9]]  # 25 * 255 / 60 = 106.25
    assert strokes[2][2] == [10, 12]


def test_simplify_single_point_drawing_is_at_the_origin():
    d = simplify_raw(raw([[[300], [400], [1000]]]))
    assert d.to_lists() == [[[0, 0], [0, 0], [0, 0]]]


def test_rdp_classic_split_keeps_far_points_only():
    pts = np.array([[0, 0], [5, 0], [10, 0], [10, 5], [10, 10.0]])  # the corner is 7.07 from the chord
    assert rdp_indices(pts, 2.0).tolist() == [0, 2, 4]
    assert rdp_indices(pts, 8.0).tolist() == [0, 4]
    backtrack = np.array([[0, 5], [0, 0], [0, 10.0]])  # distance to the line, not the segment: 0
    assert rdp_indices(backtrack, 2.0).tolist() == [0, 2]
    assert rdp_indices(pts[:2], 2.0).tolist() == [0, 1]
    assert rdp_indices(np.zeros((100_000, 2)), 2.0).tolist() == [0, 99_999]  # iterative: no recursion limit


raw_strokes = st.lists(
    st.integers(1, 30).flatmap(lambda n: st.tuples(
        st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.integers(0, 500), min_size=n, max_size=n))),
    min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(raw_strokes)
def test_simplify_raw_properties(strokes):
    # Times in Google's raw files grow through the drawing; build them that way.
    offset, timed = 0, []
    for xs, ys, dts in strokes:
        ts = np.cumsum(dts) + offset
        offset = int(ts[-1])
        timed.append([xs, ys, ts.tolist()])
    src = from_strokes(timed)
    d = simplify_raw(src)
    assert d.n_strokes == src.n_strokes  # no stroke is lost, a dot included
    assert (np.diff(np.concatenate([[0], d.ends])) >= 2).all()  # and each keeps both ends
    assert np.array_equal(d.xy, np.rint(d.xy)) and d.xy.min() >= 0 and d.xy.max() <= 255
    lo, hi = src.xy.min(axis=0), src.xy.max(axis=0)
    axis = int(np.argmax(hi - lo))
    extent = float(d.xy[:, axis].max() - d.xy[:, axis].min())
    starts, lasts = np.concatenate([[0], src.ends[:-1]]), src.ends - 1
    ends_xy = src.xy[np.concatenate([starts, lasts]), axis]
    if hi[axis] - lo[axis] == 0:
        assert extent == 0
    elif lo[axis] in ends_xy and hi[axis] in ends_xy:
        assert extent == 255  # stroke ends survive resampling and RDP: the scale to 255 shows exactly
    else:
        assert extent <= 255  # RDP measures distance to the chord's line: a back-tracking extreme can go
    assert d.t is not None and len(d.t) == d.n_points
    assert d.t[0] == 0 and (np.diff(d.t) >= 0).all()
    assert d.t.max() <= src.t.max() - src.t.min()
    out_starts = np.concatenate([[0], d.ends[:-1]])
    assert (d.t[out_starts] == np.rint(src.t[starts] - src.t.min())).all()
    assert (d.t[d.ends - 1] == np.rint(src.t[lasts] - src.t.min())).all()


def test_simplify_raw_on_the_sample_raw_files(sample_dir):
    n = 0
    for path in sorted((sample_dir / "raw").glob("*.ndjson"))[:6]:
        for line in path.read_text().splitlines():
            obj = json.loads(line)
            src = from_strokes(obj["drawing"])
            d = parse_ndjson_line(line).drawing
            assert np.array_equal(d.xy, np.rint(d.xy)) and 0 <= d.xy.min() and d.xy.max() <= 255
            assert 250 <= (d.xy.max(axis=0) - d.xy.min(axis=0)).max() <= 255
            assert (np.diff(d.t) >= 0).all() and d.t[0] == 0
            assert d.n_strokes == src.n_strokes
            n += 1
    assert n >= 40


# --- the drawing page's canvas ------------------------------------------------------------------------------


def test_canvas_paths_become_timed_strokes():
    data = {"objects": [
        {"type": "path", "path": [["M", 10, 10], ["Q", 20, 20, 30, 10], ["L", 40, 40]]},
        {"type": "rect"},
        {"type": "path", "path": [["M", 5, 5], ["L", 6, 6]]},
    ]}
    d = parse_canvas(json.dumps(data), times=[0, 500])
    assert d.n_strokes == 2 and d.n_points == 1 + 8 + 1 + 2
    assert d.t[0] == 0 and d.t[10] == 500 and (np.diff(d.t) >= 0).all()
    assert parse_canvas(data).t[10] == 1000  # no times: one second per stroke


@pytest.mark.parametrize("data, why", [
    ([], "bad_structure"),
    ({"objects": 3}, "bad_structure"),
    ({"objects": []}, "empty_drawing"),
    ({"objects": [{"type": "path", "path": [["Z"]]}]}, "bad_structure"),
    ({"objects": [{"type": "path", "path": [["L", "a", 1]]}]}, "bad_number"),
    ({"objects": [{"type": "path", "path": [["M", 1e308, 1], ["L", -1e308, 2]]}]}, "out_of_range"),
    ({"objects": [{"type": "path", "path": [["M", 10**400, 1]]}]}, "out_of_range"),
    ({"objects": [{"type": "path", "path": [["M", True, 1]]}]}, "bad_number"),
    ({"objects": [{"type": "path", "path": True}]}, "bad_structure"),
    ("{not json", "bad_json"),
])
def test_canvas_rejections(data, why):
    assert reason(parse_canvas, data) == why


@pytest.mark.parametrize("times, why", [("abc", "bad_structure"), (["a", 1], "bad_number"), ([None], "bad_number"),
                                        ([float("nan"), 1.0], "bad_number")])
def test_canvas_times_from_the_page_are_checked(times, why):
    data = {"objects": [{"type": "path", "path": [["M", 1, 1], ["L", 5, 5]]}]}
    assert reason(parse_canvas, data, times=times) == why


def test_canvas_points_are_capped_while_reading():
    path = [["M", 0, 0]] + [["Q", 1, 1, 2, 2]] * 10_000
    assert reason(parse_canvas, {"objects": [{"type": "path", "path": path}]}, Limits(max_points=100)) == \
        "too_many_points"
