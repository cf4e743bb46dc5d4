"""fastparse: every row the compiled parser accepts equals the careful parser's drawing; the rest it defers."""

import csv

import numpy as np
import pytest

from doodle.drawing.kaggle_fields import FastResult, join_fields, parse_kaggle_fields
from doodle.drawing.strokes import DEFAULT_LIMITS, DrawingError, Limits, parse_kaggle_drawing


def fast_drawings(res: FastResult) -> list[tuple[list, list]]:
    """Per accepted row: (points as [[x, y], ...], stroke ends)."""
    out, p, s = [], 0, 0
    for k in res.n_strokes:
        lens = res.stroke_len[s : s + k]
        n = int(lens.sum())
        out.append((res.xy[p : p + n].tolist(), np.cumsum(lens).tolist()))
        p, s = p + n, s + k
    assert p == len(res.xy) and s == len(res.stroke_len)
    return out


def check_agrees(fields: list, limits: Limits = DEFAULT_LIMITS) -> FastResult:
    """The compiled parser's accepted rows equal the careful parser's, in order; returns the fast result."""
    res = parse_kaggle_fields(fields, limits)
    assert res.ok.shape == (len(fields),) and res.xy.dtype == np.uint8
    for field, (xy, ends) in zip([f for f, ok in zip(fields, res.ok, strict=True) if ok], fast_drawings(res),
                                 strict=True):
        d = parse_kaggle_drawing(field, limits)
        assert d.xy.tolist() == xy and d.ends.tolist() == ends, field
    return res


def test_every_sample_row_is_parsed_fast_and_equals_the_careful_parser(sample_dir):
    fields = []
    for path in sorted((sample_dir / "train_simplified").glob("*.csv")):
        with open(path, newline="") as f:
            fields += [row["drawing"] for row in csv.DictReader(f)]
    with open(sample_dir / "test_simplified.csv", newline="") as f:
        fields += [row["drawing"] for row in csv.DictReader(f)]
    assert len(fields) > 2900
    res = check_agrees(fields)
    assert res.ok.all()


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
    assert check_agrees(ACCEPTED).ok.all()


@pytest.mark.parametrize("field, why", DEFERRED.items())
def test_anything_else_is_left_to_the_careful_parser(field, why):
    res = check_agrees([field])
    assert not res.ok[0] and len(res.xy) == 0 and len(res.n_strokes) == 0
    if why is None:
        parse_kaggle_drawing(field)
    else:
        with pytest.raises(DrawingError) as e:
            parse_kaggle_drawing(field)
        assert e.value.reason == why


def test_mixed_rows_keep_alignment():
    fields = [ACCEPTED[i % len(ACCEPTED)] if i % 3 else list(DEFERRED)[i % len(DEFERRED)] for i in range(300)]
    res = check_agrees(fields)
    assert res.ok.sum() == 200 and len(res.n_strokes) == 200


def test_limits_are_the_careful_parsers_limits():
    lim = Limits(max_strokes=2, max_points=4)
    at_cap = ["[[[1, 2, 3], [1, 2, 3]], [[4], [4]]]", "[[[1, 2], [1, 2]], [[3, 4], [3, 4]]]"]
    over = ["[[[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]]", "[[[1], [1]], [[2], [2]], [[3], [3]]]"]
    res = check_agrees(at_cap + over, lim)
    assert res.ok.tolist() == [True, True, False, False]
    for field, why in zip(over, ["too_many_points", "too_many_strokes"], strict=True):
        with pytest.raises(DrawingError, match=why):
            parse_kaggle_drawing(field, lim)


def test_densest_fields_fit_the_preallocated_buffers():
    one_point = "[[[0],[0]]]"
    many_strokes = "[" + ",".join(["[[0],[0]]"] * 500) + "]"
    many_points = "[[[" + ",".join(["0"] * 5000) + "],[" + ",".join(["0"] * 5000) + "]]]"
    res = check_agrees([one_point] * 1000 + [many_strokes, many_points])
    assert res.ok.all()
    assert res.n_strokes[-2:].tolist() == [500, 1] and len(res.xy) == 1000 + 500 + 5000


def test_no_fields():
    res = parse_kaggle_fields([])
    assert res.ok.shape == (0,) and res.xy.shape == (0, 2)


def test_join_fields_blanks_non_ascii_rows_only():
    buf, offsets = join_fields(["[[[1], [2]]]", "[[[é], [2]]]", "[[[3], [4]]]"])
    assert offsets.tolist() == [0, 12, 12, 24]
    assert buf.tobytes() == b"[[[1], [2]]][[[3], [4]]]"
