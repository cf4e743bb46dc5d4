"""Shards -> the final store: keep the first copy of every key_id, add the folds, write the summary.

Each worker of `prepare` leaves a shard (the store's arrays for its files, their meta.parquet and
rejects.csv). The merge copies the kept rows slice by slice (`MERGE_SLICE` drawings at a time), so memory
stays bounded whatever the input; a lone shard without repeats is moved into place instead of copied.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from doodle.drawing.flat import ranges
from doodle.store.format import FORMAT_VERSION, ArrayAppender, array_path, fold_of, open_array
from doodle.store.options import FileResult, PrepareOptions
from doodle.store.sources import TRAIN_ONLY_FOLD

SHARD_ARRAYS = ["xy", "t", "stroke_len", "pt_off", "st_off", "key_id", "label", "raw"]
REJECT_FIELDS = ["file", "line", "key_id", "reason", "detail"]
MERGE_SLICE = 200_000


DEDUP_BUCKET = 2_000_000  # key_ids sorted at a time: ~64 MB of work arrays, whatever the input's size


def _first_occurrences(shards: list[Path], bucket_rows: int = DEDUP_BUCKET) -> list[np.ndarray]:
    """Per shard, a mask of rows whose key_id was not seen in an earlier row (shard order, then row).

    Memory: the masks (1 byte a row) plus one bucket's work arrays. The memory-mapped key_ids are read in
    `MERGE_SLICE` slices once per bucket; a bucket is the rows whose hashed key_id falls in one of
    ceil(rows / bucket_rows) equal ranges (all copies of a key_id share a bucket), sorted there alone.
    A single sort of every key_id would hold ~25 bytes a row (1.2 GB at Kaggle's 49.7M).
    """
    sizes = [json.loads((s / "counts.json").read_text())["key_id"] for s in shards]
    keys = [open_array(s, "key_id", n) for s, n in zip(shards, sizes, strict=True)]
    starts = np.cumsum([0, *sizes])
    mask = np.ones(int(starts[-1]), dtype=bool)
    n_buckets = max(1, -(-len(mask) // bucket_rows))
    for b in range(n_buckets):
        found_keys, found_rows = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for k, first in zip(keys, starts[:-1], strict=True):
            for a in range(0, len(k), MERGE_SLICE):
                part = np.asarray(k[a : a + MERGE_SLICE])
                rows = np.flatnonzero(_bucket_of(part, n_buckets) == b)
                found_keys.append(part[rows])
                found_rows.append(rows + (first + a))
        bk, rows = np.concatenate(found_keys), np.concatenate(found_rows)
        order = np.argsort(bk, kind="stable")  # rows are in input order: of equal keys, the first one wins
        bk = bk[order]
        mask[rows[order[1:][bk[1:] == bk[:-1]]]] = False
    return np.split(mask, starts[1:-1])


def _bucket_of(keys: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket 0 .. n_buckets-1 of each key_id: Fibonacci hashing (spreads any set of keys evenly)."""
    with np.errstate(over="ignore"):
        h = keys.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return ((h >> np.uint64(32)) * np.uint64(n_buckets)) >> np.uint64(32)


def merge_shards(shards: list[Path], results: list[FileResult], out: Path, opts: PrepareOptions) -> dict:
    """Shards -> the final store, dropping repeated key_ids (listed in rejects.csv); returns the summary."""
    keep_masks = _first_occurrences(shards)
    has_time = any(r.has_time for r in results)
    with open(out / "rejects.csv", "w", newline="") as rf:
        rej = csv.writer(rf)
        rej.writerow(REJECT_FIELDS)
        for shard in shards:
            with open(shard / "rejects.csv", newline="") as sf:
                rej.writerows(csv.reader(sf))
        if len(shards) == 1 and keep_masks[0].all() and not opts.train_only:
            n, n_st, n_pts = _adopt_shard(shards[0], out, has_time, opts.n_folds)
        else:
            n, n_st, n_pts = _copy_shards(shards, keep_masks, out, has_time, opts, rej)
    labels = open_array(out, "label", n)
    per_class = np.zeros(len(opts.classes), np.int64)
    for a in range(0, n, MERGE_SLICE):
        per_class += np.bincount(labels[a : a + MERGE_SLICE], minlength=len(opts.classes))
    duplicates = sum(int((~k).sum()) for k in keep_masks)
    return _summary(results, out, opts, per_class, duplicates, n, n_st, n_pts, has_time)


def _kept_arrays(has_time: bool) -> list[str]:
    """The shard arrays the store keeps: all of them, less the times when no drawing has any."""
    return [n for n in SHARD_ARRAYS if n != "t" or has_time]


def _shard_arrays(shard: Path) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    counts = json.loads((shard / "counts.json").read_text())
    return counts, {k: open_array(shard, k, counts[k]) for k in SHARD_ARRAYS}


def _adopt_shard(shard: Path, out: Path, has_time: bool, n_folds: int) -> tuple[int, int, int]:
    """A lone shard without repeats already is the store: move its files, add the folds."""
    counts, src = _shard_arrays(shard)
    names = _kept_arrays(has_time)
    for name in names:
        os.replace(array_path(shard, name), array_path(out, name))
    if (shard / "meta.parquet").exists():
        os.replace(shard / "meta.parquet", out / "meta.parquet")
    n = counts["key_id"]
    dst = ArrayAppender(out, ["fold"])
    for a in range(0, n, MERGE_SLICE):
        dst.append("fold", fold_of(src["key_id"][a : a + MERGE_SLICE], n_folds))
    dst.close()
    return n, counts["stroke_len"], counts["xy"]


def _folds(keys: np.ndarray, sources: pa.Array, opts: PrepareOptions) -> np.ndarray:
    """Each kept drawing's fold: a hash of its key_id, or TRAIN_ONLY_FOLD for a train-only file's drawings."""
    fold = fold_of(keys, opts.n_folds)
    if opts.train_only:
        mine = np.asarray(pc.is_in(sources, value_set=pa.array(sorted(opts.train_only), pa.string())), bool)
        fold[mine] = TRAIN_ONLY_FOLD
    return fold


def _copy_shards(shards, keep_masks, out, has_time, opts: PrepareOptions, rej) -> tuple[int, int, int]:
    """Copy the kept rows of every shard, slice by slice, into the final arrays and meta.parquet."""
    names = [*_kept_arrays(has_time), "fold"]
    dst = ArrayAppender(out, names)
    n_pts = n_st = 0
    meta_writer = None
    for shard, keep in zip(shards, keep_masks, strict=True):
        counts, src = _shard_arrays(shard)
        meta_rows = pq.ParquetFile(shard / "meta.parquet").iter_batches(MERGE_SLICE) if len(keep) else iter(())
        for a in range(0, len(keep), MERGE_SLICE):
            b = min(a + MERGE_SLICE, len(keep))
            k = keep[a:b]
            mb = pa.Table.from_batches([next(meta_rows)])
            assert mb.num_rows == b - a, "meta and arrays disagree"
            for i in np.flatnonzero(~k):
                rej.writerow([mb["source"][int(i)].as_py(), mb["line"][int(i)].as_py(), int(src["key_id"][a + i]),
                              "duplicate_key_id", "kept the first copy"])
            idx = a + np.flatnonzero(k)
            s0, s1 = src["st_off"][idx], src["st_off"][idx + 1]
            p0, p1 = src["pt_off"][idx], src["pt_off"][idx + 1]
            if k.all():  # the usual case: one contiguous run, no index arrays needed
                st_rng, pt_rng = slice(s0[0], s1[-1]), slice(p0[0], p1[-1])
            else:
                st_rng, pt_rng = ranges(s0, s1), ranges(p0, p1)
            dst.append("xy", src["xy"][pt_rng])
            if has_time:  # an untimed shard's t is empty: its points have no time
                dst.append("t", src["t"][pt_rng] if counts["t"] else np.full(int((p1 - p0).sum()), -1, np.int32))
            dst.append("stroke_len", src["stroke_len"][st_rng])
            dst.append("pt_off", n_pts + np.concatenate([[0], np.cumsum(p1 - p0)[:-1]]) if len(idx) else idx)
            dst.append("st_off", n_st + np.concatenate([[0], np.cumsum(s1 - s0)[:-1]]) if len(idx) else idx)
            n_pts += int((p1 - p0).sum())
            n_st += int((s1 - s0).sum())
            keys = np.asarray(src["key_id"][idx])
            table = mb.filter(pa.array(k))
            dst.append("key_id", keys)
            dst.append("label", src["label"][idx])
            dst.append("fold", _folds(keys, table["source"], opts))
            dst.append("raw", src["raw"][idx])
            meta_writer = meta_writer or pq.ParquetWriter(out / "meta.parquet", table.schema)
            meta_writer.write_table(table)
    n = dst.counts["key_id"]
    dst.append("pt_off", np.array([n_pts]))
    dst.append("st_off", np.array([n_st]))
    dst.close()
    if meta_writer:
        meta_writer.close()
    return n, n_st, n_pts


def _summary(results, out, opts, per_class, duplicates, n, n_st, n_pts, has_time) -> dict:
    per_reason = Counter()
    for r in results:
        per_reason.update(r.per_reason)
    rows = sum(r.rows for r in results)
    rejected = sum(r.rejected for r in results)
    filtered = sum(r.filtered for r in results)
    left_out = Counter()
    for r in results:
        left_out.update(r.left_out)
    assert rows == n + rejected + duplicates + filtered + left_out.total(), "row accounting does not add up"
    manifest = {"format_version": FORMAT_VERSION, "n_drawings": int(n), "n_strokes": int(n_st),
                "n_points": int(n_pts), "classes": opts.classes, "n_folds": opts.n_folds,
                "fold_hash": "splitmix64(key_id) % n_folds", "has_time": bool(has_time)}
    if opts.train_only:  # their drawings have fold -1: trained on in every fold, validated in none
        manifest["train_only_sources"] = sorted(opts.train_only)
    (out / "store.json").write_text(json.dumps(manifest, indent=1))
    return {
        "rows": rows, "kept": int(n), "rejected": rejected, "duplicates": duplicates, "filtered": filtered,
        "left_out": left_out.total(), "left_out_per_reason": dict(sorted(left_out.items())),
        "per_class": {w: int(c) for w, c in zip(opts.classes, per_class, strict=True) if c},
        "per_reason": dict(sorted(per_reason.items())),
        "files": [{"file": r.path, "rows": r.rows, "kept_before_dedup": r.kept, "rejected": r.rejected,
                   "filtered": r.filtered} for r in results],
    }
