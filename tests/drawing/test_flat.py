"""Drawings: offsets, take, single drawings, pack / concat, and the checks render_batch relies on."""

import numpy as np
import pytest

from doodle.drawing.batch import batch_from_drawings, concat_batches
from doodle.drawing.flat import Drawings, ranges
from doodle.drawing.strokes import Drawing


def three() -> Drawings:
    """Hand-made: drawing 0 has strokes of 2 and 1 points (untimed), drawing 1 is empty, drawing 2 one timed
    stroke of 3 points."""
    xy = np.array([[0, 0], [10, 10], [20, 0], [1, 1], [2, 2], [3, 3]], np.uint8)
    t = np.array([-1, -1, -1, 0, 40, 90], np.int32)
    return Drawings(xy, t, np.array([2, 1, 3], np.int32), np.array([2, 0, 1], np.int32))


def test_offsets_and_points_per_drawing_by_hand():
    d = three()
    st_off, pt_off = d.offsets()
    assert st_off.tolist() == [0, 2, 2, 3] and pt_off.tolist() == [0, 3, 3, 6]
    assert d.offsets() is d.offsets()  # cached
    assert d.points_per_drawing().tolist() == [3, 0, 3] and len(d) == 3


def test_take_any_order_with_repeats():
    d = three()
    got = d.take(np.array([2, 0, 2, 1]))
    got.check()
    assert got.n_strokes.tolist() == [1, 2, 1, 0] and got.stroke_len.tolist() == [3, 2, 1, 3]
    assert got.xy[:, 0].tolist() == [1, 2, 3, 0, 10, 20, 1, 2, 3]
    assert got.t.tolist() == [0, 40, 90, -1, -1, -1, 0, 40, 90]
    assert len(d.take(np.zeros(0, np.int64))) == 0


def test_drawing_is_one_row_with_times_only_when_timed():
    d = three()
    first, empty, timed = d.drawing(0), d.drawing(1), d.drawing(2)
    assert first.xy.dtype == np.float32 and first.ends.tolist() == [2, 3] and first.t is None
    assert empty.n_points == 0 and empty.n_strokes == 0
    assert timed.t.tolist() == [0, 40, 90] and timed.xy[:, 1].tolist() == [1, 2, 3]


def test_pack_rounds_to_the_store_form_and_round_trips():
    singles = [Drawing(np.array([[0.4, 254.6], [300, -3]], np.float32), np.array([1, 2])),
               Drawing(np.array([[5, 6]], np.float32), np.array([1]), np.array([12.0]))]
    d = Drawings.pack(singles)
    assert d.xy.dtype == np.uint8 and d.xy.tolist() == [[0, 255], [255, 0], [5, 6]]
    assert d.t.tolist() == [-1, -1, 12] and d.stroke_len.tolist() == [1, 1, 1] and d.n_strokes.tolist() == [2, 1]
    assert d.drawing(1).t.tolist() == [12.0]
    assert len(Drawings.pack([])) == 0 and Drawings.pack([]).xy.shape == (0, 2)


def test_concat_then_take_is_the_original():
    d = three()
    both = Drawings.concat([d, d.take(np.array([1, 0]))])
    assert len(both) == 5
    back = both.take(np.array([0, 1, 2]))
    assert all(np.array_equal(a, b) for a, b in zip((back.xy, back.t, back.stroke_len, back.n_strokes),
                                                      (d.xy, d.t, d.stroke_len, d.n_strokes), strict=True))


def test_batch_take_keeps_metadata_aligned():
    singles = [Drawing(np.full((k + 1, 2), k, np.float32), np.array([k + 1])) for k in range(4)]
    rows = [{"key_id": 10 + k, "line": k + 1, "word": f"w{k}"} for k in range(4)]
    b = concat_batches([batch_from_drawings(rows[:2], singles[:2]), batch_from_drawings(rows[2:], singles[2:])])
    got = b.take(np.array([3, 1]))
    assert got.key_id.tolist() == [13, 11] and got.word == ["w3", "w1"] and got.line.tolist() == [4, 2]
    assert got.drawing(0).xy.tolist() == [[3, 3]] * 4 and got.drawing(1).n_points == 2
    assert b.select(np.array([False, True, False, False])).word == ["w1"]


@pytest.mark.parametrize("bad, match", [
    (Drawings(np.zeros((3, 2)), np.full(3, -1), np.array([2]), np.array([1])), "inconsistent"),
    (Drawings(np.zeros((2, 2)), np.full(2, -1), np.array([2]), np.array([2])), "inconsistent"),
    (Drawings(np.full((1, 2), np.inf), np.full(1, -1), np.array([1]), np.array([1])), "finite"),
])
def test_check_names_what_is_wrong(bad, match):
    with pytest.raises(ValueError, match=match):
        bad.check()


def test_ranges():
    assert ranges(np.array([3, 0, 7]), np.array([5, 0, 10])).tolist() == [3, 4, 7, 8, 9]
    assert ranges(np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == []
