"""Corrupt input through prepare: every bad row lands in rejects.csv with its reason and 1-based line number,
every good row is kept, a file that cannot be used at all stops the run with an error naming it, and the
counts in summary.json add up exactly."""

import csv
import json
import tracemalloc

import numpy as np
import pytest
from conftest import KAGGLE_HEADER, kaggle_row

from doodle.drawing.batch import FileFormatError
from doodle.drawing.strokes import Limits
from doodle.store.format import Store
from doodle.store.prepare import prepare
from doodle.store.readers import read_file

CLASSES = ["cat", "dog", "hot dog"]
BIG = 100_000


def rejects(store) -> list[tuple[str, int, str]]:
    with open(store / "rejects.csv", newline="") as f:
        return [(r["file"].rsplit("/", 1)[-1], int(r["line"]), r["reason"]) for r in csv.DictReader(f)]


def check_counts(s: dict) -> None:
    assert s["rows"] == s["kept"] + s["rejected"] + s["duplicates"] + s["filtered"]
    assert sum(s["per_reason"].values()) == s["rejected"]
    assert sum(s["per_class"].values()) == s["kept"]
    assert sum(f["rows"] for f in s["files"]) == s["rows"]


def line(key_id, word="cat", strokes=None, **kw) -> bytes:
    row = kaggle_row(key_id, word, strokes if strokes is not None else [[[key_id % 200, 10], [5, 250]]], **kw)
    out = []
    csv.DictWriter(_Sink(out), KAGGLE_HEADER, lineterminator="\n").writerow(row)
    return "".join(out).encode()


class _Sink:
    def __init__(self, out: list):
        self.write = out.append


def big_drawing(n: int) -> str:
    xs = ", ".join(str(i % 256) for i in range(n))
    return f"[[[{xs}], [{xs}]]]"


def test_a_csv_with_every_kind_of_bad_row(tmp_path, make_opts):
    rows = [  # (bytes of the line, expected reason or None for kept, "filtered" for an unselected class)
        (line(1001), None),
        (b'US,"[[[1, 2], [3, 4]]",1002,True,2017-03-01 12:00:00.000000,cat\n', "bad_json"),
        (line(1003, strokes=[[[1, 2, 3], [4, 5]]]), "length_mismatch"),
        (b'US,"[[[NaN, 2], [3, 4]]]",1004,True,2017-03-01 12:00:00.000000,cat\n', "bad_number"),
        (line(1005, strokes=[[[-1, 2], [3, 4]]]), "out_of_range"),
        (line(1006, strokes=[[[1e30, 2], [3, 4]]]), "out_of_range"),
        (line(1007, strokes=[]), "empty_drawing"),
        (line(1008, strokes=[[[], []]]), "empty_drawing"),
        (line(1009, strokes=big_drawing(BIG)), "too_many_points"),
        (line(1001, strokes=[[[9, 9], [9, 9]]]), "duplicate_key_id"),
        (line(1010, word="unicorn"), "unknown_word"),
        (line(1011, word="Cat"), "unknown_word"),
        (line(1012).replace(b"1012", b"10x2"), "bad_key_id"),
        (line(1013).replace(b"1013", b"-1013"), "bad_key_id"),
        (line(1014).replace(b"1014", b""), "bad_key_id"),
        (b"\n", "empty_row"),
        (b"   \r\n", "empty_row"),
        (line(1015, word="dog"), None),
        (line(1016).replace(b"US", b"\xff\xfe"), "bad_encoding"),
        (line(1017, word="hot dog"), None),
        (line(1018, word="bear"), "filtered"),              # a real class, not selected
        (line(1019)[:-1] + b",extra\n", "bad_row"),
        (line(1020).replace(b",cat", b""), "bad_row"),
        (line(1021), None),
        (line(1022)[:25], "bad_row"),                       # the last line, cut mid-field, no newline
    ]
    path = tmp_path / "src" / "cat.csv"
    path.parent.mkdir()
    path.write_bytes((",".join(KAGGLE_HEADER) + "\n").encode() + b"".join(r for r, _ in rows))
    s = prepare([path], tmp_path / "store", make_opts(CLASSES))

    expected = [("cat.csv", i + 2, why) for i, (_, why) in enumerate(rows) if why not in (None, "filtered")]
    assert sorted(rejects(tmp_path / "store"), key=lambda r: r[1]) == expected
    kept = [i for i, (_, why) in enumerate(rows) if why is None]
    assert s["kept"] == len(kept) and s["filtered"] == 1 and s["duplicates"] == 1
    assert s["rows"] == len(rows) and s["rejected"] == len(expected) - 1
    assert s["per_class"] == {"cat": 2, "dog": 1, "hot dog": 1}
    check_counts(s)
    store = Store(tmp_path / "store")
    assert sorted(np.asarray(store.key_id).tolist()) == [1001, 1015, 1017, 1021]
    first = int(np.flatnonzero(np.asarray(store.key_id) == 1001)[0])
    assert store.drawing(first).to_lists() == [[[1, 10], [5, 250]]]  # the first copy, not the duplicate


def test_the_100k_point_drawing_is_rejected_without_holding_much(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_bytes((",".join(KAGGLE_HEADER) + "\n").encode() + line(1, strokes=big_drawing(BIG)) + line(2))
    tracemalloc.start()
    parts = list(read_file(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(r.line, r.reason) for _, rej in parts for r in rej] == [(2, "too_many_points")]
    assert sum(len(b) for b, _ in parts) == 1
    assert peak < 64 << 20  # the line is ~0.8 MB; parsing it may not cost more than a small multiple


def test_a_line_longer_than_any_drawing_is_skipped_unread(tmp_path, make_opts):
    limits = Limits(max_chars=1000)
    path = tmp_path / "cat.csv"
    huge = line(2, strokes="[" + " " * 300_000 + "]")
    path.write_bytes((",".join(KAGGLE_HEADER) + "\n").encode() + line(1) + huge + line(3) + huge[:-1])
    s = prepare([path], tmp_path / "store", make_opts(CLASSES, limits=limits, chunk_bytes=4096))
    assert rejects(tmp_path / "store") == [("cat.csv", 3, "too_large"), ("cat.csv", 5, "too_large")]
    assert s["kept"] == 2 and s["rows"] == 4
    check_counts(s)


def test_small_chunks_keep_line_numbers(tmp_path, make_opts):
    body = b"".join(line(100 + i) if i % 7 else line(100 + i, strokes=[[[1], [2, 3]]]) for i in range(60))
    path = tmp_path / "cat.csv"
    path.write_bytes((",".join(KAGGLE_HEADER) + "\r\n").encode() + body.replace(b"\n", b"\r\n"))
    s = prepare([path], tmp_path / "store", make_opts(CLASSES, chunk_bytes=100))
    assert rejects(tmp_path / "store") == [("cat.csv", i + 2, "length_mismatch") for i in range(0, 60, 7)]
    assert s["kept"] == 60 - 9
    check_counts(s)


def test_wrong_header_names_the_file_and_touches_nothing(tmp_path, make_opts, write_kaggle_csv):
    good = write_kaggle_csv(tmp_path / "src" / "a.csv", [kaggle_row(1, "cat", [[[1, 2], [3, 4]]])])
    bad = tmp_path / "src" / "b.csv"
    bad.write_text("country,strokes,id,word\nUS,x,1,cat\n")
    out = tmp_path / "store"
    prepare([good], out, make_opts(CLASSES))
    with pytest.raises(FileFormatError, match=r"b\.csv.*lacks column\(s\) \['drawing', 'key_id'\]"):
        prepare([tmp_path / "src"], out, make_opts(CLASSES))
    assert Store(out).key_id.tolist() == [1]  # the earlier store is still there


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfecountrycode,drawing\n", "not UTF-8"),
    (b"", "empty first line"),
    (b"key_id,key_id,drawing\n", "repeats"),
])
def test_unusable_headers(tmp_path, make_opts, content, message):
    path = tmp_path / "odd.csv"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=rf"odd\.csv.*{message}"):
        prepare([path], tmp_path / "store", make_opts(CLASSES))


def test_a_utf8_bom_header_is_fine(tmp_path, make_opts):
    path = tmp_path / "cat.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (",".join(KAGGLE_HEADER) + "\n").encode() + line(1))
    assert prepare([path], tmp_path / "store", make_opts(CLASSES))["kept"] == 1


def test_a_binary_file_named_ndjson_is_rejected_line_by_line(tmp_path, make_opts):
    path = tmp_path / "junk.ndjson"
    path.write_bytes(bytes(range(256)) * 4)  # 4 lines: \n is byte 10
    s = prepare([path], tmp_path / "store", make_opts(CLASSES))
    assert s["kept"] == 0 and s["rows"] == 5
    assert {r[2] for r in rejects(tmp_path / "store")} <= {"bad_encoding", "bad_json"}
    check_counts(s)


def test_an_ndjson_file_with_bad_lines(tmp_path, make_opts):
    good = {"word": "cat", "countrycode": "US", "timestamp": "2017-03-01 12:00:00.0 UTC", "recognized": True,
            "key_id": "5", "drawing": [[[10, 20, 30], [40, 40, 45], [0, 10, 20]]]}
    lines = [
        (json.dumps(good).encode(), None),
        (b'{"word": "cat", "key_id": "6", "drawing": [[[1, 2], [3, 4]', "bad_json"),
        (b"", "empty_row"),
        (json.dumps({**good, "key_id": "7", "drawing": [[[1, 2], [3, 4], [5]]]}).encode(), "length_mismatch"),
        (json.dumps({**good, "key_id": "8"}).encode().replace(b"US", b"\xc3\x28"), "bad_encoding"),
        (json.dumps({k: v for k, v in good.items() if k != "key_id"}).encode(), "bad_key_id"),
        (json.dumps({**good, "key_id": "9", "word": ["cat"]}).encode(), "bad_word"),
        (json.dumps({**good, "key_id": "10", "word": "unicorn"}).encode(), "unknown_word"),
        (json.dumps({**good, "key_id": "11", "drawing": [[[1, 2], [3, 4], [0, float("nan")]]]}).encode(),
         "bad_number"),
        (json.dumps({**good, "key_id": "12", "word": None}).encode(), "missing_word"),
        (json.dumps({**good, "key_id": "5"}).encode(), "duplicate_key_id"),
        (json.dumps({**good, "key_id": "13", "word": "dog"}).encode(), None),
    ]
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(b for b, _ in lines))  # no final newline
    s = prepare([path], tmp_path / "store", make_opts(CLASSES))
    expected = [("mixed.ndjson", i + 1, why) for i, (_, why) in enumerate(lines) if why]
    assert sorted(rejects(tmp_path / "store"), key=lambda r: r[1]) == expected
    assert s["kept"] == 2 and s["rows"] == len(lines) and s["duplicates"] == 1
    check_counts(s)
    store = Store(tmp_path / "store")
    assert store.info.has_time and store.drawing(0).t is not None


def test_a_rejected_ndjson_line_keeps_its_key_id_only_when_it_reads_as_one(tmp_path, make_opts):
    """The rejects file names the drawing when the line's key_id is intact, and never pieces a number
    together from a broken one ("12a34" is not 1234; "1²3" is not 13)."""
    path = tmp_path / "broken.ndjson"
    path.write_text("\n".join([
        '{"word": "cat", "key_id": "6", "drawing": [[[1, 2], [3, 4]',
        '{"word": "cat", "key_id": 7, "drawing": [[[1, 2], [3]]]}',
        '{"word": "cat", "key_id": "12a34", "drawing": [[[1, 2], [3, 4]',
        '{"word": "cat", "key_id": "1\u00b23", "drawing": [[[1, 2], [3, 4]',
    ]) + "\n", encoding="utf-8")
    prepare([path], tmp_path / "store", make_opts(CLASSES))
    with open(tmp_path / "store/rejects.csv", newline="") as f:
        assert [r["key_id"] for r in csv.DictReader(f)] == ["6", "7", "", ""]


def test_a_test_csv_given_by_name_is_skipped_with_a_reason(tmp_path, make_opts, write_kaggle_csv):
    test_csv = tmp_path / "test_simplified.csv"
    test_csv.write_text('key_id,countrycode,drawing\n1,US,"[[[1, 2], [3, 4]]]"\n')
    train = write_kaggle_csv(tmp_path / "cat.csv", [kaggle_row(2, "cat", [[[1, 2], [3, 4]]])])
    s = prepare([test_csv, train], tmp_path / "store", make_opts(CLASSES))
    assert s["kept"] == 1 and s["skipped_files"][0]["file"] == str(test_csv)
    with pytest.raises(FileNotFoundError, match="no .csv or .ndjson"):
        prepare([test_csv], tmp_path / "store2", make_opts(CLASSES))


def test_an_output_folder_that_is_not_a_store_is_never_deleted(tmp_path, make_opts, write_kaggle_csv):
    src = write_kaggle_csv(tmp_path / "data" / "cat.csv", [kaggle_row(1, "cat", [[[1, 2], [3, 4]]])])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds input file"):
        prepare([src], tmp_path / "data", make_opts(CLASSES))
    with pytest.raises(ValueError, match=r"holds \['notes.txt'\], not a store"):
        prepare([src], tmp_path / "docs", make_opts(CLASSES))
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me" and src.exists()
    prepare([src], tmp_path / "docs" / "store", make_opts(CLASSES))
    prepare([src], tmp_path / "docs" / "store", make_opts(CLASSES))  # a store is replaced
