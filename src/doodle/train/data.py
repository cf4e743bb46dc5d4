"""Datasets, the per-class quota sampler (with accuracy-driven resampling) and loaders.

Batches are built whole: the sampler yields a list of store indices, and one dataset call takes those
`Drawings` from the store, augments them in stroke space and renders them with one compiled call. Images leave the loader as
uint8 NHWC; the float conversion happens on the device (`engine.to_input`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from doodle.config import Config
from doodle.drawing.batch import Batch
from doodle.drawing.flat import Drawings
from doodle.errors import UserError
from doodle.render.augment import StrokeAugment, apply_albumentations, build_albumentations, flip_x
from doodle.render.raster import RasterSpec, raster_spec, render_batch
from doodle.render.sequence import encode_sequences
from doodle.resources import load_class_list
from doodle.store.format import Store
from doodle.train.distill import SoftTargets

CHUNK = 1 << 22  # rows of the store read at once by the split (a few MB of masks)


@dataclass
class Split:
    """Store indices of the training and validation drawings of one fold, with model-space labels."""

    classes: list[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    store_to_model: np.ndarray  # store label -> model label (-1 = class not used), int16 like the store's labels
    train_weight: np.ndarray | None = None  # sampling weight of each training drawing (None: all equal)
    # distill.transfer: the training folds' drawings of the store's other classes (no model label), sorted
    transfer_idx: np.ndarray | None = None

    def targets(self, store: Store, idx: np.ndarray, dtype=np.int64) -> np.ndarray:
        """Model labels of store drawings `idx` (int64, as the loss takes them; the sampler asks for int16,
        2 bytes a training drawing)."""
        return self.store_to_model[np.asarray(store.label[idx])].astype(dtype, copy=False)


def select_classes(store: Store, spec) -> list[str]:
    """`data.classes` resolved against the store: 'all' = every class with drawings in it."""
    if spec in (None, "all"):
        return [c for c, n in zip(store.classes, store.class_counts(), strict=True) if n > 0]
    words = load_class_list(spec, store.classes)
    missing = [w for w in words if w not in store.classes]
    if missing:
        raise UserError(f"data.classes: {missing[:5]} not in the store {store.root} "
                         f"({len(store.classes)} classes)")
    if len(set(words)) != len(words):
        raise UserError("data.classes lists a word twice")
    return words


def make_split(store: Store, cfg: Config, fold: int, scratch: Path | None = None, transfer: bool = False) -> Split:
    """Fold `fold` held out (folds fixed by key_id hash); validation optionally capped per class. With `transfer`
    the split also holds the drawings of the training folds whose class is not one of `data.classes`
    (`transfer_idx`: distillation's transfer set).

    The store is read a chunk at a time, so what the split holds is its index arrays: 4 bytes a drawing, in
    memory, or with `scratch` (a folder) memory-mapped from unnamed files there (`scratch_array`), so that at
    Kaggle's size (160 MB of training indices) they are page cache the kernel can drop, not the process's own.
    """
    if not 0 <= fold < store.info.n_folds:
        raise UserError(f"--fold {fold} out of range: the store has folds 0..{store.info.n_folds - 1}")
    classes = select_classes(store, cfg.data.classes)
    if not classes:
        raise UserError(f"no classes selected from store {store.root}")
    store_to_model = np.full(len(store.classes), -1, np.int16)
    store_to_model[[store.classes.index(c) for c in classes]] = np.arange(len(classes))
    excluded = _excluded(cfg, fold, store)
    label, fold_arr = store.label, store.fold  # fold -1: a train-only drawing (pseudo-labelled), in no fold
    n = min(len(store), cfg.data.max_drawings) if cfg.data.max_drawings else len(store)

    def masks(a: int, b: int) -> tuple[np.ndarray, ...]:
        f = np.asarray(fold_arr[a:b])
        usable = store_to_model[np.asarray(label[a:b])] >= 0
        training = (f != fold) & ~np.isin(f, excluded)
        return (usable & training, usable & (f == fold)) + ((~usable & training,) if transfer else ())

    train_idx, val_idx, *others = (scratch_array(int(k), index_dtype(len(store)), scratch)
                                   for k in _chunked_counts(masks, n))
    _fill_chunked(masks, n, (train_idx, val_idx, *others))
    if cfg.data.val_per_class:
        groups = group_by_class(val_idx, lambda i: store_to_model[np.asarray(label[i])], len(classes),
                                out=scratch_array(len(val_idx), val_idx.dtype, scratch))
        val_idx = cap_groups(groups, lambda i: store.key_id[i], cfg.data.val_per_class)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(f"fold {fold} leaves {len(train_idx)} training and {len(val_idx)} validation drawings")
    return Split(classes, train_idx, val_idx, store_to_model, transfer_idx=others[0] if others else None)


def _chunked_counts(masks, n: int) -> np.ndarray:
    """How many True each of the masks `masks(a, b)` gives over rows 0..n, CHUNK rows at a time."""
    counts, chunk = None, CHUNK
    for a in range(0, n, chunk):
        c = np.array([int(m.sum()) for m in masks(a, min(n, a + chunk))], np.int64)
        counts = c if counts is None else counts + c
    return counts if counts is not None else np.zeros(len(masks(0, 0)), np.int64)


def _fill_chunked(masks, n: int, outs: tuple[np.ndarray, ...]) -> None:
    """outs[k] = the rows where mask k is True, in order (outs sized by `_chunked_counts`), CHUNK rows at a time."""
    put, chunk = [0] * len(outs), CHUNK
    for a in range(0, n, chunk):
        for k, m in enumerate(masks(a, min(n, a + chunk))):
            rows = np.flatnonzero(m)
            outs[k][put[k] : put[k] + len(rows)] = rows + a
            put[k] += len(rows)


def scratch_array(n: int, dtype, folder: Path | None) -> np.ndarray:
    """An empty n-long array: in memory, or (with `folder`) memory-mapped from an unnamed file in that folder
    (gone when the process is, even if killed), whose pages the kernel writes back and drops under pressure
    instead of counting them as the process's own memory."""
    if folder is None or n == 0:
        return np.empty(n, dtype)
    with tempfile.TemporaryFile(dir=folder) as f:
        f.truncate(n * np.dtype(dtype).itemsize)
        return np.memmap(f, dtype, "r+", shape=(n,))  # the mapping outlives the file object


def _excluded(cfg: Config, fold: int, store: Store) -> list[int]:
    """data.exclude_folds, checked against the store's folds and the validation fold."""
    bad = [k for k in cfg.data.exclude_folds if k >= store.info.n_folds or k == fold]
    if bad:
        raise UserError(f"data.exclude_folds: fold {bad[0]} is "
                        + (f"the validation fold (--fold {fold})" if bad[0] == fold
                           else f"not in the store (folds 0..{store.info.n_folds - 1})"))
    return list(cfg.data.exclude_folds)


def index_dtype(n: int) -> type:
    """Indices into n drawings: int32 (4 bytes) below 2**31 drawings, 40 times Kaggle's 49.7M; else int64."""
    return np.int32 if n < 2**31 else np.int64


def group_by_class(idx: np.ndarray, targets, n_classes: int, chunk: int = 1 << 20,
                   out: np.ndarray | None = None) -> list[np.ndarray]:
    """Members of each class 0..n_classes-1 (`idx` where the target is c, in `idx` order; other targets left
    out) as views of one array of idx's dtype (`out` when given, e.g. a `scratch_array` as long as idx): a
    stable counting sort done a chunk at a time, so no N-long int64 argsort is ever held. `targets` is an
    array aligned with idx, or a function from a chunk of idx to its targets (then no N-long targets either)."""
    idx = np.asarray(idx)  # a view, never a copy, of an array or a memmap

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for a in range(0, len(idx), chunk):
            members = np.asarray(idx[a : a + chunk])
            t = targets(members) if callable(targets) else np.asarray(targets[a : a + chunk])
            keep = (t >= 0) & (t < n_classes)
            yield t[keep], members[keep]

    counts = sum((np.bincount(t, minlength=n_classes) for t, _ in chunks()), np.zeros(n_classes, np.int64))
    total = int(counts.sum())
    out = np.empty(total, idx.dtype) if out is None else out[:total]
    put = np.concatenate([[0], np.cumsum(counts)])
    bounds = put.copy()
    for t, members in chunks():
        order = np.argsort(t, kind="stable")
        ends = np.searchsorted(t[order], np.arange(n_classes + 1))
        for c in np.flatnonzero(np.diff(ends)):
            piece = members[order[ends[c] : ends[c + 1]]]
            out[put[c] : put[c] + len(piece)] = piece
            put[c] += len(piece)
    return np.split(out, bounds[1:-1])


def cap_groups(groups: list[np.ndarray], key_of, cap: int) -> np.ndarray:
    """At most `cap` members of each group (those with the smallest fixed hash of their key_id, the same for
    every run: `key_of(members)` gives the key_ids), sorted, in memory: cap * groups values at most."""
    kept = []
    for members in groups:
        members = np.asarray(members)
        if len(members) > cap:
            members = members[np.argpartition(_hash_rank(np.asarray(key_of(members))), cap - 1)[:cap]]
        kept.append(members)
    dtype = groups[0].dtype if groups else np.int64
    return np.sort(np.concatenate([np.zeros(0, dtype), *kept]))


def _hash_rank(key_id: np.ndarray) -> np.ndarray:
    z = np.asarray(key_id, np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
        z = z ^ (z >> np.uint64(33))
    return z


def quota_weights(acc: np.ndarray, floor: float = 0.25) -> np.ndarray:
    """Each class's share of N next epoch: (1 - acc) + floor (acc NaN -> treated as 0)."""
    acc = np.nan_to_num(np.asarray(acc, np.float64), nan=0.0).clip(0.0, 1.0)
    return 1.0 - acc + floor


def boosted_quotas(per_class: int, acc: np.ndarray, floor: float = 0.25) -> np.ndarray:
    """Next epoch's drawings per class: N* = N (1 - acc) + floor * N (acc NaN -> treated as 0)."""
    return np.rint(per_class * quota_weights(acc, floor)).astype(np.int64)


class QuotaSampler(Sampler):
    """Yields batches (lists of store indices): quota[c] drawings of each class, shuffled, per epoch.

    Classes with fewer drawings than their quota are sampled with replacement. With `transfer` (store indices,
    distillation's transfer set) a share `transfer_share` of each epoch is drawn from those drawings on top of
    the quotas (`transfer_count`). With `world_size > 1` the epoch is padded to a multiple of
    world_size * batch_size and rank r takes every world_size-th batch, so ranks never share a drawing within
    an epoch.
    """

    def __init__(self, idx: np.ndarray, targets, n_classes: int, quotas: np.ndarray,
                 batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 weights: np.ndarray | None = None, scratch: Path | None = None,
                 transfer: np.ndarray | None = None, transfer_share: float = 0.0):
        # targets: aligned with idx, or a function from some of idx to theirs (`group_by_class`); with `scratch`
        # the class-grouped copy of idx is memory-mapped there (`scratch_array`)
        idx = np.asarray(idx)
        grouped = scratch_array(len(idx), idx.dtype, scratch)
        if weights is None:
            self.by_class = group_by_class(idx, targets, n_classes, out=grouped)  # store order kept within each class
            self.by_class_p = None
        else:  # weights (> 0, one per idx: data.source_weights): each class's draws in proportion to them
            w = np.asarray(weights, np.float64)
            by_pos = targets if not callable(targets) else (lambda p: targets(np.asarray(idx[p])))
            pos = group_by_class(np.arange(len(idx), dtype=index_dtype(len(idx))), by_pos, n_classes)
            bounds = np.cumsum([0, *map(len, pos)])
            for p, a in zip(pos, bounds, strict=False):
                grouped[a : a + len(p)] = idx[p]  # a class at a time
            self.by_class = np.split(grouped[: bounds[-1]], bounds[1:-1])
            self.by_class_p = [w[p] / w[p].sum() if len(p) else w[p] for p in pos]  # 8 bytes a drawing, in memory
        self.quotas = np.asarray(quotas, np.int64)
        self.transfer = transfer if transfer is not None and transfer_share > 0 else None
        self.transfer_share = transfer_share if self.transfer is not None else 0.0
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int, quotas: np.ndarray | None = None) -> None:
        self.epoch = epoch
        if quotas is not None:
            self.quotas = np.asarray(quotas, np.int64)

    def epoch_indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        parts = []
        for c, (members, q) in enumerate(zip(self.by_class, self.quotas, strict=True)):
            if q <= 0 or len(members) == 0:
                continue
            p = None if self.by_class_p is None else self.by_class_p[c]
            parts.append(rng.choice(members, size=int(q), replace=bool(q > len(members)), p=p))
        q = self.transfer_count()
        if q and len(self.transfer):
            parts.append(rng.choice(self.transfer, size=q, replace=bool(q > len(self.transfer))))
        allidx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        rng.shuffle(allidx)
        chunk = self.batch_size * self.world_size
        pad = (-len(allidx)) % chunk
        if pad and len(allidx):
            allidx = np.resize(allidx, len(allidx) + pad)  # repeats from the start, however short the epoch
        return allidx

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_indices().reshape(-1, self.batch_size)
        yield from (b.tolist() for b in batches[self.rank :: self.world_size])

    def transfer_count(self) -> int:
        """Drawings of the transfer set in an epoch: `transfer_share` of the epoch, the quotas the rest."""
        return round(int(self.quotas.sum()) * self.transfer_share / (1 - self.transfer_share))

    def __len__(self) -> int:
        total = int(self.quotas.sum()) + self.transfer_count()
        chunk = self.batch_size * self.world_size
        return math.ceil(total / chunk) if total else 0


def train_sampler(store: Store, split: Split, quotas: np.ndarray, batch_size: int, seed: int = 0, rank: int = 0,
                  world_size: int = 1, scratch: Path | None = None, transfer_share: float = 0.0) -> QuotaSampler:
    """The training run's sampler over `split`: targets read from the store a chunk at a time (none held), the
    class-grouped indices memory-mapped in `scratch` when given; `transfer_share` of each epoch from
    `split.transfer_idx`."""
    return QuotaSampler(split.train_idx, lambda i: split.targets(store, i, np.int16), len(split.classes), quotas,
                        batch_size, seed, rank, world_size, split.train_weight, scratch, split.transfer_idx,
                        transfer_share)


@dataclass(frozen=True)
class TeacherInput:
    """How an online teacher (distill.targets=online) reads a training batch: `cfg` / `spec` / `kind` are the
    teacher run's own; `same` when it takes the student's very image (an image model with the student's raster)."""

    cfg: Config
    spec: RasterSpec
    kind: str
    same: bool


class BatchDataset(Dataset):
    """`dataset[list_of_indices]` -> a whole model-ready batch (images or sequences).

    The source is a Store (training / validation, `split` gives targets) or a Batch read from files
    (prediction, `split=None`: no targets); both hand out `Drawings` by index and have `key_id`. With `soft`
    (distillation: `train.distill.SoftTargets`) a batch also carries the teachers' log-probabilities, `soft`.
    With `teachers` (online distillation: one `TeacherInput` each) it carries each teacher's input, "teacher": made
    from the same augmented strokes as the student's (rendered or encoded as that teacher's run does, without
    the image-space augmentation it cannot share), or None for a teacher that reads the student's image itself.
    """

    def __init__(self, source: Store | Batch, split: Split | None, cfg: Config, input_kind: str = "image",
                 train: bool = False, seed: int = 0, flip: bool = False, soft: SoftTargets | None = None,
                 teachers: list[TeacherInput] | None = None):
        self.source, self.split, self.cfg, self.soft, self.teachers = source, split, cfg, soft, teachers or []
        self.input_kind, self.train, self.seed, self.flip = input_kind, train, seed, flip
        self.spec = raster_spec(cfg)
        self.augment = StrokeAugment(cfg.augment) if train else None
        self.albu = build_albumentations(cfg.augment.albumentations) if train else None

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, batch: list[int]) -> dict:
        idx = np.asarray(batch, np.int64)
        d = self.source.take(idx)
        rng = np.random.default_rng(np.concatenate([[self.seed], idx])) if self.train else None
        if self.augment is not None:
            d = self.augment(d, rng)
        if self.flip:
            d = flip_x(d)
        out = {"key_id": torch.from_numpy(np.asarray(self.source.key_id[idx]))}
        if self.split is not None:
            out["target"] = torch.from_numpy(self.split.targets(self.source, idx))  # int64
        if self.soft is not None:
            out["soft"] = torch.from_numpy(self.soft.rows(idx))
        out.update(make_inputs(d, self.cfg, self.spec, self.input_kind, self.albu, rng))
        if self.teachers:
            out["teacher"] = [None if t.same else make_inputs(d, t.cfg, t.spec, t.kind) for t in self.teachers]
        return out


def make_inputs(d: Drawings, cfg: Config, spec: RasterSpec, input_kind: str, albu=None,
                rng: np.random.Generator | None = None) -> dict:
    """Drawings -> model inputs: {'image': uint8 (B,H,W,C)} or {'seq': float (B,L,F), 'seq_len': (B,)}."""
    if input_kind == "sequence":
        drop = cfg.seq.point_dropout if rng is not None else 0.0  # rng only when training
        seq, lengths = encode_sequences(d, cfg.seq.max_points, cfg.seq.time, drop, rng)
        return {"seq": torch.from_numpy(seq), "seq_len": torch.from_numpy(lengths)}
    images = render_batch(d, spec)
    return {"image": torch.from_numpy(apply_albumentations(albu, images))}


def fixed_batches(idx: np.ndarray, batch_size: int) -> list[list[int]]:
    """Consecutive batches of indices (validation / prediction order)."""
    return [idx[i : i + batch_size].tolist() for i in range(0, len(idx), batch_size)]


def make_loader(dataset: Dataset, batches, num_workers: int, seed: int = 0) -> DataLoader:
    """A DataLoader whose every item is a whole batch (batch_size=None: no collation needed).

    Workers persist across epochs (a restart costs 1.5-2.5 s per epoch); the batches are drawn in the main
    process, so a sampler whose quotas change between epochs is still read afresh each epoch.
    """
    kwargs = {}
    if num_workers > 0:
        kwargs = {"persistent_workers": True, "prefetch_factor": 4,
                  "multiprocessing_context": "fork"}
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available(), generator=g, **kwargs)




def eval_loaders(source: Store | Batch, split: Split | None, cfg: Config, input_kind: str, batches,
                 num_workers: int, tta: str) -> list[DataLoader]:
    """Loaders for evaluating `batches` of `source` with test-time augmentation `tta` (none | flip): one
    loader per view, plain then mirrored; `engine.evaluate` averages their outputs."""
    return [make_loader(BatchDataset(source, split, cfg, input_kind, flip=f), batches, num_workers)
            for f in ([False, True] if tta == "flip" else [False])]
