"""Stream any mix of drawing files into a store, in parallel over groups of files, with bounded memory.

The sorted input files are cut into contiguous groups (one group with one worker, a few per worker
otherwise, balanced by size); each group becomes a shard written chunk by chunk by one worker. The merge
then copies the shards into the final arrays slice by slice, keeping the first copy (in file order, then
line order) of every key_id; a lone shard without repeats is moved into place instead of copied. Memory is
bounded by the chunk and slice sizes, plus about 24 bytes per drawing while repeated key_ids are found.

Every input row ends as exactly one of: kept; rejected (in rejects.csv with file, 1-based line, key_id and
reason); a duplicate (in rejects.csv as `duplicate_key_id`); or filtered (a real class that `classes` did
not select; not listed). summary.json's counts add up: rows = kept + rejected + duplicates + filtered.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing as mp
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from itertools import repeat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from doodle.readers import (
    FORMATS,
    Batch,
    FileFormatError,
    Reject,
    concat_batches,
    parse_csv_header,
    read_file,
)
from doodle.store import ARRAYS, FORMAT_VERSION, ArrayAppender, array_path, fold_of, open_array, ranges
from doodle.strokes import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

SHARD_ARRAYS = ["xy", "t", "stroke_len", "pt_off", "st_off", "key_id", "label", "raw"]
NON_DRAWING_CSV = {"sample_submission.csv", "rejects.csv"}
REJECT_FIELDS = ["file", "line", "key_id", "reason", "detail"]
MERGE_SLICE = 200_000
BUFFER_ROWS = 5_000
BUFFER_POINTS = 500_000
GROUPS_PER_WORKER = 4


@dataclass
class PrepareOptions:
    classes: list[str]
    all_known: set[str]  # words that are real classes, selected or not (others are rejected)
    n_folds: int = 5
    limits: Limits = DEFAULT_LIMITS
    chunk_bytes: int = 8 << 20


@dataclass
class FileResult:
    path: str
    rows: int = 0
    kept: int = 0
    filtered: int = 0
    rejected: int = 0
    per_reason: Counter = field(default_factory=Counter)
    has_time: bool = False


def find_inputs(src: list[Path], out: Path) -> tuple[list[Path], list[dict]]:
    """Drawing files under the given files/folders (each folder sorted), and the files deliberately skipped.

    Every CSV header is read here, so a file that cannot be used at all stops the run before any work with a
    `FileFormatError` naming it. Skipped with a reason: label files and submissions met in a folder, and
    Kaggle's unlabelled test CSV (for src/predict.py). Files of an existing store are ignored.
    """
    out_real = Path(out).resolve()
    files, skipped = [], []
    for root in map(Path, src):
        if root.is_file():
            found, scanned = [root], False
        elif root.is_dir():
            found, scanned = _scan(root, out_real), True
        else:
            raise FileNotFoundError(f"{root}: no such file or folder")
        for p in found:
            why = _skip_reason(p, scanned)
            if why:
                skipped.append({"file": str(p), "reason": why})
            else:
                files.append(p)
    return files, skipped


def _scan(root: Path, out_real: Path) -> list[Path]:
    """Drawing files under a folder, sorted, leaving out any store's own files (rejects.csv...)."""
    @cache
    def excluded(folder: Path) -> bool:
        real = folder.resolve()
        return (folder / "store.json").exists() or real == out_real or out_real in real.parents

    return [p for p in sorted(root.rglob("*"))
            if p.suffix in FORMATS and p.is_file() and not any(map(excluded, [p.parent, *p.parent.parents]))]


def _skip_reason(path: Path, scanned: bool) -> str:
    """Why a candidate file is not read ('' = read it); raises FileFormatError for an unusable CSV."""
    if scanned and path.name in NON_DRAWING_CSV:
        return "not a drawing file (labels or submission)"
    if path.suffix != ".csv":
        return ""
    with open(path, "rb") as f:
        first = f.readline()
    if scanned and first.decode("utf-8", "replace").strip().split(",") == ["key_id", "word"]:
        return "not a drawing file (labels or submission)"
    if "word" not in parse_csv_header(path, first):
        return "no word column (a test file); pass it to src/predict.py instead"
    return ""


def _label(words: list, opts: PrepareOptions, index: dict) -> tuple[np.ndarray, dict[int, str]]:
    """Class index per word (-1 when none), and why each unlabelled row is not kept ('filtered' = not selected)."""
    labels = np.fromiter(map(index.get, words, repeat(-1)), dtype=np.int16, count=len(words))
    why = {}
    for i in np.flatnonzero(labels < 0).tolist():
        w = words[i]
        why[i] = "missing_word" if w is None else "filtered" if w in opts.all_known else "unknown_word"
    return labels, why


class _ShardWriter:
    """One shard folder: the store's arrays (not fsynced: they are temporary), meta.parquet, rejects.csv.

    Batches are buffered up to BUFFER_ROWS drawings or BUFFER_POINTS points and written together: writing
    each small file's batch (nine arrays and a parquet row group) costs more than parsing it.
    """

    def __init__(self, shard: Path):
        self.root = shard
        self.arrays = ArrayAppender(shard, SHARD_ARRAYS, sync=False)
        self.meta: pq.ParquetWriter | None = None
        self.pending: list[tuple[Batch, np.ndarray, str]] = []
        self.pending_rows = self.pending_points = 0
        self.rejects_file = open(shard / "rejects.csv", "w", newline="")
        self.rejects = csv.writer(self.rejects_file)
        self.n_points = self.n_strokes = 0

    def append(self, b: Batch, labels: np.ndarray, source: str) -> None:
        """Queue the rows of `b` (with their class indices) read from file `source`."""
        self.pending.append((b, labels, source))
        self.pending_rows += len(b)
        self.pending_points += len(b.xy)
        if self.pending_rows >= BUFFER_ROWS or self.pending_points >= BUFFER_POINTS:
            self.flush()

    def flush(self) -> None:
        if not self.pending_rows:
            self.pending = []
            return
        b = concat_batches([p[0] for p in self.pending])
        a = self.arrays
        a.append("xy", b.xy)
        a.append("t", b.t)
        a.append("stroke_len", b.stroke_len)
        st_off = np.concatenate([[0], np.cumsum(b.n_strokes, dtype=np.int64)])
        pt_off = np.concatenate([[0], np.cumsum(b.stroke_len, dtype=np.int64)])[st_off]
        a.append("st_off", self.n_strokes + st_off[:-1])
        a.append("pt_off", self.n_points + pt_off[:-1])
        self.n_strokes += len(b.stroke_len)
        self.n_points += len(b.xy)
        a.append("key_id", b.key_id)
        a.append("label", np.concatenate([p[1] for p in self.pending]))
        a.append("raw", b.raw)
        table = _meta_table(b, [src for part, _, src in self.pending for _ in range(len(part))])
        self.meta = self.meta or pq.ParquetWriter(self.root / "meta.parquet", table.schema)
        self.meta.write_table(table)
        self.pending, self.pending_rows, self.pending_points = [], 0, 0

    def close(self) -> dict[str, int]:
        """Finish the shard (offset sentinels appended); returns the element count of each array."""
        self.flush()
        self.arrays.append("pt_off", np.array([self.n_points]))
        self.arrays.append("st_off", np.array([self.n_strokes]))
        self.arrays.close()
        if self.meta:
            self.meta.close()
        self.rejects_file.close()
        return dict(self.arrays.counts)


def _meta_table(b: Batch, source: list[str]) -> pa.Table:
    return pa.table({
        "key_id": pa.array(b.key_id, pa.int64()),
        "countrycode": pa.array(b.countrycode, pa.string()),
        "recognized": pa.array(b.recognized, pa.int8()),
        "timestamp": pa.array(b.timestamp, pa.string()),
        "source": pa.array(source, pa.string()),
        "line": pa.array(b.line, pa.int64()),
    })


def _read_one(path: Path, w: _ShardWriter, opts: PrepareOptions, index: dict) -> FileResult:
    """Stream one file into the shard: rejects listed (in line order), unselected classes counted, the rest kept."""
    res = FileResult(str(path))
    for batch, rejects in read_file(path, opts.limits, opts.chunk_bytes):
        res.rows += len(batch) + len(rejects)
        labels, why = _label(batch.word, opts, index)
        rejects += [Reject(int(batch.line[i]), str(batch.key_id[i]), reason, repr(batch.word[i])[:60])
                    for i, reason in why.items() if reason != "filtered"]
        for r in sorted(rejects, key=lambda r: r.line):
            w.rejects.writerow([res.path, r.line, r.key_id, r.reason, r.detail])
            res.per_reason[r.reason] += 1
        res.filtered += sum(reason == "filtered" for reason in why.values())
        if why:
            keep = labels >= 0
            batch, labels = batch.select(keep), labels[keep]
        res.kept += len(batch)
        res.has_time |= bool(batch.raw.any())
        w.append(batch, labels, res.path)
    res.rejected = sum(res.per_reason.values())
    return res


def prepare_group(paths: list[Path], shard: Path, opts: PrepareOptions) -> list[FileResult]:
    """Files (in order) -> one shard folder (arrays, meta.parquet, rejects.csv, counts.json)."""
    index = {w: i for i, w in enumerate(opts.classes)}
    shard.mkdir(parents=True, exist_ok=True)
    w = _ShardWriter(shard)
    results = [_read_one(Path(p), w, opts, index) for p in paths]
    (shard / "counts.json").write_text(json.dumps({k: int(v) for k, v in w.close().items()}))
    return results


def _run_group(args) -> list[FileResult]:
    return prepare_group(*args)


def _groups(files: list[Path], workers: int) -> list[list[Path]]:
    """Contiguous runs of files of about equal size: one run for one worker, a few per worker otherwise."""
    n = 1 if workers <= 1 else min(len(files), GROUPS_PER_WORKER * workers)
    sizes = np.cumsum([p.stat().st_size + 1 for p in files], dtype=np.float64)
    cuts = np.searchsorted(sizes, sizes[-1] * np.arange(1, n) / n, side="right")
    return [g for g in np.split(np.array(files, dtype=object), cuts) if len(g)]


def prepare(src: list[Path], out: Path, opts: PrepareOptions, workers: int = 1) -> dict:
    """Prepare a store at `out` from files/folders `src`; returns the summary (also in summary.json).

    An existing store at `out` is replaced; any other non-empty folder there is refused, not deleted.
    """
    out = Path(out)
    files, skipped = find_inputs(src, out)
    if not files:
        raise FileNotFoundError(f"no .csv or .ndjson drawing files under {', '.join(map(str, src))}")
    _check_replaceable(out, files)
    tmp = out / ".shards"
    if out.exists():
        shutil.rmtree(out)
    tmp.mkdir(parents=True)
    jobs = [(list(g), tmp / f"{i:05d}", opts) for i, g in enumerate(_groups(files, workers))]
    bar = tqdm(total=len(files), desc="prepare", unit="file", leave=False)
    results: list[FileResult] = []
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            for r in pool.imap(_run_group, jobs):
                results += r
                bar.update(len(r))
    else:
        for j in jobs:
            results += _run_group(j)
            bar.update(len(j[0]))
    bar.close()
    summary = merge_shards([j[1] for j in jobs], results, out, opts)
    summary["skipped_files"] = skipped
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(tmp)
    return summary


STORE_FILES = {array_path(Path(), name).name for name in ARRAYS} | {
    ".shards", "meta.parquet", "rejects.csv", "summary.json", "store.json"}


def _check_replaceable(out: Path, files: list[Path]) -> None:
    """Refuse an output folder that holds inputs or anything but a (possibly half-written) store."""
    real = out.resolve()
    inside = [p for p in files if real in p.resolve().parents]
    if inside:
        raise ValueError(f"{out}: holds input file {inside[0]}; choose another output folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in STORE_FILES) if out.is_dir() else []
    if foreign:
        raise ValueError(f"{out}: exists and holds {foreign[:3]}, not a store; refusing to replace it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")


def _first_occurrences(shards: list[Path]) -> list[np.ndarray]:
    """Per shard, a mask of rows whose key_id was not seen in an earlier row (shard order, then row)."""
    keys = [np.fromfile(array_path(s, "key_id"), dtype=np.int64) for s in shards]
    sizes = np.cumsum([len(k) for k in keys])[:-1]
    allk = np.concatenate(keys)
    del keys
    order = np.argsort(allk, kind="stable")  # equal keys keep their input order: the first one wins
    allk = allk[order]
    mask = np.ones(len(allk), dtype=bool)
    mask[order[1:][allk[1:] == allk[:-1]]] = False
    return np.split(mask, sizes)


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
        if len(shards) == 1 and keep_masks[0].all():
            n, n_st, n_pts = _adopt_shard(shards[0], out, has_time, opts.n_folds)
        else:
            n, n_st, n_pts = _copy_shards(shards, keep_masks, out, has_time, opts.n_folds, rej)
    labels = open_array(out, "label", n)
    per_class = np.zeros(len(opts.classes), np.int64)
    for a in range(0, n, MERGE_SLICE):
        per_class += np.bincount(labels[a : a + MERGE_SLICE], minlength=len(opts.classes))
    duplicates = sum(int((~k).sum()) for k in keep_masks)
    return _summary(results, out, opts, per_class, duplicates, n, n_st, n_pts, has_time)


def _shard_arrays(shard: Path) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    counts = json.loads((shard / "counts.json").read_text())
    return counts, {k: open_array(shard, k, counts[k]) for k in SHARD_ARRAYS}


def _adopt_shard(shard: Path, out: Path, has_time: bool, n_folds: int) -> tuple[int, int, int]:
    """A lone shard without repeats already is the store: move its files, add the folds."""
    counts, src = _shard_arrays(shard)
    names = ["xy", "stroke_len", "pt_off", "st_off", "key_id", "label", "raw"] + (["t"] if has_time else [])
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


def _copy_shards(shards, keep_masks, out, has_time, n_folds, rej) -> tuple[int, int, int]:
    """Copy the kept rows of every shard, slice by slice, into the final arrays and meta.parquet."""
    names = ["xy", "stroke_len", "pt_off", "st_off", "key_id", "label", "fold", "raw"] + (["t"] if has_time else [])
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
            if has_time:
                dst.append("t", src["t"][pt_rng])
            dst.append("stroke_len", src["stroke_len"][st_rng])
            dst.append("pt_off", n_pts + np.concatenate([[0], np.cumsum(p1 - p0)[:-1]]) if len(idx) else idx)
            dst.append("st_off", n_st + np.concatenate([[0], np.cumsum(s1 - s0)[:-1]]) if len(idx) else idx)
            n_pts += int((p1 - p0).sum())
            n_st += int((s1 - s0).sum())
            keys = np.asarray(src["key_id"][idx])
            dst.append("key_id", keys)
            dst.append("label", src["label"][idx])
            dst.append("fold", fold_of(keys, n_folds))
            dst.append("raw", src["raw"][idx])
            table = mb.filter(pa.array(k))
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
    assert rows == n + rejected + duplicates + filtered, "row accounting does not add up"
    manifest = {"format_version": FORMAT_VERSION, "n_drawings": int(n), "n_strokes": int(n_st),
                "n_points": int(n_pts), "classes": opts.classes, "n_folds": opts.n_folds,
                "fold_hash": "splitmix64(key_id) % n_folds", "has_time": bool(has_time)}
    (out / "store.json").write_text(json.dumps(manifest, indent=1))
    return {
        "rows": rows, "kept": int(n), "rejected": rejected, "duplicates": duplicates, "filtered": filtered,
        "per_class": {w: int(c) for w, c in zip(opts.classes, per_class, strict=True) if c},
        "per_reason": dict(sorted(per_reason.items())),
        "files": [{"file": r.path, "rows": r.rows, "kept_before_dedup": r.kept, "rejected": r.rejected,
                   "filtered": r.filtered} for r in results],
    }


def load_class_list(spec: str | Path | list | None, default: list[str]) -> list[str]:
    """A class list from a list, a comma-separated string, or a file of one word per line."""
    if spec is None or spec == "all":
        return list(default)
    if isinstance(spec, (list, tuple)):
        words = [str(w).strip() for w in spec]
    elif Path(str(spec)).is_file():
        words = [w.strip() for w in Path(spec).read_text().splitlines()]
    else:
        words = [w.strip() for w in str(spec).split(",")]
    words = [w.replace("_", " ") for w in words if w]
    if not words:
        raise ValueError(f"class list {spec!r} is empty")
    return words


__all__ = ["PrepareOptions", "prepare", "find_inputs", "load_class_list", "FileFormatError"]
