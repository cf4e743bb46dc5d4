"""Review of collected drawings (doodle.app.review): the queue, decisions and their refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest_app import RAW

from doodle import resources
from doodle.app import labels, review
from doodle.drawing.pen import parse_pen, pen_message
from doodle.store import collected as coll

WORDS = resources.kaggle_classes()
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def pen_drawing(k: int):
    rec = json.loads((RAW / sorted(p.name for p in RAW.glob("*.ndjson"))[0]).read_text().splitlines()[k])
    return parse_pen(pen_message(rec["drawing"])).drawing


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """ann draws bear (09:02), crab (09:00), bear (09:01); bob draws crab (09:03): saved out of time order."""
    root = tmp_path / "collected"
    keys, make = [], labels.make_record
    for k, (word, who, minute) in enumerate([("bear", "ann", 2), ("crab", "ann", 0), ("bear", "ann", 1),
                                             ("crab", "bob", 3)]):
        when = T0 + timedelta(minutes=minute)
        monkeypatch.setattr(labels, "make_record", lambda *a, _w=when, **kw: make(*a[:5], _w, **kw))
        _, rec = labels.append_drawing(root, WORDS, word, pen_drawing(k), author=who)
        keys.append(int(rec["key_id"]))
    return root, keys


def test_queue_is_oldest_first_without_the_reviewers_own(folder):
    root, keys = folder
    q = review.queue(root, "bob")
    assert [it.key_id for it in q.items] == [keys[1], keys[2], keys[0]] and q.own == 1 and q.reviewed == 0
    assert [it.key_id for it in review.queue(root, "bob", word="bear").items] == [keys[2], keys[0]]
    assert [it.key_id for it in review.queue(root, "ANN").items] == [keys[3]] and review.queue(root, "ann").own == 3
    assert all(it.author == "ann" for it in q.items)


def test_decisions_are_appended_and_the_latest_wins(folder):
    root, keys = folder
    review.decide(root, keys[1], "bob", "accept")
    review.decide(root, keys[0], "bob", "reject", "not a bear")
    review.decide(root, keys[1], "cy", "reject", "  too   small ")
    lines = (root / coll.DECISIONS).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2]) | {"time": ""} == {
        "key_id": str(keys[1]), "decision": "reject", "reviewer": "cy", "reason": "too small", "time": "",
        "word": "crab"}
    latest, problems = coll.read_decisions(root)
    assert not problems and {k: d.decision for k, d in latest.items()} == {keys[0]: "reject", keys[1]: "reject"}
    q = review.queue(root, "bob")
    assert [it.key_id for it in q.items] == [keys[2]] and q.reviewed == 2


def test_refusals_write_nothing(folder):
    root, keys = folder
    before = (root / coll.DECISIONS).read_bytes()
    refusals = [
        ((keys[0], "ann", "accept"), "someone else has to review it"),
        ((keys[0], "ANN ", "reject", "mine"), "someone else"),
        ((123, "bob", "accept"), "no such drawing"),
        ((10**18 + 7, "bob", "accept"), "no such drawing"),
        ((keys[0], "bob", "maybe"), "expected one of accept, reject"),
        ((keys[0], "", "accept"), "name is empty"),
        ((keys[0], "../bob", "accept"), "not allowed"),
        ((keys[0], "bob", "reject", "x" * 10_000), "at most 200"),
        ((keys[0], "bob", "reject", "a\x00b"), "not allowed"),
        (("1; rm -rf /", "bob", "accept"), "key_id"),
    ]
    for args, message in refusals:
        with pytest.raises(coll.CollectError, match=message.replace(" ", r"\s")) as e:
            review.decide(root, *args)
        assert "\n" not in str(e.value)
    assert (root / coll.DECISIONS).read_bytes() == before == b""


def test_a_torn_decision_line_is_reported_not_fatal(folder):
    root, keys = folder
    review.decide(root, keys[0], "bob", "accept")
    with open(root / coll.DECISIONS, "ab") as f:
        f.write(b'{"key_id": "')
    review.decide(root, keys[1], "bob", "accept")  # lands on a fresh line
    q = review.queue(root, "bob")
    assert [it.key_id for it in q.items] == [keys[2]] and len(q.problems) == 1 and "line 2" in q.problems[0]


def test_saves_carry_the_author_and_refuse_bad_names(tmp_path):
    _, rec = labels.append_drawing(tmp_path / "c", WORDS, "bear", pen_drawing(0), author=" Zoë ")
    assert rec["author"] == "Zoë" and coll.is_collected_folder(tmp_path / "c")
    for name in ["", "../x", "a" * 10_000, "bo\x07b"]:
        with pytest.raises(coll.CollectError):
            labels.append_drawing(tmp_path / "c", WORDS, "bear", pen_drawing(0), author=name)
    assert len((tmp_path / "c" / "bear.ndjson").read_text().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["_decisions.ndjson", "bear.ndjson"]
