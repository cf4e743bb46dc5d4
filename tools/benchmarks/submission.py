"""Time float16 test logits (112,199 x 340, Kaggle's test size) -> submission CSV -> validation."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from doodle import resources
from doodle.predict.submission import to_submission, validate_submission, write_submission

TEST_ROWS = 112_199


def run(args) -> Iterator[dict]:
    classes = resources.kaggle_classes()
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((TEST_ROWS, len(classes)), dtype=np.float32).astype(np.float16)
    key_id = rng.choice(10**15, TEST_ROWS, replace=False).astype(np.int64) + 9 * 10**15
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "submission.csv"
        t0 = time.perf_counter()
        write_submission(to_submission(logits, key_id, classes), path)
        t1 = time.perf_counter()
        validate_submission(path, key_id, classes)
        t2 = time.perf_counter()
    yield {"bench": "submission", "rows": TEST_ROWS, "seconds_write": round(t1 - t0, 3),
           "seconds_validate": round(t2 - t1, 3), "seconds_total": round(t2 - t0, 3)}
