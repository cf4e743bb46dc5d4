"""Readers (Kaggle CSV train + test, Google simplified + raw ndjson) and prepare on the bundled sample."""

import csv
import json
import random
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, kaggle_row
from helpers import command_module

from doodle import cli
from doodle.drawing.batch import concat_batches
from doodle.drawing.strokes import DrawingError, parse_kaggle_drawing
from doodle.store.format import ARRAYS, Store, array_path, fold_of
from doodle.store.kaggle_csv import _split_clean, read_csv
from doodle.store.prepare import find_inputs, prepare
from doodle.store.readers import is_labelled, read_file, read_ndjson

ROW_SUMS = ("kept", "rejected", "duplicates", "filtered")


def tool_prepare():
    return command_module(ROOT / "tools" / "prepare.py")


def csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_all(path, **kw):
    parts = list(read_file(path, **kw))
    return concat_batches([b for b, _ in parts]), [r for _, rej in parts for r in rej]


def source_counts(files) -> dict[str, int]:
    """Rows per class in the sample files (the file name is the word)."""
    out: dict[str, int] = {}
    for p in files:
        n = sum(1 for line in p.read_bytes().splitlines() if line.strip()) - (p.suffix == ".csv")
        out[p.stem] = out.get(p.stem, 0) + n
    return out


def rejects(store) -> list[dict]:
    return csv_rows(store / "rejects.csv")


# --- readers --------------------------------------------------------------------------------------------------


def test_kaggle_train_csv(sample_dir):
    path = sample_dir / "train_simplified" / "bear.csv"
    rows = csv_rows(path)
    b, rej = read_all(path)
    assert rej == [] and len(b) == len(rows) == 100
    assert b.key_id.tolist() == [int(r["key_id"]) for r in rows]
    assert b.word == ["bear"] * 100 and b.line.tolist() == list(range(2, 102))
    assert b.countrycode == [r["countrycode"] for r in rows] and b.timestamp == [r["timestamp"] for r in rows]
    assert b.recognized.tolist() == [{"True": 1, "False": 0}[r["recognized"]] for r in rows]
    assert not b.raw.any() and (b.t == -1).all()
    for i in (0, 37, 99):
        assert b.drawing(i).to_lists() == json.loads(rows[i]["drawing"])
    assert is_labelled(path)


def test_kaggle_test_csv_has_no_words(sample_dir):
    path = sample_dir / "test_simplified.csv"
    b, rej = read_all(path)
    answers = csv_rows(sample_dir / "test_labels.csv")
    assert rej == [] and b.word == [None] * len(answers)
    assert b.key_id.tolist() == [int(r["key_id"]) for r in answers]
    assert not is_labelled(path)


@pytest.mark.parametrize("reader, name", [(read_csv, "train_simplified/dog.csv"), (read_ndjson, "raw/dog.ndjson")])
def test_small_chunks_give_the_same_rows(sample_dir, reader, name):
    whole, _ = read_all(sample_dir / name)
    parts = list(reader(sample_dir / name, chunk_bytes=3000))
    assert len(parts) > 3
    chunked = concat_batches([b for b, _ in parts])
    for field in ("key_id", "line", "xy", "t", "stroke_len", "n_strokes"):
        assert np.array_equal(getattr(whole, field), getattr(chunked, field)), field


def test_google_simplified_ndjson_equals_the_csv(sample_dir, tmp_path):
    rows = csv_rows(sample_dir / "train_simplified" / "crab.csv")
    path = tmp_path / "crab.ndjson"
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({"word": r["word"], "countrycode": r["countrycode"], "timestamp": r["timestamp"],
                                "recognized": r["recognized"] == "True", "key_id": r["key_id"],
                                "drawing": json.loads(r["drawing"])}) + "\n")
    nd, rej = read_all(path)
    ref, _ = read_all(sample_dir / "train_simplified" / "crab.csv")
    assert rej == [] and not nd.raw.any()
    for name in ("key_id", "xy", "stroke_len", "n_strokes", "recognized"):
        assert np.array_equal(getattr(nd, name), getattr(ref, name)), name
    assert nd.word == ref.word and nd.line.tolist() == list(range(1, len(rows) + 1))


def test_google_raw_ndjson_is_simplified_with_times(sample_dir):
    path = sample_dir / "raw" / "eye.ndjson"
    lines = path.read_text().splitlines()
    b, rej = read_all(path)
    assert rej == [] and len(b) == len(lines) and b.raw.all()
    assert b.key_id.tolist() == [int(json.loads(s)["key_id"]) for s in lines]
    for i in range(len(b)):
        d = b.drawing(i)
        assert d.t is not None and d.t[0] == 0 and (np.diff(d.t) >= 0).all()
        assert d.xy.max() <= 255 and d.n_strokes == len(json.loads(lines[i])["drawing"])


def expected_csv(lines: list[str]) -> tuple[list[tuple[int, list]], list[tuple[int, str]]]:
    """(line, fields) kept and (line, reason) rejected, by Python's csv module and the careful parser."""
    kept, rejected = [], []
    for ln, fields in enumerate(csv.reader(lines[1:]), start=2):
        if len(fields) != 6:
            rejected.append((ln, "bad_row"))
            continue
        try:
            parse_kaggle_drawing(fields[1])
            kept.append((ln, fields))
        except DrawingError as e:
            rejected.append((ln, e.reason))
    return kept, rejected


def test_csv_rows_match_pythons_csv_module(tmp_path, write_kaggle_csv):
    """The whole-block splitter and its per-line fallback agree with the csv module on odd rows."""
    good = [kaggle_row(100 + i, "cat", [[[i, 2], [3, 4]]]) for i in range(5)]
    text = write_kaggle_csv(tmp_path / "a.csv", good).read_text().splitlines()
    odd = text[:3] + [
        '"US","[[[9, 9], [9, 9]]]",200,True,2017-01-01,cat',       # every field quoted
        'US,"[[[8, 8], [8, 8]]]",201,True,"2017,01,01",cat',        # a quoted comma elsewhere
        'US,"[[[7, 7], [7, 7]]]",202,True,2017-01-01',              # a field short
        "US,[[[6]]],203,True,2017-01-01,cat",                        # unquoted, no comma: one array only
        "US,[[[5], [5]]],204,True,2017-01-01,cat",                   # unquoted: cut at its commas
    ] + text[3:]
    for name, lines, end in (("lf", odd, "\n"), ("crlf", odd, "\r\n"), ("clean", text, "\r\n")):
        p = tmp_path / f"{name}.csv"
        p.write_bytes(end.join(lines).encode() + (end.encode() if name != "clean" else b""))
        b, rej = read_all(p)
        kept, rejected = expected_csv(lines)
        assert b.line.tolist() == [ln for ln, _ in kept], name
        assert b.key_id.tolist() == [int(r[2]) for _, r in kept], name
        assert b.timestamp == [r[4] for _, r in kept], name
        assert sorted((r.line, r.reason) for r in rej) == rejected, name
        assert len(rejected) == (0 if name == "clean" else 3)


# --- prepare on the sample ---------------------------------------------------------------------------------------


def test_summary_counts_add_up_and_match_the_source(sample_store, sample_dir):
    store, s = sample_store
    files = sorted((sample_dir / "train_simplified").glob("*.csv")) + sorted((sample_dir / "raw").glob("*.ndjson"))
    counts = source_counts(files)
    assert s["rows"] == sum(counts.values()) == sum(s[k] for k in ROW_SUMS)
    assert s["rejected"] == s["duplicates"] == s["filtered"] == 0
    assert s["per_class"] == counts
    assert json.loads((store / "summary.json").read_text()) == s
    assert rejects(store) == []
    info = json.loads((store / "store.json").read_text())
    assert info["n_drawings"] == s["kept"] and info["has_time"]


def test_folds_are_a_function_of_key_id(sample_store):
    store = Store(sample_store[0])
    assert np.array_equal(store.fold, fold_of(np.asarray(store.key_id), 5))
    assert np.bincount(store.fold, minlength=5).min() > len(store) * 0.15


def store_by_key(root) -> dict[int, tuple]:
    s = Store(root)
    return {int(k): (int(s.fold[i]), int(s.label[i]), s.drawing(i).to_lists()) for i, k in enumerate(s.key_id)}


def test_shuffled_files_and_two_workers_give_the_same_store(sample_store, sample_dir, tmp_path, make_opts):
    files = sorted((sample_dir / "train_simplified").glob("*.csv")) + sorted((sample_dir / "raw").glob("*.ndjson"))
    random.Random(0).shuffle(files)
    s1 = prepare(files, tmp_path / "shuffled", make_opts())
    s2 = prepare([sample_dir / "train_simplified", sample_dir / "raw"], tmp_path / "two", make_opts(), workers=2)
    base = store_by_key(sample_store[0])
    assert store_by_key(tmp_path / "shuffled") == base
    for name in ARRAYS:  # same file order as workers=1: byte-identical arrays
        assert array_path(tmp_path / "two", name).read_bytes() == array_path(sample_store[0], name).read_bytes()
    assert pq.read_table(tmp_path / "two" / "meta.parquet").equals(pq.read_table(sample_store[0] / "meta.parquet"))
    assert {k: s1[k] for k in ROW_SUMS} == {k: s2[k] for k in ROW_SUMS} == {k: sample_store[1][k] for k in ROW_SUMS}


def test_duplicates_are_kept_once_and_listed(sample_dir, tmp_path, write_kaggle_csv, make_opts):
    src = tmp_path / "src"
    shutil.copytree(sample_dir / "train_simplified", src / "a")
    bear = csv_rows(sample_dir / "train_simplified" / "bear.csv")
    write_kaggle_csv(src / "b" / "bear.csv", bear[:7] + [bear[3]])  # 7 repeats of file a, one of itself
    s = prepare([src], tmp_path / "store", make_opts())
    assert s["duplicates"] == 8 and s["rejected"] == 0 and s["kept"] == 2700
    assert s["rows"] == sum(s[k] for k in ROW_SUMS) == 2708
    assert s["per_class"]["bear"] == 100
    dups = rejects(tmp_path / "store")
    assert [(r["file"], int(r["line"]), int(r["key_id"]), r["reason"]) for r in dups] == [
        (str(src / "b" / "bear.csv"), i + 2, int(row["key_id"]), "duplicate_key_id")
        for i, row in enumerate(bear[:7] + [bear[3]])]
    kept = Store(tmp_path / "store")
    assert len(set(np.asarray(kept.key_id).tolist())) == len(kept) == 2700
    meta = pq.read_table(tmp_path / "store" / "meta.parquet").to_pydict()
    assert all(src_file.startswith(str(src / "a")) for src_file in meta["source"])  # the first copies


def test_a_folder_skips_test_and_label_files_and_its_own_store(sample_dir, tmp_path, make_opts):
    src = tmp_path / "input"
    shutil.copytree(sample_dir / "train_simplified", src / "train_simplified")
    for name in ("test_simplified.csv", "test_labels.csv"):
        shutil.copy(sample_dir / name, src / name)
    (src / "sample_submission.csv").write_text("key_id,word\n1,a b c\n")
    out = src / "store"
    s = prepare([src], out, make_opts(["bear", "dog"]))
    assert s["kept"] == 200 and s["filtered"] == 2500
    assert sorted(f["file"].rsplit("/", 1)[1] for f in s["skipped_files"]) == [
        "sample_submission.csv", "test_labels.csv", "test_simplified.csv"]
    files, _ = find_inputs([src], out)  # the store's own rejects.csv is not an input next time
    assert len(files) == 27 and all(out not in p.parents for p in files)
    assert prepare([src], out, make_opts(["bear", "dog"]))["kept"] == 200


def test_tools_prepare_with_a_class_subset(sample_dir, tmp_path, capsys):
    """Words as a user types them (any case, '_' for a space) select the classes as Google spells them."""
    out = tmp_path / "store"
    assert tool_prepare().main(["--src", str(sample_dir / "train_simplified"), "--out", str(out), "--classes", "Bear,hot_dog",
                 "--folds", "4"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["kept"] == 200 and s["filtered"] == 2500 and s["rows"] == 2700 and s["rejected"] == 0
    store = Store(out)
    assert store.classes == ["bear", "hot dog"] and store.info.n_folds == 4
    assert np.bincount(store.label).tolist() == [100, 100]
    words = {int(r["key_id"]): r["word"] for f in ("bear", "hot dog")
             for r in csv_rows(sample_dir / "train_simplified" / f"{f}.csv")}
    assert all(store.classes[lab] == words[int(k)] for k, lab in zip(store.key_id, store.label, strict=True))
    assert np.array_equal(store.fold, fold_of(np.asarray(store.key_id), 4))


def test_tools_prepare_names_every_skipped_file_on_the_console(sample_dir, tmp_path, capsys):
    """A test CSV or a non-drawing file a user meant to include is named on stderr, not only in summary.json."""
    src = tmp_path / "input"
    src.mkdir()
    shutil.copy(sample_dir / "train_simplified" / "bear.csv", src / "bear.csv")
    for name in ("test_simplified.csv", "test_labels.csv"):
        shutil.copy(sample_dir / name, src / name)
    assert tool_prepare().main(["--src", str(src), "--out", str(tmp_path / "store"), "--classes", "bear"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["skipped_files"] == 2 and json.loads(out)["kept"] == 100
    skipped = [line for line in err.splitlines() if "skipped " in line]
    assert len(skipped) == 2
    assert any(str(src / "test_simplified.csv") in line for line in skipped)
    assert any(str(src / "test_labels.csv") in line for line in skipped)


@pytest.mark.parametrize("argv, message", [
    (["--classes", "bear,not_a_class"], "--classes: unknown class name(s): 'not a class'"),
    (["--classes", "baer"], "nearest: bear"),
    (["--folds", "1"], "--folds"),
])
def test_tools_prepare_bad_arguments_are_one_line_errors(sample_dir, tmp_path, capsys, argv, message):
    code = cli.run(tool_prepare().main, ["--src", str(sample_dir / "train_simplified"), "--out", str(tmp_path / "s"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_missing_source_is_an_error(tmp_path, make_opts):
    with pytest.raises(FileNotFoundError, match="no such file"):
        prepare([tmp_path / "nope"], tmp_path / "out", make_opts())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .csv or .ndjson"):
        prepare([tmp_path / "empty"], tmp_path / "out", make_opts())


def test_store_drawings_are_the_source_drawings_for_one_class(sample_dir, tmp_path, make_opts):
    src = sample_dir / "train_simplified" / "zigzag.csv"
    prepare([src], tmp_path / "s", make_opts())
    store = Store(tmp_path / "s")
    rows = csv_rows(src)
    assert len(store) == len(rows)
    for i, r in enumerate(rows):
        assert store.key_id[i] == int(r["key_id"])
        assert store.drawing(i).to_lists() == parse_kaggle_drawing(r["drawing"]).to_lists()


def test_crlf_blocks_take_the_whole_block_splitter():
    """Files written by csv.writer (the bundled sample's) end lines in CRLF; the fast path must take them."""
    lf, crlf = 'a,"[[1]]",c\nd,"[[2]]",f\n', 'a,"[[1]]",c\r\nd,"[[2]]",f\r\n'
    assert _split_clean(crlf, 3, 1) == _split_clean(lf, 3, 1) == [["a", "d"], ["[[1]]", "[[2]]"], ["c", "f"]]
    assert _split_clean('a,"[[1]]",c\rd,"[[2]]",f\n', 3, 1) is None  # a lone CR: the careful per-line path


@pytest.mark.parametrize("bucket_rows", [1, 7, 10**6])
def test_first_occurrences_in_buckets_match_one_sort(tmp_path, bucket_rows):
    """The bucketed de-duplication (bounded memory) keeps what one argsort of every key_id keeps."""
    from doodle.store.merge import _first_occurrences

    rng = np.random.default_rng(0)
    keys = [rng.integers(1, 60, n) * 10**15 + 7 for n in (0, 40, 25, 33)]  # many repeats, within and across shards
    shards = []
    for i, k in enumerate(keys):
        shard = tmp_path / f"{i:05d}"
        shard.mkdir()
        k.astype(np.int64).tofile(array_path(shard, "key_id"))
        (shard / "counts.json").write_text(json.dumps({"key_id": len(k)}))
        shards.append(shard)
    allk = np.concatenate(keys)
    expect = np.zeros(len(allk), bool)
    expect[np.unique(allk, return_index=True)[1]] = True  # the first row of each key
    got = _first_occurrences(shards, bucket_rows)
    assert [len(m) for m in got] == [len(k) for k in keys]
    assert np.array_equal(np.concatenate(got), expect) and 0 < expect.sum() < len(allk)
