"""Review of collected drawings: the queue of drawings nobody has judged yet, and the decisions on them.

Decisions are appended (locked, one line each) to `<root>/_decisions.ndjson` (`doodle.store.collected`):
{"key_id", "decision": "accept"|"reject", "reviewer", "reason", "time"}; nothing is rewritten, the latest
decision for a key_id wins. A reviewer never judges their own drawings, and a key_id that is not in the
folder is refused, so the file holds only decisions on drawings that exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from doodle.store import collected as coll
from doodle.store.collected import Collected, CollectError


@dataclass(frozen=True)
class Queue:
    """Drawings to review (oldest first), and how many were left out of it and why."""

    items: list[Collected]
    own: int  # unreviewed drawings by the reviewer: someone else reviews them
    reviewed: int
    problems: list[str]  # unreadable lines of the drawing and decision files


def queue(root: str | Path, reviewer: str, word: str | None = None) -> Queue:
    """The folder's unreviewed drawings not drawn by `reviewer` (of `word` when given), oldest first."""
    reviewer = coll.check_name(reviewer)
    items, problems = coll.read_drawings(root)
    latest, bad = coll.read_decisions(root)
    todo = [it for it in items if it.key_id not in latest and (word is None or it.word == word)]
    own = [it for it in todo if coll.same_person(it.author, reviewer)]
    todo = [it for it in todo if not coll.same_person(it.author, reviewer)]
    todo.sort(key=lambda it: (it.timestamp, it.key_id))
    return Queue(todo, len(own), sum(it.key_id in latest for it in items), problems + bad)


def decide(root: str | Path, key_id: int, reviewer: str, decision: str, reason: str = "",
           when: datetime | None = None) -> dict:
    """Append a decision on drawing `key_id` by `reviewer`; returns the record. Refused (CollectError): an
    unknown decision or key_id, a bad name or reason, a reviewer judging their own drawing."""
    reviewer = coll.check_name(reviewer)
    if decision not in coll.DECISION_VALUES:
        raise CollectError(f"decision {str(decision)[:20]!r}: expected one of {', '.join(coll.DECISION_VALUES)}")
    reason = coll.clean_text(reason, "reason", coll.MAX_REASON, required=False)
    try:
        key_id = coll.parse_key_id(key_id)
    except ValueError:
        raise CollectError(f"key_id {str(key_id)[:25]!r}: not a key_id (up to 19 digits)") from None
    items, _ = coll.read_drawings(root)
    found = next((it for it in items if it.key_id == key_id), None)
    if found is None:
        raise CollectError(f"key_id {str(key_id)[:25]}: no such drawing in {root}")
    if coll.same_person(found.author, reviewer):
        raise CollectError(f"{reviewer} drew key_id {key_id}: someone else has to review it")
    when = when or datetime.now(UTC)
    record = {"key_id": str(key_id), "decision": decision, "reviewer": reviewer, "reason": reason,
              "time": when.strftime("%Y-%m-%d %H:%M:%S.%f UTC"), "word": found.word}
    coll.mark_folder(root)
    return coll.append_record(Path(root) / coll.DECISIONS, record)
