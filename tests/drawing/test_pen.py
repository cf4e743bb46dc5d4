"""The pen component's messages: Google's raw format with a send number, checked like any browser input."""

from __future__ import annotations

import numpy as np
import pytest

from doodle.drawing.pen import MAX_MS, parse_pen, pen_message
from doodle.drawing.strokes import DEFAULT_LIMITS, DrawingError, Limits

TWO = [[[10, 20, 30.5], [5, 6, 7], [0, 16, 33]], [[40, 41], [50, 52], [400, 416]]]


def reason(message, limits: Limits = DEFAULT_LIMITS) -> str:
    with pytest.raises(DrawingError) as e:
        parse_pen(message, limits)
    return e.value.reason


def test_a_message_is_a_timed_raw_drawing():
    m = parse_pen(pen_message(TWO, seq=7, final=False))
    assert (m.seq, m.final, m.drawing.n_strokes, m.drawing.n_points) == (7, False, 2, 5)
    np.testing.assert_array_equal(m.drawing.t, [0, 16, 33, 400, 416])
    np.testing.assert_array_equal(m.drawing.ends, [3, 5])
    assert m.drawing.xy[2, 0] == pytest.approx(30.5)


def test_empty_canvas_is_no_drawing():
    assert parse_pen(pen_message([])).drawing is None
    assert parse_pen(pen_message([[[], [], []]], seq=3)).drawing is None


def test_equal_times_are_fine_backwards_ones_are_not():
    assert parse_pen(pen_message([[[1, 2, 3], [1, 2, 3], [5, 5, 9]]])).drawing.n_points == 3
    assert reason(pen_message([[[1, 2, 3], [1, 2, 3], [5, 9, 8]]])) == "time_backwards"
    # the second stroke starts before the first one ended
    assert reason(pen_message([[[1, 2], [1, 2], [0, 100]], [[5, 6], [5, 6], [50, 120]]])) == "time_backwards"
    assert reason(pen_message([[[1, 2], [1, 2], [-5, 3]]])) == "bad_time"
    assert reason(pen_message([[[1, 2], [1, 2], [0, MAX_MS + 1]]])) == "bad_time"


@pytest.mark.parametrize("message, why", [
    (None, "bad_message"), ("text", "bad_message"), ([], "bad_message"),
    ({"v": 1, "seq": 1, "final": True}, "bad_structure"),
    ({"v": 2, "seq": 1, "final": True, "strokes": []}, "bad_message"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [], "extra": 1}, "bad_message"),
    ({"v": 1, "seq": -1, "final": True, "strokes": []}, "bad_message"),
    ({"v": 1, "seq": True, "final": True, "strokes": []}, "bad_message"),
    ({"v": 1, "seq": "1", "final": True, "strokes": []}, "bad_message"),
    ({"v": 1, "seq": 1, "final": "yes", "strokes": []}, "bad_message"),
    ({"v": 1, "seq": 1, "final": True, "strokes": "x"}, "bad_structure"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[[1], [2]]]}, "bad_structure"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[[1], [2], 3]]}, "bad_structure"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[[1, 2], [2], [0, 1]]]}, "length_mismatch"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[["1"], [2], [0]]]}, "bad_number"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[[None], [2], [0]]]}, "bad_number"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[[True], [2], [0]]]}, "bad_number"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[[1e300 * 1e10], [2], [0]]]}, "bad_number"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[[1e6], [2], [0]]]}, "out_of_range"),
    ({"v": 1, "seq": 1, "final": True, "strokes": [[[[1]], [2], [0]]]}, "bad_number"),
])
def test_malformed_messages(message, why):
    assert reason(message) == why


def test_caps_are_checked_before_numbers_are_read():
    limits = Limits(max_strokes=3, max_points=10)
    assert reason(pen_message([[[1], [1], [k]] for k in range(4)]), limits) == "too_many_strokes"
    huge = {"v": 1, "seq": 1, "final": True, "strokes": [[["not a number"] * 11, [], []]]}
    assert reason(huge, limits) == "too_many_points"
