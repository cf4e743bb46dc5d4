"""A drawing's JSON text renders exactly as its parsed lists; the compiled reader hands anything unusual to
json.loads, and bad text gets a named error."""

import csv
import json
import math
import re
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from doodle.drawing.json_reader import parse_drawing_text
from doodle.render.raster import rasterize

SAMPLE = Path(__file__).resolve().parents[2] / "input" / "sample"


def flat_of(strokes) -> np.ndarray:
    return np.array([v for s in strokes for a in s for v in a], np.float64)


def kaggle_texts(n_files=3, rows=20) -> list[str]:
    out = []
    for path in sorted((SAMPLE / "train_simplified").glob("*.csv"))[:n_files]:
        with open(path, newline="") as f:
            out += [r["drawing"] for r in islice(csv.DictReader(f), rows)]
    return out


def raw_texts(n=60) -> list[str]:
    """The `drawing` field of bundled raw ndjson lines, written back compactly as the files hold it."""
    out = []
    for path in sorted((SAMPLE / "raw").glob("*.ndjson")):
        with open(path) as f:
            out += [json.dumps(json.loads(line)["drawing"], separators=(",", ":")) for line in f if line.strip()]
    return out[:n]


def within_one_ulp(got: np.ndarray, want: np.ndarray) -> bool:
    return len(got) == len(want) and all(g == w or abs(g - w) <= math.ulp(w) for g, w in zip(got, want, strict=True))


def test_kaggle_text_renders_as_its_lists():
    texts = kaggle_texts()
    assert len(texts) == 60
    for t in texts:
        assert parse_drawing_text(t) is not None
        assert np.array_equal(rasterize(t, 64), rasterize(json.loads(t), 64))


@pytest.mark.parametrize("size,encoding", [(64, "time3"), (128, "rt3")])
def test_raw_timed_text_renders_as_its_lists(size, encoding):
    texts = raw_texts()
    assert len(texts) == 60
    for t in texts:
        lists = json.loads(t)
        assert within_one_ulp(parse_drawing_text(t)[0], flat_of(lists))  # 17-digit repr of float32 values
        assert np.array_equal(rasterize(t, size, encoding, fit=True), rasterize(lists, size, encoding, fit=True))


def test_reader_shape_of_the_result():
    flat, alens, narr = parse_drawing_text(' [ [[1, 2.5], [3,-4]] , [[5],[6],[7]], [] ]\n')
    assert flat.tolist() == [1.0, 2.5, 3.0, -4.0, 5.0, 6.0, 7.0]
    assert alens.tolist() == [2, 2, 1, 1, 1]
    assert narr.tolist() == [2, 3, 0]
    empty = parse_drawing_text("[]")
    assert [a.size for a in empty] == [0, 0, 0]
    assert np.array_equal(rasterize("[]", 32), rasterize([], 32))


@pytest.mark.parametrize("text", [
    "[[[1e2, 3], [4, 5]]]",            # exponent: json.loads reads it
    "[[[1, 2], [3, 4]]] ",             # trailing space is fine for the reader too
    "[[[1.00000000000000000001, 2], [3, 4]]]",  # more than 18 digits
])
def test_unusual_but_valid_text_renders_as_json_loads_reads_it(text):
    assert np.array_equal(rasterize(text, 32), rasterize(json.loads(text), 32))


@pytest.mark.parametrize("text", [
    "[[[1e2, 3], [4, 5]]]", "[[[NaN, 3], [4, 5]]]", "[[[[1]], [2]]]", "[[[1, 2], [3, 4]]] x",
    "[[[01, 2], [3, 4]]]", "[[[1., 2], [3, 4]]]", "[[[1, 2], [3, 4]],]", "{}", "", "[[[1,2],[3,4]]",
])
def test_reader_declines_what_is_not_the_plain_form(text):
    assert parse_drawing_text(text) is None


@pytest.mark.parametrize("text,match", [
    ("[[[1, 2], [3, 4]]", "not valid JSON"),
    ("[[[1, 2], [3, 4]],]", "not valid JSON"),
    ("", "not valid JSON"),
    ('{"drawing": []}', "must be a JSON list of strokes, not dict"),
    ("[[[1, 2], [3]]]", "different lengths"),
    ("[[[1, 2]]]", "2 or 3 arrays"),
    ("[[[NaN, 2], [3, 4]]]", "NaN or infinite"),
    ('[[["a", 2], [3, 4]]]', "numbers"),
])
def test_bad_text_gets_a_named_error(text, match):
    with pytest.raises(ValueError, match=match):
        rasterize(text, 32)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
number = st.one_of(st.integers(-10**6, 10**6), finite, finite.map(lambda v: float(np.float32(v))))
array = st.lists(number, min_size=0, max_size=6)
drawing = st.lists(st.integers(1, 6).flatmap(lambda n: st.tuples(*[st.lists(number, min_size=n, max_size=n)] * 3)),
                   max_size=4).map(lambda d: [list(map(list, s)) for s in d])


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels_loaded():
    """Compile (or load from numba's cache) the reader and rasteriser before the timed hypothesis examples:
    the first call can take seconds on a loaded machine, which would exceed hypothesis's deadline, and a
    deadline failure sends its search down other examples than the derandomised CI ones."""
    for drawing_ in ([], [[[0, 1], [0, 1], [0, 1]]], [[[0.5, 1], [0, 1.5]]]):
        for source in (drawing_, json.dumps(drawing_)):
            rasterize(source, 64, "rt3", fit=True)
    parse_drawing_text("[[[0.25, 1], [0, 1]]]")


@given(drawing, st.booleans())
def test_any_drawing_text_reads_to_within_one_ulp_and_renders_as_its_lists(strokes, compact):
    text = json.dumps(strokes, separators=(",", ":") if compact else None)
    parsed = parse_drawing_text(text)
    longest = max((sum(c.isdigit() for c in tok) for tok in re.findall(r"[-\d.]+", text)), default=0)
    if "e" in text or longest > 18:  # an exponent, or more digits (leading zeros too) than an exact integer
        assert parsed is None  # holds: json.loads reads it (and the rendering below must still match)
    else:
        # at most 15 significant digits: exact; more (repr of any double): within one unit in the last place
        assert within_one_ulp(parsed[0], flat_of(strokes))
    assert np.array_equal(rasterize(text, 64, "rt3", fit=True), rasterize(strokes, 64, "rt3", fit=True))


@given(st.lists(st.integers(-10**15 + 1, 10**15 - 1), min_size=1, max_size=8), st.integers(0, 15))
def test_up_to_15_significant_digits_read_exactly(mantissas, frac):
    texts = [f"{'-' if m < 0 else ''}{abs(m) // 10**frac}" + (f".{abs(m) % 10**frac:0{frac}d}" if frac else "")
             for m in mantissas]
    text = "[[[" + ",".join(texts) + "],[" + ",".join(texts) + "]]]"
    got = parse_drawing_text(text)[0]
    assert got.tolist() == [float(t) for t in texts] * 2
