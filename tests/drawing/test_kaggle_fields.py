"""fastparse: every row the compiled parser accepts equals the careful parser's drawing; the rest it defers."""

import csv

import numpy as np
import pytest

from doodle.drawing.flat import Drawings
from doodle.drawing.kaggle_fields import join_fields, parse_kaggle_fields
from doodle.drawing.strokes import DEFAULT_LIMITS, DrawingError, Limits, parse_kaggle_drawing


def check_agrees(fields: list, limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, Drawings]:
    """The compiled parser's accepted rows equal the careful parser's, in order; returns (ok, drawings)."""
    ok, res = parse_kaggle_fields(fields, limits)
    assert ok.shape == (len(fields),) and len(res) == ok.sum() and res.xy.dtype == np.uint8
    res.check()
    assert (res.t == -1).all()
    for i, field in enumerate(f for f, good in zip(fields, ok, strict=True) if good):
        d, fast = parse_kaggle_drawing(field, limits), res.drawing(i)
        assert d.xy.tolist() == fast.xy.tolist() and d.ends.tolist() == fast.ends.tolist(), field
    return ok, res


def test_every_sample_row_is_parsed_fast_and_equals_the_careful_parser(sample_dir):
    fields = []
    for path in sorted((sample_dir / "train_simplified").glob("*.csv")):
        with open(path, newline="") as f:
            fields += [row["drawing"] for row in csv.DictReader(f)]
    with open(sample_dir / "test_simplified.csv", newline="") as f:
        fields += [row["drawing"] for row in csv.DictReader(f)]
    assert len(fields) > 2900
    ok, _ = check_agrees(fields)
    assert ok.all()


ACCEPTED = [
    "[[[0], [0]]]",
    "[[[255, 0], [0, 255]]]",
    "[[[1,2],[3,4]],[[5],[6]]]",
    " \t[ [ [ 1 , 2 ] ,\n[ 3 , 4 ] ] ]\r\n ",  # JSON whitespace anywhere
    "[[[0, 0, 0], [0, 0, 0]]]",
    "[[[10, 99, 100], [0, 9, 200]], [[7], [7]], [[0, 255], [255, 0]]]",
]

DEFERRED = {  # field -> what the careful parser then says (None: it accepts)
    "": "bad_json",
    "[]": "empty_drawing",
    "[[[], []]]": "empty_drawing",
    "[[[], []], [[1], [2]]]": None,            # an empty stroke is dropped by the careful parser
    "[[[256], [0]]]": "out_of_range",
    "[[[1000], [0]]]": "out_of_range",
    "[[[0255], [0]]]": "bad_json",            # leading zeros are not JSON
    "[[[01], [0]]]": "bad_json",
    "[[[-1], [0]]]": "out_of_range",
    "[[[-0], [0]]]": None,
    "[[[1.0], [0]]]": None,                   # an integral float is still an integer coordinate
    "[[[1e2], [0]]]": None,
    "[[[1.5], [0]]]": "bad_number",
    "[[[1, 2], [3]]]": "length_mismatch",
    "[[[1], [2], [3]]]": "bad_structure",
    "[[[1]]]": "bad_structure",
    "[[1, 2]]": "bad_structure",
    "[[[1], [2]]] x": "bad_json",
    "[[[1], [2]]]]": "bad_json",
    "[[[1,], [2]]]": "bad_json",
    "[[[1], [2]],]": "bad_json",
    "[[[1] [2]]]": "bad_json",
    "[[[1], [2]] [[1], [2]]]": "bad_json",
    "[[[1], [\uff12]]]": "bad_json",          # a full-width digit: not ASCII, not JSON
    '[[["1"], [2]]]': "bad_number",
    "[[[null], [2]]]": "bad_number",
    "[[[true], [2]]]": "bad_number",
    "{}": "bad_structure",
    "[[[1], [2]]": "bad_json",
    "[[[1], [2": "bad_json",
}


def test_plain_fields_are_accepted():
    assert check_agrees(ACCEPTED)[0].all()


@pytest.mark.parametrize("field, why", DEFERRED.items())
def test_anything_else_is_left_to_the_careful_parser(field, why):
    ok, res = check_agrees([field])
    assert not ok[0] and len(res.xy) == 0 and len(res) == 0
    if why is None:
        parse_kaggle_drawing(field)
    else:
        with pytest.raises(DrawingError) as e:
            parse_kaggle_drawing(field)
        assert e.value.reason == why


def test_mixed_rows_keep_alignment():
    fields = [ACCEPTED[i % len(ACCEPTED)] if i % 3 else list(DEFERRED)[i % len(DEFERRED)] for i in range(300)]
    ok, res = check_agrees(fields)
    assert ok.sum() == 200 and len(res) == 200


def test_limits_are_the_careful_parsers_limits():
    lim = Limits(max_strokes=2, max_points=4)
    at_cap = ["[[[1, 2, 3], [1, 2, 3]], [[4], [4]]]", "[[[1, 2], [1, 2]], [[3, 4], [3, 4]]]"]
    over = ["[[[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]]", "[[[1], [1]], [[2], [2]], [[3], [3]]]"]
    ok, _ = check_agrees(at_cap + over, lim)
    assert ok.tolist() == [True, True, False, False]
    for field, why in zip(over, ["too_many_points", "too_many_strokes"], strict=True):
        with pytest.raises(DrawingError, match=why):
            parse_kaggle_drawing(field, lim)


def test_densest_fields_fit_the_preallocated_buffers():
    one_point = "[[[0],[0]]]"
    many_strokes = "[" + ",".join(["[[0],[0]]"] * 500) + "]"
    many_points = "[[[" + ",".join(["0"] * 5000) + "],[" + ",".join(["0"] * 5000) + "]]]"
    ok, res = check_agrees([one_point] * 1000 + [many_strokes, many_points])
    assert ok.all()
    assert res.n_strokes[-2:].tolist() == [500, 1] and len(res.xy) == 1000 + 500 + 5000


def test_no_fields():
    ok, res = parse_kaggle_fields([])
    assert ok.shape == (0,) and res.xy.shape == (0, 2) and len(res) == 0


def test_join_fields_blanks_non_ascii_rows_only():
    buf, offsets = join_fields(["[[[1], [2]]]", "[[[é], [2]]]", "[[[3], [4]]]"])
    assert offsets.tolist() == [0, 12, 12, 24]
    assert buf.tobytes() == b"[[[1], [2]]][[[3], [4]]]"
