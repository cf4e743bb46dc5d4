"""Stream any mix of drawing files into a store, in parallel over groups of files, with bounded memory.

The sorted input files are cut into contiguous groups (one group with one worker, a few per worker
otherwise, balanced by size); each group becomes a shard written chunk by chunk by one worker. The merge
(`doodle.store.merge`)
then copies the shards into the final arrays slice by slice, keeping the first copy (in file order, then
line order) of every key_id; a lone shard without repeats is moved into place instead of copied. Memory is
bounded by the chunk and slice sizes, plus about 24 bytes per drawing while repeated key_ids are found.

Every input row ends as exactly one of: kept; rejected (in rejects.csv with file, 1-based line, key_id and
reason); a duplicate (in rejects.csv as `duplicate_key_id`); filtered (a real class that `classes` did
not select; not listed); or left out (a collected drawing not accepted by review, see below; counted per
reason in summary.json's `collected`). summary.json's counts add up:
rows = kept + rejected + duplicates + filtered + left_out.

Collected drawings (`doodle.store.collected`): an .ndjson file whose folder holds `_decisions.ndjson` is a
collected file, whether that folder is given or found under one given. `opts.collected` decides what is kept
of it: `accepted` (the default) only drawings whose latest decision is accept, `all` every drawing, `none`
no collected file (skipped, listed in `skipped_files`). `_decisions.ndjson` itself is never read as drawings.

Pseudo-labelled drawings (`doodle.store.sources`): the drawing files of a folder holding `_pseudo.json` (as
`tools/pseudo.py` writes it) get fold -1, so no fold ever validates on them; the folder's labels must have been
chosen among exactly the store's classes, else prepare stops before reading anything.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing as mp
import shutil
from dataclasses import replace
from itertools import repeat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from doodle.drawing.batch import Batch, FileFormatError, Reject, concat_batches
from doodle.errors import UserError
from doodle.store import collected as coll
from doodle.store import sources
from doodle.store.format import ARRAYS, ArrayAppender, array_path
from doodle.store.kaggle_csv import parse_csv_header
from doodle.store.merge import SHARD_ARRAYS, merge_shards
from doodle.store.options import FileResult, PrepareOptions
from doodle.store.readers import DECISIONS_FILE, read_file, scan_drawing_files

log = logging.getLogger(__name__)
SHOW_SKIPPED = 20  # skipped input files named on the console; summary.json lists them all

BUFFER_ROWS = 5_000
BUFFER_POINTS = 500_000
GROUPS_PER_WORKER = 4


def find_inputs(src: list[Path], out: Path, collected: str = "all") -> tuple[list[Path], list[dict]]:
    """Drawing files under the given files/folders (each folder sorted), and the files deliberately skipped.

    Every CSV header is read here, so a file that cannot be used at all stops the run before any work with a
    `FileFormatError` naming it. Skipped with a reason: label files and submissions met in a folder, Kaggle's
    unlabelled test CSV (for src/predict.py), a collected folder's review decisions, and its drawings with
    `collected="none"`. Files of an existing store are ignored.
    """
    files, skipped = [], []
    for root in map(Path, src):
        if root.is_file():
            found = [root]
        elif root.is_dir():
            found, not_drawings = scan_drawing_files(root, exclude=out)
            skipped += not_drawings
        else:
            raise FileNotFoundError(f"{root}: no such file or folder")
        for p in found:
            why = _skip_reason(p, collected)
            if why:
                skipped.append({"file": str(p), "reason": why})
            else:
                files.append(p)
    return files, skipped


def _skip_reason(path: Path, collected: str = "all") -> str:
    """Why a drawing file is not read ('' = read it); raises FileFormatError for an unusable CSV."""
    if path.name == coll.DECISIONS:  # given as a file (in a folder, scan_drawing_files skips it)
        return DECISIONS_FILE
    if collected == "none" and path.suffix == ".ndjson" and coll.is_collected_folder(path.parent):
        return "collected drawings, left out (--collected none)"
    if path.suffix != ".csv":
        return ""
    with open(path, "rb") as f:
        first = f.readline()
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
    A shard without timed drawings leaves its `t` array empty (no 4 bytes of -1 per point on disk).

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
        self.timed = False  # times are written from the first timed batch on (-1 for the points before it)

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
        if not self.timed and b.raw.any():
            self.timed = True
            for start in range(0, self.n_points, BUFFER_POINTS):  # untimed points so far: no time
                a.append("t", np.full(min(BUFFER_POINTS, self.n_points - start), -1, np.int32))
        if self.timed:
            a.append("t", b.t)
        a.append("stroke_len", b.stroke_len)
        st_off, pt_off = b.offsets()
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
    decisions = opts.decisions.get(str(path.parent.resolve()))  # None: keep every row (not a filtered folder)
    for batch, rejects in read_file(path, opts.limits, opts.chunk_bytes):
        res.rows += len(batch) + len(rejects)
        labels, why = _label(batch.word, opts, index)
        rejects += [Reject(int(batch.line[i]), str(batch.key_id[i]), reason, repr(batch.word[i])[:60])
                    for i, reason in why.items() if reason != "filtered"]
        for r in sorted(rejects, key=lambda r: r.line):
            w.rejects.writerow([res.path, r.line, r.key_id, r.reason, r.detail])
            res.per_reason[r.reason] += 1
        res.filtered += sum(reason == "filtered" for reason in why.values())
        keep = labels >= 0
        if decisions is not None:
            for i in np.flatnonzero(keep).tolist():
                verdict = decisions.get(int(batch.key_id[i]))
                if verdict != "accept":
                    res.left_out[coll.STATUS[verdict]] += 1
                    keep[i] = False
        if not keep.all():
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
    if opts.collected not in COLLECTED_MODES:
        raise UserError(f"collected: {opts.collected!r} is not one of {', '.join(COLLECTED_MODES)}")
    files, skipped = find_inputs(src, out, opts.collected)
    for f in skipped[:SHOW_SKIPPED]:  # named now, before a long run: a file the user meant to use is left out
        log.warning("skipped %s: %s", f["file"], f["reason"])
    if len(skipped) > SHOW_SKIPPED:
        log.warning("... and %d more skipped files (all listed in %s)", len(skipped) - SHOW_SKIPPED,
                    out / "summary.json")
    if not files:
        raise FileNotFoundError(f"no .csv or .ndjson drawing files under {', '.join(map(str, src))}")
    opts = replace(opts, decisions={})  # filled here for this run's collected folders; the caller's untouched
    collected_summary = _load_decisions(files + [Path(s["file"]) for s in skipped], opts)
    opts, pseudo_summary = _pseudo_files(files, opts)
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
    summary["collected"] = collected_summary | {"left_out": summary.pop("left_out_per_reason")}
    summary["pseudo"] = pseudo_summary
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(tmp)
    return summary


COLLECTED_MODES = ("accepted", "all", "none")


def _pseudo_files(files: list[Path], opts: PrepareOptions) -> tuple[PrepareOptions, dict]:
    """Mark the files of pseudo-label folders train-only (fold -1), after checking each folder's labels were
    chosen among this store's classes; their manifests (without the class list) for the summary."""
    folders = sorted({p.parent for p in files if sources.is_pseudo_folder(p.parent)})
    summary = {}
    for folder in folders:
        manifest = sources.check_pseudo_classes(folder, opts.classes)
        summary[str(folder)] = {k: v for k, v in manifest.items() if k != "classes"}
    train_only = {str(p) for p in files if p.parent in folders}
    return replace(opts, train_only=opts.train_only | train_only), summary


def _load_decisions(files: list[Path], opts: PrepareOptions) -> dict:
    """Fill `opts.decisions` for the collected folders of `files` (with `accepted`); their summary.

    An unreadable decision line (a save cut short) is logged and listed, never fatal: its drawing stays
    unreviewed, so it is left out, not let in.
    """
    folders = sorted({str(p.parent.resolve()) for p in files if p.suffix == ".ndjson"
                      and coll.is_collected_folder(p.parent)})
    problems = []
    for folder in folders:
        latest, bad = coll.read_decisions(folder)
        problems += [f"{folder}/{b}" for b in bad]
        if opts.collected == "accepted":
            opts.decisions[folder] = {k: d.decision for k, d in latest.items()}
    for p in problems:
        log.warning("%s", p)
    return {"mode": opts.collected, "folders": folders, "decision_problems": problems}


STORE_FILES = {array_path(Path(), name).name for name in ARRAYS} | {
    ".shards", "meta.parquet", "rejects.csv", "summary.json", "store.json"}


def _check_replaceable(out: Path, files: list[Path]) -> None:
    """Refuse an output folder that holds inputs or anything but a (possibly half-written) store."""
    real = out.resolve()
    inside = [p for p in files if real in p.resolve().parents]
    if inside:
        raise UserError(f"{out}: holds input file {inside[0]}; choose another output folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in STORE_FILES) if out.is_dir() else []
    if foreign:
        raise UserError(f"{out}: exists and holds {foreign[:3]}, not a store; refusing to replace it")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")


__all__ = ["PrepareOptions", "prepare", "find_inputs", "FileFormatError"]
