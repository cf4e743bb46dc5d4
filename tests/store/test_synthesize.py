"""The data synthesiser (doodle.store.synthesize, tools/synthesize.py) on the bundled sample.

The sample has 27 classes; `source340` relabels its drawings to all 340 Kaggle classes
(`helpers.relabel_to_340`), which is the shape of the shared data (every class present, some small).
"""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import ROOT
from helpers import command_module, relabel_to_340

from doodle import cli, resources
from doodle.drawing.flat import Drawings
from doodle.drawing.strokes import parse_kaggle_drawing
from doodle.store import synthesize as synth
from doodle.store.class_sources import open_class_source
from doodle.store.kaggle_csv import read_csv
from doodle.store.kaggle_writer import format_test_rows, format_train_rows

ROWS, TEST_ROWS = 20_000, 1_000


def tool():
    return command_module(ROOT / "tools" / "synthesize.py")


def run(argv) -> int:
    return cli.run(tool().main, [*argv, "--no-progress"])


@pytest.fixture(scope="module")
def source340(tmp_path_factory, sample_dir):
    return relabel_to_340(sample_dir, tmp_path_factory.mktemp("src340"))


@pytest.fixture(scope="module")
def made(source340, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "a"
    assert run(["--from", str(source340), "--out", str(out), "--rows", "20k", "--test-rows", "1k"]) == 0
    return out


def rows_of(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_all_classes_counts_follow_the_distribution(made):
    words = resources.kaggle_classes()
    files = sorted(p.stem for p in (made / "train_simplified").glob("*.csv"))
    assert files == sorted(words)
    counts = np.array([len(rows_of(made / "train_simplified" / f"{w}.csv")) for w in words])
    assert counts.sum() == ROWS
    expect = ROWS * synth.class_weights(words) / synth.class_weights(words).sum()
    assert np.abs(counts - expect).max() < 1
    w = synth.class_weights(words)
    assert 100_000 <= w.min() < 110_000 and 280_000 < w.max() <= 300_000 and 130_000 < w.mean() < 170_000
    assert counts.max() > 2 * counts.min()  # not uniform
    assert not list(made.rglob("*.tmp"))


def test_rows_are_valid_kaggle_rows_with_unique_new_keys(made, source340):
    header = (made / "train_simplified" / "cat.csv").read_text().splitlines()[0]
    assert header == "countrycode,drawing,key_id,recognized,timestamp,word"
    source_keys = {r["key_id"] for p in source340.glob("*.csv") for r in rows_of(p)}
    keys = []
    for p in (made / "train_simplified").glob("*.csv"):
        for r in rows_of(p):
            d = parse_kaggle_drawing(r["drawing"])  # the project's validator: integers in 0..255
            assert d.xy.min() >= 0 and d.xy.max() <= 255 and r["word"] == p.stem
            assert r["recognized"] in ("True", "False") and len(r["countrycode"]) == 2
            assert r["timestamp"].startswith("2017-0") and len(r["timestamp"]) == 26
            keys.append(r["key_id"])
    test_keys = [r["key_id"] for r in rows_of(made / "test_simplified.csv")]
    assert len(set(keys + test_keys)) == len(keys) + len(test_keys) == ROWS + TEST_ROWS
    assert not set(keys + test_keys) & source_keys
    assert all(len(k) == 18 for k in keys)


def test_drawings_are_moved_not_copied(made, source340):
    source = {r["drawing"] for r in rows_of(source340 / "cat.csv")}
    ours = [r["drawing"] for r in rows_of(made / "train_simplified" / "cat.csv")]
    assert sum(d in source for d in ours) <= len(ours) // 20


def test_test_csv_and_labels_line_up(made):
    test, labels = rows_of(made / "test_simplified.csv"), rows_of(made / "test_labels.csv")
    assert list(test[0]) == ["key_id", "countrycode", "drawing"] and list(labels[0]) == ["key_id", "word"]
    assert [r["key_id"] for r in test] == [r["key_id"] for r in labels] and len(test) == TEST_ROWS
    assert {r["word"] for r in labels} == set(resources.kaggle_classes())
    for r in test[::50]:
        parse_kaggle_drawing(r["drawing"])


def test_same_seed_same_bytes_other_seed_differs(made, source340, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    assert run(["--from", str(source340), "--out", str(again), "--rows", "20000", "--test-rows", "1000"]) == 0
    assert run(["--from", str(source340), "--out", str(other), "--rows", "20k", "--test-rows", "1k",
                "--seed", "1"]) == 0
    for rel in ["train_simplified/cat.csv", "train_simplified/zigzag.csv", "test_simplified.csv", "test_labels.csv"]:
        assert (again / rel).read_bytes() == (made / rel).read_bytes(), rel
        assert (other / rel).read_bytes() != (made / rel).read_bytes(), rel


def test_any_number_of_workers_gives_the_same_bytes(made, source340, tmp_path):
    two = tmp_path / "two"
    assert run(["--from", str(source340), "--out", str(two), "--rows", "20k", "--test-rows", "1k", "--workers", "2"]) == 0
    files = sorted(p.relative_to(made) for p in made.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file()) and len(files) == 342
    for rel in files:
        assert (two / rel).read_bytes() == (made / rel).read_bytes(), rel


def moved_by_numpy(d: Drawings, rng: np.random.Generator) -> Drawings:
    """The compiled `move_drawings`, written with numpy arrays (its first version): the reference."""
    m, shift = synth.random_affine(len(d), synth.MOVE, rng)
    own = np.repeat(np.arange(len(d)), d.points_per_drawing())
    x, y = d.xy[:, 0].astype(np.float32) - synth.CENTRE, d.xy[:, 1].astype(np.float32) - synth.CENTRE
    m, shift = m.astype(np.float32)[own], (shift.astype(np.float32) + synth.CENTRE)[own]
    noise = rng.standard_normal((2, len(x)), dtype=np.float32) * np.float32(synth.MOVE.point_jitter)
    xy = np.stack([m[:, 0, 0] * x + m[:, 0, 1] * y + shift[:, 0] + noise[0],
                   m[:, 1, 0] * x + m[:, 1, 1] * y + shift[:, 1] + noise[1]], axis=1)
    starts = d.offsets()[1][:-1]
    lo, hi = np.minimum.reduceat(xy, starts, axis=0), np.maximum.reduceat(xy, starts, axis=0)
    fit = np.minimum(np.float32(1.0), np.float32(255.0) / np.maximum((hi - lo).max(axis=1), 1e-6))
    mid = (lo + hi) / 2
    lo, hi = mid + (lo - mid) * fit[:, None], mid + (hi - mid) * fit[:, None]
    move = np.maximum(-lo, 0) - np.maximum(hi - 255, 0)
    q = np.clip(np.rint((xy - mid[own]) * fit[own, None] + mid[own] + move[own]), 0, 255).astype(np.uint8)
    stroke_starts = np.concatenate([[0], np.cumsum(d.stroke_len[:-1], dtype=np.int64)])
    keep = np.zeros(len(q), bool)
    keep[stroke_starts] = True
    keep[1:] |= (q[1:] != q[:-1]).any(axis=1)
    slen = np.add.reduceat(keep.astype(np.int32), stroke_starts).astype(np.int32)
    return Drawings(q[keep], np.full(keep.sum(), -1, np.int32), slen, d.n_strokes)


def test_compiled_move_matches_numpy(sample_dir):
    batch = next(read_csv(sample_dir / "train_simplified" / "bear.csv"))[0]
    d = Drawings(batch.xy, batch.t, batch.stroke_len, batch.n_strokes)
    idx = np.r_[np.arange(len(d))[::-1], 5, 0, 5]  # any order, repeats allowed
    ours = synth.move_drawings(d, np.random.default_rng(7), idx)
    theirs = moved_by_numpy(d.take(idx), np.random.default_rng(7))
    for a in ("xy", "stroke_len", "n_strokes"):
        assert np.array_equal(getattr(ours, a), getattr(theirs, a)), a
    assert len(ours.xy) < len(d.take(idx).xy)  # some rounded points were repeats, and are gone
    with pytest.raises(ValueError, match="uint8"):
        format_train_rows(Drawings(d.xy.astype(np.float32), d.t, d.stroke_len, d.n_strokes), batch.key_id,
                          np.full((len(d), 2), 65, np.uint8), np.ones(len(d), bool), np.zeros(len(d), np.int64), "x")


def test_prepare_reads_it_all(made, tmp_path):
    store = tmp_path / "store"
    assert cli.run(command_module(ROOT / "tools" / "prepare.py").main, ["--src", str(made), "--out", str(store)]) == 0
    s = json.loads((store / "summary.json").read_text())
    assert s["rejected"] == 0 and s["kept"] + s["duplicates"] == s["rows"] == ROWS


def test_writer_matches_json_and_reads_back(sample_dir, tmp_path):
    batch = next(read_csv(sample_dir / "train_simplified" / "bear.csv"))[0]
    d = Drawings(batch.xy, batch.t, batch.stroke_len, batch.n_strokes)
    n = len(d)
    cc = np.frombuffer(b"US" * n, np.uint8).reshape(n, 2)
    ts = np.full(n, 1488400495244100, np.int64)  # 2017-03-01 20:34:55.244100 UTC
    text = format_train_rows(d, batch.key_id, cc, np.arange(n) % 2 == 0, ts, "bear")
    path = tmp_path / "bear.csv"
    path.write_bytes(b"countrycode,drawing,key_id,recognized,timestamp,word\n" + text)
    ours, theirs = rows_of(path), rows_of(sample_dir / "train_simplified" / "bear.csv")
    assert [r["drawing"] for r in ours] == [r["drawing"] for r in theirs]  # Kaggle's own text, byte for byte
    assert ours[0]["timestamp"] == "2017-03-01 20:34:55.244100" and ours[1]["recognized"] == "False"
    back = next(read_csv(path))[0]
    assert np.array_equal(back.xy, batch.xy) and np.array_equal(back.key_id, batch.key_id)
    test = format_test_rows(d, batch.key_id, cc).decode().splitlines()
    assert test[0] == f'{batch.key_id[0]},US,"{theirs[0]["drawing"]}"'


def test_disk_check_refuses_in_one_line(source340, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(synth, "free_bytes", lambda path: 2 * 10**9)
    assert run(["--from", str(source340), "--out", str(tmp_path / "big"), "--rows", "49.7M"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "GB" in err and "2.0 GB free" in err, err
    needed = float(err.split("need about ")[1].split(" GB")[0])
    assert 15 < needed < 40  # ~500 bytes a row
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("flag,value", [("--rows", "5MM"), ("--rows", "-3"), ("--rows", "1.5"), ("--rows", "0"),
                                        ("--test-rows", "12x"), ("--rows", "")])
def test_bad_sizes_are_one_line_errors(flag, value, source340, tmp_path, capsys):
    assert run(["--from", str(source340), "--out", str(tmp_path / "o"), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {flag}") and "\n" not in err, err


@pytest.mark.parametrize("text,rows", [("20000", 20000), ("500k", 500_000), ("5M", 5_000_000),
                                       ("49.7M", 49_700_000), ("1.5k", 1500)])
def test_sizes(text, rows):
    assert tool().parse_size("--rows", text) == rows


def test_a_class_without_drawings_is_named(sample_dir, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(sample_dir / "train_simplified", src)
    assert run(["--from", str(src), "--out", str(tmp_path / "o"), "--rows", "1000"]) == 2
    err = capsys.readouterr().err
    assert "no source drawings for 313 of 340 classes" in err and "'airplane'" in err


def test_store_source(sample_dir, tmp_path):
    from helpers import prepare_sample

    store = prepare_sample(tmp_path / "store")
    words = (sample_dir / "classes.txt").read_text().split("\n")[:3]
    s = synth.synthesize(open_class_source(store), tmp_path / "o", 300, 30, words=words, progress=False)
    assert s["rows"] == 300 and len(rows_of(tmp_path / "o" / "test_labels.csv")) == 30
    assert sum(len(rows_of(tmp_path / "o" / "train_simplified" / f"{w}.csv")) for w in words) == 300


def test_keys_are_a_bijection():
    k = synth.key_ids(0, 0, 200_000)
    assert len(np.unique(k)) == len(k) and k.min() >= synth.KEY_BASE and k.max() < 2**63
    assert not np.array_equal(synth.key_ids(1, 0, 10), k[:10])
    assert np.array_equal(synth.key_ids(0, 100, 10), k[100:110])
