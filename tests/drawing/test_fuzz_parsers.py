"""Fuzzing the parsers: any input gives a valid Drawing (or Record) or a DrawingError, never another exception
and never a hang; the compiled Kaggle parser's accepted rows always equal the careful parser's drawings.

Hypothesis's deadline fails a slow case only once it returns; a case that never returns is stopped by the
pytest-timeout mark below (each test takes seconds, ~12 s at most on a busy 2-core machine). Its "thread"
method ends the run with the stacks: hypothesis would catch the "signal" method's exception and replay the
hanging case.

`FUZZ_CASES` is the number of generated cases per parser in one run (the sum of the `max_examples` below).
"""

import json
import math
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from doodle.drawing.canvas import parse_canvas
from doodle.drawing.kaggle_fields import parse_kaggle_fields
from doodle.drawing.strokes import (
    Drawing,
    DrawingError,
    Limits,
    parse_kaggle_drawing,
    parse_ndjson_line,
)

# Small caps keep every case fast; the deadline turns a slow case (a quadratic blow-up) into a failure, the
# timeout a hang.
LIMITS = Limits(max_strokes=50, max_points=2000, max_chars=50_000)
DEADLINE = timedelta(seconds=2)
pytestmark = pytest.mark.timeout(300, method="thread")

EXAMPLES = {  # test -> (parser, max_examples)
    "kaggle_any_text": ("parse_kaggle_drawing", 300),
    "kaggle_any_bytes": ("parse_kaggle_drawing", 150),
    "kaggle_json_values": ("parse_kaggle_drawing", 200),
    "kaggle_near_valid": ("parse_kaggle_drawing", 400),
    "fast_vs_careful": ("fastparse.parse_kaggle_fields", 400),
    "fast_any_text": ("fastparse.parse_kaggle_fields", 200),
    "ndjson_any_text": ("parse_ndjson_line", 200),
    "ndjson_near_valid": ("parse_ndjson_line", 400),
    "canvas_any_text": ("parse_canvas", 150),
    "canvas_near_valid": ("parse_canvas", 400),
}
FUZZ_CASES: dict[str, int] = {}
for _parser, _n in EXAMPLES.values():
    FUZZ_CASES[_parser] = FUZZ_CASES.get(_parser, 0) + _n

parse_kaggle_fields(["[[[0], [0]]]"])  # load the compiled parser before any deadline starts


def fuzz(name: str):
    return settings(max_examples=EXAMPLES[name][1], deadline=DEADLINE,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --- what a valid result is ------------------------------------------------------------------------------------


def check_drawing(d: Drawing, simplified: bool, limits: Limits = LIMITS) -> None:
    assert isinstance(d, Drawing)
    assert d.xy.dtype == np.float32 and d.xy.ndim == 2 and d.xy.shape[1] == 2 and np.isfinite(d.xy).all()
    assert d.ends.dtype == np.int64 and 1 <= len(d.ends) <= limits.max_strokes
    assert (np.diff(np.concatenate([[0], d.ends])) > 0).all() and d.ends[-1] == len(d.xy) <= limits.max_points
    if simplified:
        assert d.xy.min() >= 0 and d.xy.max() <= 255 and np.array_equal(d.xy, np.rint(d.xy))
    if d.t is not None:
        assert d.t.shape == (len(d.xy),) and np.isfinite(d.t).all()


def outcome(fn, *args, **kw):
    """The parser's result, or its DrawingError; any other exception fails the test."""
    try:
        r = fn(*args, **kw)
    except DrawingError as e:
        assert isinstance(e.reason, str) and e.reason.islower()
        event(f"{fn.__name__}: {e.reason}")  # shown by pytest --hypothesis-show-statistics
        return e
    event(f"{fn.__name__}: accepted")
    return r


def kaggle_outcome(text):
    r = outcome(parse_kaggle_drawing, text, LIMITS)
    if isinstance(r, Drawing):
        check_drawing(r, simplified=True)
        assert r.t is None
    return r


# --- strategies ---------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=40)

coordinate = st.one_of(
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),  # mostly fine
    st.integers(-300, 600), st.integers(), st.floats(), st.floats(0, 255).map(float),
    st.text(max_size=3), st.none(), st.booleans(), st.lists(st.integers(0, 255), max_size=2))


KAGGLE_WIDTHS = st.sampled_from([2, 2, 2, 3, 1, 4])  # arrays per stroke: Kaggle has 2
GOOGLE_WIDTHS = st.sampled_from([3, 3, 2, 1])  # Google's raw strokes have 3 (x, y, t), simplified ones 2


@st.composite
def near_valid_strokes(draw, widths=KAGGLE_WIDTHS):
    """Lists of strokes that are often right, else wrong in one way: values, lengths, widths, or not strokes."""
    mode = draw(st.sampled_from(["clean", "clean", "noisy values", "wrong lengths", "mixed widths", "any json"]))
    if mode == "any json":
        return draw(json_values)
    values = coordinate if mode == "noisy values" else st.integers(0, 255)
    width = draw(widths)
    strokes = []
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.integers(0, 12))
        arrays = []
        for _ in range(draw(widths) if mode == "mixed widths" else width):
            m = draw(st.integers(0, 12)) if mode == "wrong lengths" else n
            arrays.append(draw(st.lists(values, min_size=m, max_size=m)))
        strokes.append(arrays)
    return strokes


def dumps(obj, draw) -> str:
    sep = draw(st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : "), (",\n", ":\t")]))
    return json.dumps(obj, separators=sep)


@st.composite
def plain_field(draw):
    """A valid Kaggle field (the fast path's form)."""
    strokes = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 10))
        strokes.append([draw(st.lists(st.integers(0, 255), min_size=n, max_size=n)) for _ in range(2)])
    return dumps(strokes, draw)


@st.composite
def mutated(draw, base):
    """A field with a few characters inserted, deleted or replaced."""
    text = draw(base)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = draw(st.sampled_from(list("[],0123456789 -.e\"\n") + ["\u00e9", "\x00", "1" * 4]))
        if op == "insert":
            text = text[:i] + ch + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + ch + text[i + 1:]
    return text


@st.composite
def kaggle_fields(draw):
    near = near_valid_strokes().map(lambda s: json.dumps(s, allow_nan=True))
    return draw(st.one_of(plain_field(), mutated(plain_field()), near, mutated(near), st.text(max_size=40)))


# --- Kaggle drawing field -------------------------------------------------------------------------------------


@fuzz("kaggle_any_text")
@given(st.text(max_size=200))
def test_kaggle_any_text(text):
    kaggle_outcome(text)


@fuzz("kaggle_any_bytes")
@given(st.binary(max_size=200))
def test_kaggle_any_bytes(data):
    kaggle_outcome(data)


@fuzz("kaggle_json_values")
@given(json_values)
def test_kaggle_json_values(value):
    kaggle_outcome(json.dumps(value))


@fuzz("kaggle_near_valid")
@given(st.data())
def test_kaggle_near_valid(data):
    text = data.draw(kaggle_fields())
    r = kaggle_outcome(text)
    if isinstance(r, Drawing):  # whatever is accepted reads back as the same numbers
        back = parse_kaggle_drawing(json.dumps(r.to_lists()), LIMITS)
        assert np.array_equal(back.xy, r.xy) and np.array_equal(back.ends, r.ends)


# --- the compiled parser against the careful one -------------------------------------------------------------


def fast_matches_careful(fields: list[str]) -> None:
    oks, res = parse_kaggle_fields(fields, LIMITS)
    assert oks.shape == (len(fields),) and len(res) == oks.sum()
    res.check()
    r = 0
    for field, ok in zip(fields, oks, strict=True):
        careful = kaggle_outcome(field)
        if not ok:
            continue
        assert isinstance(careful, Drawing), f"fast path accepted what the careful parser rejects: {field!r}"
        fast = res.drawing(r)
        assert np.array_equal(fast.ends, careful.ends), field
        assert np.array_equal(fast.xy, careful.xy), field
        r += 1


@fuzz("fast_vs_careful")
@given(st.lists(kaggle_fields(), min_size=1, max_size=8))
def test_fast_parser_accepts_only_what_the_careful_parser_gives(fields):
    fast_matches_careful(fields)


@fuzz("fast_any_text")
@given(st.lists(st.text(max_size=60), max_size=5))
def test_fast_parser_any_text(fields):
    fast_matches_careful(fields)


# --- Google ndjson lines ----------------------------------------------------------------------------------------


def ndjson_outcome(line):
    r = outcome(parse_ndjson_line, line, LIMITS)
    if not isinstance(r, DrawingError):
        check_drawing(r.drawing, simplified=True)
        assert isinstance(r.key_id, int) and 0 <= r.key_id < 2**63
        assert r.word is None or isinstance(r.word, str)
        assert isinstance(r.countrycode, str) and isinstance(r.timestamp, str)
        assert r.raw == (r.drawing.t is not None)
    return r


@fuzz("ndjson_any_text")
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), json_values.map(json.dumps)))
def test_ndjson_any_input(line):
    ndjson_outcome(line)


good_key = st.integers(0, 2**63 - 1)
key_ids = st.one_of(*[good_key.map(str)] * 4, good_key, st.integers(), st.text(max_size=20), json_values)
words = st.one_of(st.sampled_from(["cat", "hot dog"]), st.sampled_from(["cat", "hot dog"]), st.none(), json_values)


@fuzz("ndjson_near_valid")
@given(st.fixed_dictionaries(
    {"drawing": near_valid_strokes(GOOGLE_WIDTHS), "key_id": key_ids},
    optional={"word": words, "countrycode": json_values, "recognized": json_values, "timestamp": json_values,
              "extra": json_values}))
def test_ndjson_near_valid(obj):
    r = ndjson_outcome(json.dumps(obj, allow_nan=True))
    if not isinstance(r, DrawingError) and r.raw and _monotone(obj["drawing"]):
        assert r.drawing.t[0] == 0 and (np.diff(r.drawing.t) >= 0).all()


def _monotone(strokes) -> bool:
    """Whether the raw times of a stroke list never go back (only then must the simplified ones not)."""
    ts = [t for s in strokes for t in s[2]]
    return all(isinstance(t, (int, float)) and math.isfinite(t) for t in ts) and ts == sorted(ts)


# --- the drawing page's canvas ----------------------------------------------------------------------------------

good_number = st.one_of(st.integers(-2000, 2000), st.floats(-1e4, 1e4))
number = st.one_of(good_number, good_number, good_number, st.floats(), st.integers(), st.text(max_size=3),
                   st.none(), st.booleans())


def commands(n: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.sampled_from(["M", "L", "m", "l"]), n, n).map(list),
        st.tuples(st.just("Q"), n, n, n, n).map(list),
        st.lists(st.one_of(st.sampled_from(["M", "L", "Q", "C", "Z", ""]), n), max_size=6))


good_path = st.tuples(st.tuples(st.just("M"), good_number, good_number).map(list),
                      st.lists(st.one_of(st.tuples(st.just("L"), good_number, good_number).map(list),
                                         st.tuples(st.just("Q"), *[good_number] * 4).map(list)), max_size=10)
                      ).map(lambda p: [p[0], *p[1]])
paths = st.one_of(good_path, good_path, good_path, st.lists(commands(good_number), max_size=12),
                  st.lists(st.one_of(commands(number), json_values), max_size=12), json_values)
path_object = st.fixed_dictionaries({"type": st.sampled_from(["path"] * 5 + ["rect"])}, optional={"path": paths})


@fuzz("canvas_any_text")
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), json_values, json_values.map(json.dumps)))
def test_canvas_any_input(data):
    r = outcome(parse_canvas, data, LIMITS)
    if isinstance(r, Drawing):
        check_drawing(r, simplified=False)


@fuzz("canvas_near_valid")
@given(st.fixed_dictionaries({"objects": st.lists(path_object, min_size=1, max_size=6)}),
       st.one_of(st.none(), st.lists(good_number, max_size=8), st.lists(number, max_size=8), json_values),
       st.booleans())
def test_canvas_near_valid(data, times, as_text):
    r = outcome(parse_canvas, json.dumps(data, allow_nan=True) if as_text else data, LIMITS, times=times)
    if isinstance(r, Drawing):
        check_drawing(r, simplified=False)
        assert r.t is not None
