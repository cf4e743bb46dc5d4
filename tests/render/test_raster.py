"""The rasteriser: shapes, channel meanings, pixel positions, batch == single, bad input."""

import csv
import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from doodle.drawing.flat import Drawings
from doodle.drawing.strokes import from_strokes
from doodle.render.augment import flip_x
from doodle.render.flat_input import flatten_strokes
from doodle.render.raster import ENCODINGS, RasterSpec, rasterize, render_batch, render_drawing

SAMPLE = Path(__file__).resolve().parents[2] / "input" / "sample" / "train_simplified"
FLOOR = RasterSpec().floor
TWO_STROKES = [[[10, 200], [20, 20]], [[30, 30, 40], [60, 200, 220]]]


@pytest.fixture(scope="module")
def sample_drawings():
    """A few real Kaggle drawings (two files of the bundled sample)."""
    out = []
    for path in sorted(SAMPLE.glob("*.csv"))[:2]:
        with open(path, newline="") as f:
            out += [json.loads(r["drawing"]) for r in islice(csv.DictReader(f), 12)]
    return out


def drawings_of(drawings) -> Drawings:
    xy, slen, nst = [], [], []
    for d in drawings:
        x, _, lens = flatten_strokes(d)
        xy.append(x)
        slen.append(lens)
        nst.append(len(lens))
    xy = np.concatenate(xy)
    return Drawings(xy, np.full(len(xy), -1, np.int32), np.concatenate(slen), np.array(nst, np.int32))


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("size", [32, 64])
def test_shape_dtype_and_ink_for_every_encoding(encoding, size):
    img = rasterize(TWO_STROKES, size, encoding)
    assert img.shape == (size, size, len(ENCODINGS[encoding])) and img.dtype == np.uint8
    ink = img.max(axis=2) > 0
    assert ink.any() and (img[ink] > 0).all(), "every channel is non-zero wherever there is ink"
    assert img[~ink].max(initial=0) == 0


def test_order3_channel_values():
    img = rasterize(TWO_STROKES, 256, "order3", line_width=1, margin=0).astype(int)
    stroke_order, point_order, ink = img[..., 0], img[..., 1], img[..., 2]
    assert set(np.unique(ink)) == {0, 255}
    span = 255 - FLOOR
    assert stroke_order[20, 10] == 255 and stroke_order[220, 40] == int(FLOOR + span * 0.5 + 0.5)
    assert point_order[20, 10] == FLOOR, "the first point sits at the floor, not at 0"
    assert point_order[220, 40] == 255, "the last point is 255"


def test_floor_is_the_faintest_ink_and_configurable():
    p = drawings_of([TWO_STROKES])
    for floor in (0, 55, 100):
        po = render_batch(p, RasterSpec(size=64, floor=floor))[0, ..., 1]
        assert po[po > 0].min() in (floor, floor + 1) or floor == 0
        assert po.max() == 255


def test_grey_is_ink_only():
    img = rasterize(TWO_STROKES, 64, "grey")
    assert set(np.unique(img)) == {0, 255}


def test_rendering_twice_gives_the_same_pixels(sample_drawings):
    for d in sample_drawings:
        assert np.array_equal(rasterize(d, 64, "order3"), rasterize(d, 64, "order3"))


def test_batch_render_equals_per_drawing_render(sample_drawings):
    spec = RasterSpec(size=48, encoding="order3", line_width=2)
    batch = render_batch(drawings_of(sample_drawings), spec)
    for img, d in zip(batch, sample_drawings, strict=True):
        assert np.array_equal(img, rasterize(d, 48, "order3", line_width=2))
        assert np.array_equal(img, render_drawing(from_strokes(d), spec))


def test_flipped_twice_equals_original_and_flip_mirrors(sample_drawings):
    p = drawings_of(sample_drawings)
    spec = RasterSpec(size=64)
    assert np.array_equal(render_batch(flip_x(flip_x(p)), spec), render_batch(p, spec))
    # at 256 px, margin 0 and width 1 a box unit is a pixel: the flip mirrors the image, up to rounding
    # ties (x + 0.5 exactly on a pixel edge rounds right on both sides) on sloped segments
    exact = RasterSpec(size=256, line_width=1, margin=0)
    flipped, mirrored = render_batch(flip_x(p), exact), render_batch(p, exact)[:, :, ::-1]
    ink = flipped.max(axis=3) > 0
    assert (ink == (mirrored.max(axis=3) > 0)).sum() > 0.99 * ink.size
    assert (flipped[ink] == mirrored[ink]).all(axis=1).mean() > 0.9


def test_empty_drawing_and_empty_strokes():
    for empty in ([], [[[], []]], [[[], [], []]]):
        img = rasterize(empty, 32)
        assert img.shape == (32, 32, 3) and img.max() == 0
    with_empty = [[[], []], TWO_STROKES[0], [[], []], TWO_STROKES[1]]
    assert np.array_equal(rasterize(with_empty, 32), rasterize(TWO_STROKES, 32))
    p = Drawings(np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(3, np.int32))
    assert render_batch(p, RasterSpec(size=16)).shape == (3, 16, 16, 3)


@pytest.mark.parametrize("lw", [1, 2, 3])
def test_single_point_stroke_is_a_line_width_square(lw):
    img = rasterize([[[100], [100]]], 256, "grey", line_width=lw, margin=0)[..., 0]
    ys, xs = np.nonzero(img)
    assert len(ys) == lw * lw
    assert ys.max() - ys.min() == lw - 1 and xs.max() - xs.min() == lw - 1
    assert 100 in ys and 100 in xs


def test_coordinates_0_and_255_reach_the_image_border():
    img = rasterize([[[0, 255], [0, 255]], [[0], [255]], [[255], [0]]], 32, "grey", line_width=1, margin=0)
    corners = img[[0, 0, 31, 31], [0, 31, 0, 31], 0]
    assert (corners == 255).all()
    img = rasterize([[[0, 255], [0, 255]]], 32, "grey", line_width=1, margin=2)
    assert img[:2].max() == 0 and img[-2:].max() == 0 and img[2, 2, 0] == 255 and img[29, 29, 0] == 255


def test_pixel_position_rounds_half_up():
    # size 256, margin 0: one box unit is one pixel; a point goes to floor(x + 0.5)
    img = rasterize([[[10.49, 20.5, 30.51], [5, 5, 5]]], 256, "grey", line_width=1, margin=0)[..., 0]
    row = np.flatnonzero(img[5])
    assert row.min() == 10 and row.max() == 31


@pytest.mark.parametrize("lw", [1, 2, 4])
def test_line_width_is_the_thickness_of_a_horizontal_line(lw):
    img = rasterize([[[50, 200], [128, 128]]], 256, "grey", line_width=lw, margin=0)[..., 0]
    assert (img.max(axis=1) > 0).sum() == lw
    assert (img[:, 100] > 0).sum() == lw


def test_points_outside_the_box_are_clipped_not_wrapped():
    img = rasterize([[[-500, 800], [128, 128]]], 32, "grey", line_width=1)
    assert img[:, :, 0].sum(axis=1).argmax() == 16 and img[16].min() == 255
    assert (img.max(axis=(1, 2)) > 0).sum() == 1


def test_antialias_softens_edges_and_keeps_the_shape():
    sharp = rasterize([[[0, 255], [0, 200]]], 32, "grey", antialias=False)
    soft = rasterize([[[0, 255], [0, 200]]], 32, "grey", antialias=True)
    assert soft.shape == sharp.shape == (32, 32, 1)
    assert set(np.unique(sharp)) == {0, 255}
    assert ((soft > 0) & (soft < 255)).any()


def raw_drawing():
    """Raw canvas pixels (not the 0..255 box) and times in ms: a slow stroke, a pause, a quick stroke."""
    xs = list(np.linspace(100.0, 900.0, 40))
    return [[xs, [300.0] * 40, list(np.linspace(1000.0, 3000.0, 40))],
            [[500.0, 520.0], [400.0, 500.0], [6000.0, 6050.0]]]


def test_time_channel_is_monotonic_along_a_timed_stroke():
    img = rasterize(raw_drawing(), 128, "time3", line_width=1, margin=0, fit=True)
    along = img[0, :, 1].astype(int)  # the first stroke is the drawing's top edge
    vals = along[along > 0]
    assert len(vals) > 100 and (np.diff(vals) >= 0).all() and vals[-1] > vals[0]
    # real time: the first stroke ends at 2000 of 5050 ms, so well below the point-order value there
    assert vals[-1] < 255 * 0.6


def test_rt3_speed_and_pause_channels():
    img = rasterize(raw_drawing(), 128, "rt3", line_width=1, margin=0, fit=True).astype(int)
    slow = img[0, 10]  # the first stroke is the top edge, the second runs down rows 16..32
    quick = img[20, 60:70][img[20, 60:70, 2] > 0][0]
    assert quick[1] > slow[1], "the quick stroke is brighter in the speed channel"
    assert slow[2] == FLOOR and quick[2] > 200, "no pause before the first stroke, 3 s before the second"


def test_fit_maps_raw_canvas_pixels_into_the_box():
    xy, t, lens = flatten_strokes(raw_drawing(), fit=True)
    assert xy[:, 0].min() == 0 and xy[:, 0].max() == 255 and xy[:, 1].min() == 0
    assert xy[-1, 1] == np.float32(200 * 255 / 800), "one scale for both axes: the aspect is kept"
    assert t[0] == 0 and t[-1] == 5050 and list(lens) == [40, 2]


def test_time_channels_fall_back_for_untimed_drawings():
    order = rasterize(TWO_STROKES, 64, "order3")
    assert np.array_equal(rasterize(TWO_STROKES, 64, "time3"), order), "time falls back to point order"
    # rt3 = (time, speed, pause) -> (point_order, ink, stroke_order) without times
    assert np.array_equal(rasterize(TWO_STROKES, 64, "rt3"), order[..., [1, 2, 0]])
    timed = rasterize(raw_drawing(), 64, "rt3", fit=True)
    untimed = rasterize([s[:2] for s in raw_drawing()], 64, "rt3", fit=True)
    assert not np.array_equal(timed, untimed)


def test_flatten_strokes_times_are_relative_and_optional():
    xy, t, lens = flatten_strokes([[[1, 2], [3, 4], [500, 510]], [[5], [6], [530]]])
    assert xy.dtype == np.float32 and xy.tolist() == [[1, 3], [2, 4], [5, 6]]
    assert t.tolist() == [0, 10, 30] and lens.tolist() == [2, 1]
    assert flatten_strokes([[[1, 2], [3, 4]]])[1] is None


@pytest.mark.parametrize("bad, match", [
    ([[[1, 2], [3]]], "different lengths"),
    ([[[1, 2]]], "2 or 3 arrays"),
    ([[[1, 2], [3, 4], [5]]], "different lengths"),
    ([[[1, 2], ["a", "b"]]], "numbers"),
    ([[[1, 10**400], [3, 4]]], "numbers"),
    ([{"x": [1], "y": [2], "t": [0]}], "numbers"),
    ([[[1, 2], [3, 4], [0, "5"]]], "numbers"),
    (7, "list of strokes"),
    ([[[1, float("nan")], [3, 4]]], "NaN or infinite"),
    ([[[1, 2], [3, 4], [0, float("inf")]]], "NaN or infinite"),
])
def test_bad_strokes_raise_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        rasterize(bad)


def test_inconsistent_batch_arrays_raise_value_error():
    xy, untimed = np.zeros((5, 2), np.float32), np.full(5, -1, np.int32)
    for t, slen, nst in [(untimed, [2, 2], [2]), (np.zeros(4), [5], [1]), (untimed, [5], [2])]:
        with pytest.raises(ValueError, match="inconsistent drawing arrays"):
            render_batch(Drawings(xy, t, np.array(slen), np.array(nst)), RasterSpec())
    with pytest.raises(ValueError, match="finite"):
        render_batch(Drawings(np.full((1, 2), np.nan), untimed[:1], np.array([1]), np.array([1])), RasterSpec())


def test_bad_spec_values_are_named():
    with pytest.raises(ValueError, match=r"encoding 'rgb' unknown; choose one of \['grey', 'order3'"):
        RasterSpec(encoding="rgb")
    with pytest.raises(ValueError, match="unknown"):
        rasterize(TWO_STROKES, 32, "colour")
    with pytest.raises(ValueError, match="size 4"):
        RasterSpec(size=4)
    with pytest.raises(ValueError, match="floor"):
        RasterSpec(floor=255)


def reference_render(strokes, size, line_width, margin=1, floor=FLOOR):
    """The kernel's documented algorithm for order3 in plain Python (slow): each segment walked at 1-pixel
    steps, a `line_width` square stamped per step, channel values interpolated along the segment."""
    img = np.zeros((size, size, 3), np.uint8)
    scale, span = (size - 1 - 2 * margin) / 255.0, 255.0 - floor
    ns, npts = len(strokes), sum(len(s[0]) for s in strokes)
    gi = 0
    for k, (xs, ys) in enumerate(strokes):
        x, y, L = np.float32(xs), np.float32(ys), len(xs)
        for j in range(max(L - 1, 1)):
            e = min(j + 1, L - 1)
            xa, ya = margin + x[j] * scale, margin + y[j] * scale
            dx, dy = margin + x[e] * scale - xa, margin + y[e] * scale - ya
            f0 = np.array([1 - k / ns, (gi + j) / max(npts - 1, 1), 1.0])
            f1 = np.array([1 - k / ns, (gi + e) / max(npts - 1, 1), 1.0])
            v0, dv = floor + span * f0 + 0.5, span * (f1 - f0)
            n = int(max(abs(dx), abs(dy))) + 1
            for i in range(n + 1 if j == max(L - 1, 1) - 1 else n):
                u = i * (1.0 / n)
                px = int(np.floor(xa + dx * u + 0.5)) - (line_width - 1) // 2
                py = int(np.floor(ya + dy * u + 0.5)) - (line_width - 1) // 2
                img[max(py, 0):max(py + line_width, 0), max(px, 0):max(px + line_width, 0)] = (v0 + dv * u).astype(np.uint8)
        gi += L
    return img


@pytest.mark.parametrize("line_width", [1, 2, 3])
def test_kernel_matches_a_plain_python_reference(sample_drawings, line_width):
    """Line width 2 with 3 channels takes a specialised step loop, other widths the general one: both must
    draw what the documented algorithm draws, including strokes that leave the box and are clipped."""
    rng = np.random.default_rng(line_width)
    drawings = [[[list(np.float32(s[0]) * 1.3 - 40), list(np.float32(s[1]) * 1.2 - 20)] for s in d]
                for d in sample_drawings[:6]]  # pushed past every border
    drawings += [[[list(rng.integers(-30, 290, 5)), list(rng.integers(-30, 290, 5))]] for _ in range(6)]
    for d in sample_drawings[:6] + drawings:
        d = [[[float(v) for v in s[0]], [float(v) for v in s[1]]] for s in d]
        for size in (32, 64):
            assert np.array_equal(rasterize(d, size, "order3", line_width=line_width),
                                  reference_render(d, size, line_width)), (size, d)


@pytest.mark.parametrize("xs", [
    [10, 20, 30],            # all ints: read as int64
    [10, 20.5, 30],          # a float among ints: falls back to doubles
    [10.0, 20, 30],          # starts with a float
    [10, 2**70, 30],         # an int beyond int64: falls back to doubles
    [True, 20, 30],          # a bool is a number 1, as float(True)
])
def test_lists_read_as_float_whatever_mix_of_number_types(xs):
    ys, ts = [5, 6, 7], [0, 17, 40]
    as_floats = [[[float(v) for v in xs], [float(v) for v in ys], [float(v) for v in ts]], [[1.0], [2.0], [50.0]]]
    for strokes, want in (([[xs, ys, ts], [[1], [2], [50]]], as_floats), ([[xs, ys]], [as_floats[0][:2]])):
        got, want = flatten_strokes(strokes, fit=True), flatten_strokes(want, fit=True)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[2], want[2])
        assert (got[1] is None and want[1] is None) or np.array_equal(got[1], want[1])


def test_a_drawing_mixing_timed_and_untimed_strokes_has_no_times():
    xy, t, lens = flatten_strokes([[[1, 2], [3, 4], [0, 10]], [[5, 6], [7, 8]], [[9], [9], [30]]])
    assert t is None and lens.tolist() == [2, 2, 1]
    assert xy[:, 0].tolist() == [1, 2, 5, 6, 9] and xy[:, 1].tolist() == [3, 4, 7, 8, 9]


def test_numpy_arrays_as_strokes_render_as_the_same_lists(sample_drawings):
    """Strokes may be numpy arrays (a 2 x L array, or a tuple of 1-D arrays, timed or not): the same pixels
    and points as the lists they hold."""
    for d in sample_drawings[:8]:
        as_2d = [np.array(s) for s in d]
        as_tuples = [tuple(np.asarray(a, np.float32) for a in s) for s in d]
        for strokes in (as_2d, as_tuples):
            assert np.array_equal(rasterize(strokes, 64), rasterize(d, 64))
    timed = [[[1, 2, 3], [4, 5, 6], [0, 10, 20]], [[7, 8], [9, 10], [40, 50]]]
    mixed = [timed[0], [np.array(timed[1][0]), np.array(timed[1][1]), np.array(timed[1][2])]]
    got, want = flatten_strokes(mixed), flatten_strokes(timed)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_an_array_whose_length_lies_is_refused_not_read_past_its_end():
    class Longer(list):
        def __len__(self):
            return super().__len__() + 1000

    with pytest.raises(ValueError, match="other than their length"):
        rasterize([[Longer([1, 2]), Longer([3, 4])]])
