"""Stream any mix of drawing files into a store, in parallel over files, with bounded memory.

Each input file becomes a shard (written chunk by chunk by one worker); the merge then copies the shards
into the final arrays slice by slice, keeping the first copy of every key_id. Memory is bounded by the
chunk and slice sizes, plus 8 bytes per drawing for the key_id de-duplication.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing as mp
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from doodle.readers import FORMATS, Batch, FileFormatError, read_csv_header, read_file
from doodle.store import FORMAT_VERSION, ArrayAppender, array_path, fold_of, open_array, ranges
from doodle.strokes import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

SHARD_ARRAYS = ["xy", "t", "stroke_len", "st_off", "key_id", "label", "raw"]
NON_DRAWING_CSV = {"sample_submission.csv", "rejects.csv"}
REJECT_FIELDS = ["file", "line", "key_id", "reason", "detail"]
MERGE_SLICE = 200_000


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
    skipped: str = ""


def find_inputs(src: list[Path], out: Path) -> tuple[list[Path], list[dict]]:
    """Drawing files under the given files/folders (sorted), and the files deliberately skipped."""
    files, skipped = [], []
    for root in src:
        root = Path(root)
        if root.is_file():
            files.append(root)
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such file or folder")
        for p in sorted(root.rglob("*")):
            if p.suffix not in FORMATS or not p.is_file():
                continue
            if any((d / "store.json").exists() for d in p.parents) or out.resolve() in p.resolve().parents:
                continue  # an existing store's own files (rejects.csv...)
            if p.name in NON_DRAWING_CSV or _is_label_file(p):
                skipped.append({"file": str(p), "reason": "not a drawing file (labels or submission)"})
                continue
            files.append(p)
    return files, skipped


def _is_label_file(path: Path) -> bool:
    """A `key_id,word` CSV (answers or a submission), found while scanning a folder."""
    if path.suffix != ".csv":
        return False
    with open(path, "rb") as f:
        head = f.readline().decode("utf-8", "replace").strip().split(",")
    return head == ["key_id", "word"]


def _label(words: list, opts: PrepareOptions, index: dict) -> tuple[np.ndarray, list[str | None]]:
    """Class index per word, and why a row cannot be used (None = fine, 'filtered' = not selected)."""
    labels = np.full(len(words), -1, np.int16)
    why: list[str | None] = []
    for i, w in enumerate(words):
        if w is None:
            why.append("missing_word")
        elif w in index:
            labels[i] = index[w]
            why.append(None)
        elif w in opts.all_known:
            why.append("filtered")
        else:
            why.append("unknown_word")
    return labels, why


def _select(b: Batch, keep: np.ndarray) -> Batch:
    """Rows `keep` (bool mask) of a batch."""
    pts = np.repeat(np.repeat(keep, b.n_strokes), b.stroke_len)
    strokes = np.repeat(keep, b.n_strokes)
    idx = np.flatnonzero(keep)
    return Batch(b.key_id[keep], [b.word[i] for i in idx], [b.countrycode[i] for i in idx],
                 b.recognized[keep], [b.timestamp[i] for i in idx], b.line[keep], b.xy[pts], b.t[pts],
                 b.stroke_len[strokes], b.n_strokes[keep], b.raw[keep])


def prepare_file(path: Path, shard: Path, opts: PrepareOptions) -> FileResult:
    """One input file -> one shard folder (arrays, meta.parquet, rejects.csv)."""
    res = FileResult(str(path))
    index = {w: i for i, w in enumerate(opts.classes)}
    if path.suffix == ".csv" and "word" not in read_csv_header(path):
        res.skipped = "no word column (a test file); pass it to src/predict.py instead"
        return res
    shard.mkdir(parents=True, exist_ok=True)
    out = ArrayAppender(shard, SHARD_ARRAYS)
    meta_writer = None
    n_strokes_total = 0
    with open(shard / "rejects.csv", "w", newline="") as rf:
        rej = csv.writer(rf)
        for batch, rejects in read_file(path, opts.limits, opts.chunk_bytes):
            res.rows += len(batch) + len(rejects)
            for r in rejects:
                rej.writerow([str(path), r.line, r.key_id, r.reason, r.detail])
                res.per_reason[r.reason] += 1
            labels, why = _label(batch.word, opts, index)
            for i, w in enumerate(why):
                if w not in (None, "filtered"):
                    rej.writerow([str(path), int(batch.line[i]), int(batch.key_id[i]), w,
                                  repr(batch.word[i])[:60]])
                    res.per_reason[w] += 1
            res.filtered += sum(w == "filtered" for w in why)
            keep = np.array([w is None for w in why], dtype=bool)
            batch, labels = _select(batch, keep), labels[keep]
            res.kept += len(batch)
            res.has_time |= bool(batch.raw.any())
            out.append("xy", batch.xy)
            out.append("t", batch.t)
            out.append("stroke_len", batch.stroke_len)
            out.append("st_off", n_strokes_total + np.concatenate([[0], np.cumsum(batch.n_strokes)[:-1]])
                       if len(batch) else np.zeros(0, np.int64))
            n_strokes_total += int(batch.n_strokes.sum())
            out.append("key_id", batch.key_id)
            out.append("label", labels)
            out.append("raw", batch.raw)
            table = _meta_table(batch, str(path))
            meta_writer = meta_writer or pq.ParquetWriter(shard / "meta.parquet", table.schema)
            meta_writer.write_table(table)
    out.close()
    if meta_writer:
        meta_writer.close()
    res.rejected = sum(res.per_reason.values())
    (shard / "counts.json").write_text(json.dumps({k: int(v) for k, v in out.counts.items()}))
    return res


def _meta_table(b: Batch, source: str) -> pa.Table:
    return pa.table({
        "key_id": pa.array(b.key_id, pa.int64()),
        "countrycode": pa.array(b.countrycode, pa.string()),
        "recognized": pa.array(b.recognized, pa.int8()),
        "timestamp": pa.array(b.timestamp, pa.string()),
        "source": pa.array([source] * len(b), pa.string()),
        "line": pa.array(b.line, pa.int64()),
    })


def _run_file(args) -> FileResult:
    path, shard, opts = args
    return prepare_file(path, shard, opts)


def prepare(src: list[Path], out: Path, opts: PrepareOptions, workers: int = 1) -> dict:
    """Prepare a store at `out` from files/folders `src`; returns the summary (also in summary.json)."""
    out = Path(out)
    files, skipped = find_inputs(src, out)
    if not files:
        raise FileNotFoundError(f"no .csv or .ndjson drawing files under {', '.join(map(str, src))}")
    for p in files:  # fail before any work on a file we cannot use at all
        if p.suffix == ".csv":
            read_csv_header(p)
    tmp = out / ".shards"
    if out.exists():
        shutil.rmtree(out)
    tmp.mkdir(parents=True)
    jobs = [(p, tmp / f"{i:05d}", opts) for i, p in enumerate(files)]
    bar = tqdm(total=len(jobs), desc="prepare", unit="file", leave=False)
    results = []
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            for r in pool.imap(_run_file, jobs):
                results.append(r)
                bar.update()
    else:
        for j in jobs:
            results.append(_run_file(j))
            bar.update()
    bar.close()
    summary = merge_shards([j[1] for j in jobs], results, out, opts)
    summary["skipped_files"] = skipped + [{"file": r.path, "reason": r.skipped} for r in results if r.skipped]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(tmp)
    return summary


def _first_occurrences(shards: list[Path]) -> list[np.ndarray]:
    """Per shard, a mask of rows whose key_id was not seen in an earlier row (shard order, then row)."""
    keys = [np.fromfile(array_path(s, "key_id"), dtype=np.int64) if s.exists() else np.zeros(0, np.int64)
            for s in shards]
    allk = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    _, first = np.unique(allk, return_index=True)
    mask = np.zeros(len(allk), dtype=bool)
    mask[first] = True
    return np.split(mask, np.cumsum([len(k) for k in keys])[:-1])


def merge_shards(shards: list[Path], results: list[FileResult], out: Path, opts: PrepareOptions) -> dict:
    """Copy shards into the final store slice by slice, dropping repeated key_ids (logged as rejects)."""
    keep_masks = _first_occurrences(shards)
    has_time = any(r.has_time for r in results)
    names = ["xy", "stroke_len", "pt_off", "st_off", "key_id", "label", "fold", "raw"] + (["t"] if has_time else [])
    dst = ArrayAppender(out, names)
    per_class = np.zeros(len(opts.classes), np.int64)
    duplicates = 0
    n_pts = n_st = 0
    meta_writer = None
    with open(out / "rejects.csv", "w", newline="") as rf:
        rej = csv.writer(rf)
        rej.writerow(REJECT_FIELDS)
        for shard, res, keep in zip(shards, results, keep_masks, strict=True):
            if res.skipped:
                continue
            with open(shard / "rejects.csv", newline="") as sf:
                rej.writerows(csv.reader(sf))
            counts = json.loads((shard / "counts.json").read_text())
            src = {k: open_array(shard, k, counts[k]) for k in SHARD_ARRAYS}
            st_off = np.append(np.asarray(src["st_off"]), counts["stroke_len"])
            pt_of_stroke = np.concatenate([[0], np.cumsum(src["stroke_len"], dtype=np.int64)])
            meta = pq.ParquetFile(shard / "meta.parquet") if (shard / "meta.parquet").exists() else None
            meta_rows = meta.iter_batches(MERGE_SLICE) if meta else iter(())
            for a in range(0, len(keep), MERGE_SLICE):
                b = min(a + MERGE_SLICE, len(keep))
                k = keep[a:b]
                mb = pa.Table.from_batches([next(meta_rows)])
                assert mb.num_rows == b - a, "meta and arrays disagree"
                dups = np.flatnonzero(~k)
                for i in dups:
                    rej.writerow([res.path, int(mb["line"][int(i)].as_py()), int(src["key_id"][a + i]),
                                  "duplicate_key_id", "kept the first copy"])
                duplicates += len(dups)
                idx = a + np.flatnonzero(k)
                s0, s1 = st_off[idx], st_off[idx + 1]
                p0, p1 = pt_of_stroke[s0], pt_of_stroke[s1]
                st_rng, pt_rng = ranges(s0, s1), ranges(p0, p1)
                dst.append("xy", src["xy"][pt_rng])
                if has_time:
                    dst.append("t", src["t"][pt_rng] if counts["t"] else np.full(len(pt_rng), -1, np.int32))
                dst.append("stroke_len", src["stroke_len"][st_rng])
                dst.append("pt_off", n_pts + np.concatenate([[0], np.cumsum(p1 - p0)[:-1]]) if len(idx) else np.zeros(0))
                dst.append("st_off", n_st + np.concatenate([[0], np.cumsum(s1 - s0)[:-1]]) if len(idx) else np.zeros(0))
                n_pts += int((p1 - p0).sum())
                n_st += int((s1 - s0).sum())
                keys = np.asarray(src["key_id"][idx])
                dst.append("key_id", keys)
                labels = np.asarray(src["label"][idx])
                dst.append("label", labels)
                dst.append("fold", fold_of(keys, opts.n_folds))
                dst.append("raw", src["raw"][idx])
                per_class += np.bincount(labels, minlength=len(opts.classes))
                table = mb.filter(pa.array(k))
                meta_writer = meta_writer or pq.ParquetWriter(out / "meta.parquet", table.schema)
                meta_writer.write_table(table)
    n = dst.counts["key_id"]
    dst.append("pt_off", np.array([n_pts]))
    dst.append("st_off", np.array([n_st]))
    dst.close()
    if meta_writer:
        meta_writer.close()
    return _summary(results, out, opts, per_class, duplicates, n, n_st, n_pts, has_time)


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
                   "filtered": r.filtered} for r in results if not r.skipped],
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
