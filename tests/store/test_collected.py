"""A collected folder (doodle.store.collected): locked appends that never tear or interleave, torn tails,
review decisions, and what `prepare` keeps of it (`--collected accepted|all|none`)."""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLE

from doodle import cli, resources
from doodle.store import collected as coll
from doodle.store.prepare import PrepareOptions, prepare

WORDS = resources.kaggle_classes()
RAW_LINES = [json.loads(line) for p in sorted((SAMPLE / "raw").glob("*.ndjson")) for line in p.read_text().splitlines()]


def record(i: int, author: str = "ann", word: str = "bear") -> dict:
    """A real raw drawing of the sample under a new key_id (19 digits, like the page's)."""
    rec = dict(RAW_LINES[i % len(RAW_LINES)])
    return rec | {"word": word, "key_id": str(10**18 + i), "author": author,
                  "timestamp": f"2026-12-02 10:00:{i % 60:02d}.{i:06d} UTC"}


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def _append_many(path: str, start: int, n: int) -> None:
    for i in range(start, start + n):
        coll.append_record(path, record(i))


def test_threads_and_processes_appending_at_once_leave_intact_distinct_lines(tmp_path):
    """8 threads and 4 processes (servers on one folder), 12 saves each, every save a multi-kB line: every
    line parses, each of the 144 drawings is there exactly once, nothing is interleaved."""
    path = tmp_path / "bear.ndjson"
    threads = [threading.Thread(target=_append_many, args=(str(path), 1000 * k, 12)) for k in range(8)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), 100_000 + 1000 * k, 12)) for k in range(4)]
    for w in threads + procs:
        w.start()
    for w in threads + procs:
        w.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 4
    data = path.read_bytes()
    assert data.endswith(b"\n") and b"\n\n" not in data
    got = lines_of(path)
    want = {str(10**18 + base + i) for base in [*(1000 * k for k in range(8)), *(100_000 + 1000 * k for k in range(4))]
            for i in range(12)}
    assert len(got) == 144 and {r["key_id"] for r in got} == want
    for r in got:  # each line is the whole record that was written, not pieces of two
        assert r == record(int(r["key_id"]) - 10**18)


def test_a_torn_tail_stays_on_its_own_line_and_prepare_rejects_it(tmp_path):
    root = tmp_path / "collected"
    coll.mark_folder(root)
    path = root / "bear.ndjson"
    coll.append_record(path, record(0))
    whole = json.dumps(record(1)).encode()
    with open(path, "ab") as f:  # a server killed in the middle of a save
        f.write(whole[: len(whole) // 2])
    coll.append_record(path, record(2))
    raw = path.read_bytes().split(b"\n")
    assert raw[1] == whole[: len(whole) // 2] and json.loads(raw[2]) == record(2) and raw[3] == b""
    items, problems = coll.read_drawings(root)
    assert [it.key_id for it in items] == [10**18, 10**18 + 2]
    assert len(problems) == 1 and problems[0].startswith("bear.ndjson line 2: not a drawing")
    s = prepare([root], tmp_path / "store", PrepareOptions(WORDS, set(WORDS), collected="all"))
    assert (s["rows"], s["kept"], s["rejected"]) == (3, 2, 1) and sum(s["per_reason"].values()) == 1
    rejects = (tmp_path / "store" / "rejects.csv").read_text().splitlines()
    assert len(rejects) == 2 and rejects[1].split(",")[1] == "2"  # the torn line, by its line number


def decide(root: Path, key: int, decision: str, reviewer: str = "bob", reason: str = "") -> None:
    coll.append_record(root / coll.DECISIONS, {"key_id": str(key), "decision": decision, "reviewer": reviewer,
                                               "reason": reason, "time": "2026-12-02 11:00:00.000000 UTC"})


@pytest.fixture
def reviewed(tmp_path) -> Path:
    """6 drawings: 0, 1 accepted; 2 accepted then rejected (latest wins); 3 rejected; 4, 5 unreviewed; plus a
    torn decision line."""
    root = tmp_path / "collected"
    coll.mark_folder(root)
    for i in range(6):
        coll.append_record(root / f"{['bear', 'crab'][i % 2]}.ndjson", record(i, word=["bear", "crab"][i % 2]))
    for key, d in [(0, "accept"), (1, "accept"), (2, "accept"), (3, "reject"), (2, "reject")]:
        decide(root, 10**18 + key, d, reason="scribble" if d == "reject" else "")
    with open(root / coll.DECISIONS, "ab") as f:
        f.write(b'{"key_id":"1000000000000000004","decis')
    return root


def test_latest_decision_wins_and_a_torn_decision_is_reported(reviewed):
    latest, problems = coll.read_decisions(reviewed)
    assert {k - 10**18: d.decision for k, d in latest.items()} == {0: "accept", 1: "accept", 2: "reject", 3: "reject"}
    assert latest[10**18 + 2].reason == "scribble"
    assert len(problems) == 1 and "_decisions.ndjson line 6: not a decision" in problems[0]
    items, _ = coll.read_drawings(reviewed)
    s = coll.stats(items, latest)
    assert s["per_status"] == {"accepted": 2, "rejected": 2, "unreviewed": 2}
    assert s["per_word"] == {"bear": 3, "crab": 3} and s["per_author"] == {"ann": 6} and s["per_reviewer"] == {"bob": 4}


@pytest.mark.parametrize(("mode", "kept", "left_out"), [
    ("accepted", 2, {"rejected": 2, "unreviewed": 2}), ("all", 6, {}), ("none", 0, {})])
def test_prepare_keeps_the_collected_drawings_asked_for(reviewed, tmp_path, mode, kept, left_out):
    """`--src` the parent folder (as `--src input` holds input/collected): the rule is the folder's
    _decisions.ndjson, never read as drawings; other files are kept whatever the mode."""
    other = tmp_path / "google"
    other.mkdir()
    (other / "bear.ndjson").write_text(json.dumps(record(50) | {"key_id": "5"}) + "\n")
    s = prepare([tmp_path], tmp_path / "store", PrepareOptions(WORDS, set(WORDS), collected=mode))
    assert s["kept"] == kept + 1 and s["rejected"] == 0
    assert s["collected"]["left_out"] == left_out and s["left_out"] == sum(left_out.values())
    assert s["rows"] == s["kept"] + s["rejected"] + s["duplicates"] + s["filtered"] + s["left_out"]
    assert s["collected"]["folders"] == [str(reviewed.resolve())] and s["collected"]["mode"] == mode
    assert len(s["collected"]["decision_problems"]) == 1
    skipped = {Path(f["file"]).name: f["reason"] for f in s["skipped_files"]}
    assert "review decisions" in skipped.pop(coll.DECISIONS)
    assert skipped == ({"bear.ndjson": "collected drawings, left out (--collected none)",
                        "crab.ndjson": "collected drawings, left out (--collected none)"} if mode == "none" else {})
    on_disk = json.loads((tmp_path / "store" / "summary.json").read_text())
    assert on_disk["collected"]["left_out"] == left_out


def test_prepare_cli_takes_collected_and_refuses_a_typo(reviewed, tmp_path, capsys):
    from helpers import command_module

    tool = command_module(ROOT / "tools" / "prepare.py")
    assert tool.main(["--src", str(reviewed), "--out", str(tmp_path / "s"), "--classes", "bear,crab"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["kept"] == 2 and out["collected_left_out"] == {"rejected": 2, "unreviewed": 2}
    with pytest.raises(SystemExit):
        tool.parse_args(["--collected", "acepted"])


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "ann\n", "ann\x00", "\x1b[31m", "a" * 10_000, "", "   ",
                                  "a" * 41, 7, None])
def test_bad_names_are_refused_with_one_line(name):
    with pytest.raises(coll.CollectError) as e:
        coll.check_name(name)
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_names_are_tidied():
    assert coll.check_name("  Zoë   van Dijk ") == "Zoë van Dijk"
    assert coll.same_person("Ann", "ANN") and not coll.same_person("Ann", "Anne")


def test_symlinked_file_is_not_followed(tmp_path):
    outside = tmp_path / "outside.ndjson"
    outside.write_text("")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / coll.DECISIONS).symlink_to(outside)
    with pytest.raises(OSError):
        coll.append_record(tmp_path / "c" / coll.DECISIONS, {"a": 1})
    assert outside.read_text() == ""


def test_export_kaggle_csv_holds_the_drawings_prepare_makes_of_the_raw_lines(reviewed, tmp_path):
    """Exported rows read back (Kaggle reader) as exactly the drawings `prepare` makes of the collected raw
    lines, with their key_id, word, country, recognized and timestamp; a missing country stays empty."""
    from doodle.drawing.strokes import simplify_raw
    from doodle.store.readers import read_csv

    items, _ = coll.read_drawings(reviewed)
    items[0] = coll.Collected(**{**items[0].__dict__, "countrycode": ""})
    res = coll.export(items, tmp_path / "csv", "kaggle-csv", WORDS)
    assert res == {"per_word": {"bear": 3, "crab": 3}, "written": 6, "unknown_word": 0}
    for word in ["bear", "crab"]:
        path = tmp_path / "csv" / f"{word}.csv"
        assert path.read_text().startswith("countrycode,drawing,key_id,recognized,timestamp,word\n")
        [(batch, rejects)] = list(read_csv(path))
        assert not rejects and len(batch) == 3
        for i, key in enumerate(batch.key_id):
            it = next(it for it in items if it.key_id == key)
            want = simplify_raw(it.drawing())
            np.testing.assert_array_equal(batch.drawing(i).xy, want.xy)
            np.testing.assert_array_equal(batch.drawing(i).ends, want.ends)
            assert (batch.word[i], batch.countrycode[i]) == (word, it.countrycode)
            assert batch.timestamp[i] == it.timestamp.removesuffix(" UTC")
    assert (tmp_path / "csv" / "bear.csv").read_text().splitlines()[1].startswith(',"[[[')  # no country
    with pytest.raises(coll.CollectError, match="not an empty folder"):
        coll.export(items, tmp_path / "csv", "ndjson", WORDS)


def test_collected_cli_stats_and_accepted_export(reviewed, tmp_path, capsys):
    from helpers import command_module

    tool = command_module(ROOT / "tools" / "collected.py")
    assert tool.main(["stats", "--collected", str(reviewed), "--json"]) == 0
    out = capsys.readouterr()
    s = json.loads(out.out)
    assert s["per_status"] == {"accepted": 2, "rejected": 2, "unreviewed": 2} and s["problems"] == 1
    assert "_decisions.ndjson line 6" in out.err
    assert tool.main(["export", "--collected", str(reviewed), "--to", "ndjson", "--accepted",
                      "--out", str(tmp_path / "nd")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["written"], res["left_out_by_review"]) == (2, 4)
    got = [json.loads(line) for p in sorted((tmp_path / "nd").iterdir()) for line in p.read_text().splitlines()]
    assert sorted(r["key_id"] for r in got) == [str(10**18), str(10**18 + 1)] and got[0]["author"] == "ann"
    assert tool.main(["stats", "--collected", str(reviewed)]) == 0
    assert "accepted" in capsys.readouterr().out
    for argv in (["export", "--collected", str(reviewed), "--to", "ndjson", "--out", str(reviewed / "x")],
                 ["stats", "--collected", str(tmp_path / "missing")]):
        assert cli.run(tool.main, argv) == 2
    assert not (reviewed / "x").exists()
