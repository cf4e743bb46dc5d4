"""What `prepare` is asked to do (`PrepareOptions`) and what it found in each file (`FileResult`).

Shared by `prepare` (which fills them) and `merge` (which writes them into the summary), so neither of the
two imports the other.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from doodle.drawing.strokes import DEFAULT_LIMITS, Limits
from doodle.store.line_blocks import CHUNK_BYTES


@dataclass
class PrepareOptions:
    classes: list[str]
    all_known: set[str]  # words that are real classes, selected or not (others are rejected)
    n_folds: int = 5
    limits: Limits = DEFAULT_LIMITS
    chunk_bytes: int = CHUNK_BYTES
    collected: str = "accepted"  # which drawings of a collected folder to keep: accepted, all or none
    # per collected folder (resolved path) that is filtered: key_id -> its latest decision ("accept"/"reject")
    decisions: dict[str, dict[int, str]] = field(default_factory=dict)
    # input files (as their rows' `source`) whose drawings are train-only (fold -1): pseudo-label folders'
    train_only: set[str] = field(default_factory=set)


@dataclass
class FileResult:
    path: str
    rows: int = 0
    kept: int = 0
    filtered: int = 0
    rejected: int = 0
    per_reason: Counter = field(default_factory=Counter)
    has_time: bool = False
    left_out: Counter = field(default_factory=Counter)  # collected drawings not kept: unreviewed / rejected
