"""The teachers of a distilled run: checked, then run over the student's training drawings.

Each teacher is a finished run; its fold-k model teaches the student's fold k, so the student's validation
drawings stay out of every teacher's training. With distill.targets=once the teachers predict the training drawings
once, by the predict path (`load_run`, `store_logits`: each with its own rendering and TTA), and are blended as
`tools/ensemble.py` blends members (`predict.ensemble.blend`); with held_out, a drawing is blended over the teachers
that held out its fold. The log of the blend goes to a memory-mapped float16 array (`doodle.train.distill`
describes the folder and reads it back). With distill.targets=online
(`OnlineTeachers`) they predict each training batch as the student sees it, augmented, blended alike.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from doodle.config import Config, load_resolved
from doodle.errors import UserError, nearest_path
from doodle.models.factory import input_kind_of
from doodle.predict.ensemble import Aligned, blend
from doodle.predict.exported import store_logits
from doodle.predict.loaded_run import load_run
from doodle.render.raster import raster_spec
from doodle.runs.folder import RunDir, atomic_write_bytes, fold_dirs
from doodle.store.format import Store
from doodle.train.data import Split, TeacherInput, fixed_batches
from doodle.train.distill import KEYS, LOGPROBS, SoftTargets, cache_dir, read_keys, taught_idx
from doodle.train.engine import forward, to_input

log = logging.getLogger("train")
CHUNK = 8192  # drawings per step of the teachers' pass (its progress bar; the memory map is written per chunk)


def teacher_folds(paths: list[str], fold: int, classes: list[str], store: Store) -> list[RunDir]:
    """Each teacher's fold-`fold` folder; a one-line error for a run that is missing, unfinished, lacks the
    fold, was trained on other classes, or on a store whose folds are cut differently."""
    out = []
    for p in paths:
        if not Path(p).exists():
            raise UserError(f"distill.teachers: {p} not found{nearest_path(p)}")
        dirs = fold_dirs(p)
        if not dirs:
            raise UserError(f"distill.teachers: {p} is not a run (no config.yaml in it nor in fold<k>/ subfolders)")
        if fold not in dirs:
            raise UserError(f"distill.teachers: {p} has fold(s) {sorted(dirs)}, not the student's fold {fold} "
                            f"(its fold-{fold} model must teach, so that validation stays out-of-fold)")
        run = RunDir(dirs[fold])
        cfg, facts = load_resolved(run.config)
        if int(facts.get("fold", fold)) != fold:
            raise UserError(f"distill.teachers: {run.root} is fold {facts['fold']}, the student trains fold {fold}")
        _check_classes(run, facts.get("classes") or [], classes)
        _check_folds(run, cfg, store)
        if not run.best.is_file():
            raise UserError(f"distill.teachers: {run.root} has no {run.best.name} (not finished?)")
        out.append(run)
    return out


def teacher_weights(cfg: Config, runs: list[RunDir]) -> Path:
    """distill.init=teacher: the best checkpoint of the first of the teachers' fold folders `runs` (teacher_folds)
    whose network is the student's (same model, kwargs, input and channels); a one-line error when none is."""
    want = _network(cfg)
    for run in runs:
        if _network(load_resolved(run.config)[0]) == want:
            return run.best
    raise UserError(f"distill.init=teacher: no teacher among {', '.join(str(r.root) for r in runs)} is the "
                    f"student's network ({want[0]}, {want[1]} input, model.kwargs {want[2]}); set distill.init=none")


def start_from_teacher(cfg: Config, runs: list[RunDir]) -> None:
    """distill.init=teacher: point model.weights at that teacher's checkpoint (the saved config then says which)."""
    path = str(teacher_weights(cfg, runs))
    if cfg.model.weights and cfg.model.weights != path:
        raise UserError(f"distill.init=teacher and model.weights={cfg.model.weights} both name the student's "
                        "starting weights; keep one")
    cfg.model.weights = path
    log.info("distill.init=teacher: the student starts from %s", path)


def _network(cfg: Config) -> tuple:
    kind = input_kind_of(cfg)
    detail = f"{raster_spec(cfg).channels} channels" if kind == "image" else f"seq.time {cfg.seq.time}"
    return cfg.model.name, f"{kind} ({detail})", json.dumps(cfg.model.kwargs, sort_keys=True)


def _check_classes(run: RunDir, theirs: list[str], ours: list[str]) -> None:
    if list(theirs) == list(ours):
        return
    if len(theirs) != len(ours):
        raise UserError(f"distill.teachers: {run.root} was trained on {len(theirs)} classes, the student has "
                        f"{len(ours)} (data.classes / data.store must match)")
    i = next(i for i, (a, b) in enumerate(zip(theirs, ours, strict=True)) if a != b)
    raise UserError(f"distill.teachers: {run.root} has another class order than the student "
                    f"(index {i}: {theirs[i]!r} vs {ours[i]!r})")


def _check_folds(run: RunDir, cfg: Config, store: Store) -> None:
    """Folds are cut by key_id hash modulo n_folds: a teacher's store with another n_folds held out other drawings."""
    info = Path(cfg.data.store) / "store.json"
    if not info.is_file():
        return  # the teacher's store moved or is elsewhere: its classes and fold number were checked
    n = json.loads(info.read_text()).get("n_folds")
    if n != store.info.n_folds:
        raise UserError(f"distill.teachers: {run.root} was trained on a store with {n} folds, the student's "
                        f"{store.root} has {store.info.n_folds}: its fold is other drawings")


def held_out_folds(cfg: Config, runs: list[RunDir], fold: int, store: Store) -> list[frozenset[int]]:
    """distill.targets=held_out: the training folds each teacher's fold folder (`runs`) teaches, the ones its run held
    out (its data.exclude_folds); a one-line error for a teacher that held out none of them, or a training fold
    that no teacher held out."""
    train_folds = set(range(store.info.n_folds)) - {fold} - set(cfg.data.exclude_folds)
    teaches = []
    for run in runs:
        held = frozenset(load_resolved(run.config)[0].data.exclude_folds) & train_folds
        if not held:
            raise UserError(f"distill.targets=held_out: {run.root} trained on every training fold of the student "
                            f"({sorted(train_folds)}), so none of its drawings is held out from it; train the "
                            "teachers with data.exclude_folds (e.g. one run with [1,2], one with [3,4])")
        teaches.append(held)
    untaught = sorted(train_folds - frozenset().union(*teaches))
    if untaught:
        held = ", ".join(f"{r.root} {sorted(t)}" for r, t in zip(runs, teaches, strict=True))
        raise UserError(f"distill.targets=held_out: no teacher held out training fold(s) {untaught} (the teachers' "
                        f"held-out folds: {held})")
    for k in sorted(train_folds):
        log.info("distill.targets=held_out: fold %d taught by %s", k,
                 ", ".join(str(r.root) for r, t in zip(runs, teaches, strict=True) if k in t))
    return teaches


def soft_targets(cfg: Config, runs: list[RunDir], run_root: Path, store: Store, split: Split, fold: int,
                 device: torch.device, main: bool = True, progress: bool = True) -> SoftTargets:
    """The log-probabilities of the teachers' fold folders `runs` (teacher_folds) for fold `fold`'s training
    drawings and its transfer set (`split.transfer_idx`, distill.transfer): made once (on the main process; under
    DDP the other ranks wait at a barrier), then reused from the folder (a resumed run, or distill.cache).
    distill.targets=held_out: a training drawing is taught by the teachers that held out its fold
    (`held_out_folds`), a transfer drawing (a class no teacher learned) by all."""
    folder = cache_dir(cfg, run_root)
    names = [str(r.root.resolve()) for r in runs]
    idx = taught_idx(split)
    teaches = held_out_folds(cfg, runs, fold, store) if cfg.distill.targets == "held_out" else None
    if main and not (folder / KEYS).is_file():
        write_teacher_logits(folder, runs, store, split, idx, cfg, device, progress, teaches)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    meta = read_keys(folder)
    made_by = (meta["teachers"], meta["method"], meta["tta"], meta["targets"])
    if made_by != (names, cfg.distill.method, cfg.distill.tta, cfg.distill.targets):
        raise UserError(f"teacher logits {folder} were made by other teachers or settings ({made_by[0]}, "
                        f"{made_by[1]}, tta {made_by[2]}, targets {made_by[3]}); delete the folder or set "
                        "distill.cache elsewhere")
    return SoftTargets(folder, idx, np.asarray(store.key_id[idx], np.int64), split.classes)


def write_teacher_logits(folder: Path, runs: list[RunDir], store: Store, split: Split, idx: np.ndarray, cfg: Config,
                         device: torch.device, progress: bool, teaches: list[frozenset[int]] | None = None) -> None:
    """Blend the teachers over the drawings `idx` (`taught_idx`: the training drawings and the transfer set),
    chunk by chunk, into `folder` (keys.npz written last). `teaches` (distill.targets=held_out): the training folds
    each teacher teaches; a drawing is then blended over those teachers only (None: every teacher, every drawing)."""
    t0 = time.monotonic()
    teachers = [load_run(r.root, device) for r in runs]
    n_cls = len(split.classes)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{LOGPROBS}.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(idx), n_cls))
    names = [str(r.root.resolve()) for r in runs]
    start = 0
    for chunk in tqdm(fixed_batches(idx, CHUNK), desc="teachers", leave=False, disable=not progress):
        chunk = np.asarray(chunk)
        who = teachers_of(chunk, split, store, teaches, len(teachers))
        for group in np.unique(who, axis=0):  # one pass per set of teachers (with held_out: per fold)
            rows = np.flatnonzero((who == group).all(1))
            members = [(n, t) for n, t, on in zip(names, teachers, group, strict=True) if on]
            logits = [store_logits(lr, store, split, chunk[rows],
                                   lr.cfg.val.tta if cfg.distill.tta == "run" else cfg.distill.tta,
                                   cfg.val.batch_size) for _, lr in members]
            keys = np.asarray(store.key_id[chunk[rows]], np.int64)
            probs = blend(Aligned([n for n, _ in members], keys, split.classes, logits, None), None,
                          cfg.distill.method)
            out[start + rows] = np.log(np.maximum(probs, 1e-12))
        start += len(chunk)
    out.flush()
    del out
    os.replace(tmp, folder / LOGPROBS)
    buf = io.BytesIO()
    np.savez(buf, key_id=np.asarray(store.key_id[idx], np.int64), classes=np.array(split.classes, dtype=str),
             teachers=np.array(names, dtype=str), method=cfg.distill.method, tta=cfg.distill.tta,
             targets=cfg.distill.targets)
    atomic_write_bytes(folder / KEYS, buf.getvalue())
    seconds = time.monotonic() - t0
    log.info("teachers %s: %d drawings (%d of them the transfer set) in %.0f s (%.0f drawings/s), "
             "log-probabilities in %s", ", ".join(names), len(idx), len(idx) - len(split.train_idx), seconds,
             len(idx) / max(seconds, 1e-9), folder)


def teachers_of(chunk: np.ndarray, split: Split, store: Store, teaches: list[frozenset[int]] | None,
                 n: int) -> np.ndarray:
    """Which of the n teachers teach each drawing of `chunk`: bool (len(chunk), n). Every one, unless `teaches`
    (held_out) gives each teacher's folds; a transfer-set drawing (outside the training drawings) is taught by all."""
    if teaches is None:
        return np.ones((len(chunk), n), bool)
    folds = np.asarray(store.fold[chunk])
    transfer = np.zeros(len(chunk), bool)
    if split.transfer_idx is not None and len(split.transfer_idx):  # a binary search in the sorted training drawings
        j = np.searchsorted(split.train_idx, chunk).clip(0, len(split.train_idx) - 1)
        transfer = split.train_idx[j] != chunk
    return np.stack([np.isin(folds, sorted(t)) | transfer for t in teaches], axis=1)


class OnlineTeachers:
    """distill.targets=online: `teach(batch, inputs)` -> the teachers' blended log-probabilities (B, C), float32 on
    the device, for the batch the student is about to see (`inputs`: its model kwargs, before any mixing).

    An image teacher with the student's raster takes the student's very image (stroke-space and albumentations
    augmentation alike); any other teacher takes its own rendering or sequence encoding of the same augmented
    strokes, which the loader makes (`inputs`). Each teacher predicts its view once (no TTA), in eval mode, without
    gradients; the blend is distill.method's, as in `predict.ensemble.BLENDERS`.
    """

    def __init__(self, cfg: Config, runs: list[RunDir], device: torch.device):
        self.teachers = [load_run(r.root, device) for r in runs]
        self.device, self.method = device, cfg.distill.method
        student = raster_spec(cfg) if input_kind_of(cfg) == "image" else None
        self.inputs = [TeacherInput(t.cfg, t.spec, t.input_kind, t.input_kind == "image" and t.spec == student)
                       for t in self.teachers]

    def describe(self) -> str:
        return ", ".join(f"{t.run.root} ({'the student image' if i.same else i.kind})"
                         for t, i in zip(self.teachers, self.inputs, strict=True))

    @torch.no_grad()
    def __call__(self, batch: dict, inputs: dict) -> torch.Tensor:
        logp = []
        for t, view, own in zip(self.teachers, self.inputs, batch["teacher"], strict=True):
            x = dict(inputs) if view.same else to_input(own, self.device, t.channels_last)
            if view.same and t.channels_last:
                x["x"] = x["x"].contiguous(memory_format=torch.channels_last)
            with t.precision.autocast():
                logp.append(forward(t.model, x).float().log_softmax(1))
        stacked = torch.stack(logp)
        if self.method == "logit_mean":  # softmax of the mean logit = of the mean log-probability
            return stacked.mean(0).log_softmax(1)
        return stacked.logsumexp(0) - math.log(len(logp))  # log of the mean probability
