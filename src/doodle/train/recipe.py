"""Train one fold: the body of `python src/train.py` (doodle.train.console parses the arguments and loads the
config first, then calls `train`).

The run folder outputs/<config name>/fold<k>/ gets the resolved config, logs, metrics, checkpoints and
validation logits; `--resume` continues a killed run from checkpoints/last.pt.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from doodle import cli
from doodle.config import Config, save_config
from doodle.metrics import expected_calibration_error, fit_temperature, per_class_accuracy, softmax
from doodle.models.factory import build_model, input_kind_of
from doodle.predict.teachers import OnlineTeachers, soft_targets, start_from_teacher, teacher_folds
from doodle.render.raster import raster_spec
from doodle.runs.folder import RunDir, load_checkpoint, save_checkpoint, save_logits
from doodle.store.format import Store
from doodle.train.budget import Budget
from doodle.train.data import (
    BatchDataset,
    boosted_quotas,
    eval_loaders,
    fixed_batches,
    make_loader,
    make_split,
    quota_weights,
    train_sampler,
)
from doodle.train.distill import BatchTargets, DistillLoss, SoftTargets, check_distill_config
from doodle.train.distributed import (
    broadcast_object,
    check_replicas,
    gather_eval,
    init_distributed,
    max_over_ranks,
    sync_buffers,
)
from doodle.train.engine import (
    TrainState,
    evaluate,
    resolve_precision,
    to_input,
    train_one_epoch,
    val_metrics,
)
from doodle.train.mix import build_mix, check_mix_config
from doodle.train.optim import build_train_state
from doodle.train.plan import RunPlan, describe, next_per_class, plan_run, probe, val_seconds
from doodle.train.records import (
    EpochLog,
    git_commit,
    truncate_csv,
)
from doodle.train.rng import rng_state, seed_everything, set_rng_state
from doodle.train.sources import apply_sources
from doodle.train.swa import WeightAverage, build_average, save_average

log = logging.getLogger("train")


def prepare_run_dir(run: RunDir, args, main: bool) -> None:
    if run.last.exists() and not (args.resume or args.overwrite):
        raise cli.UserError(f"{run.root} already holds a run; use --resume to continue or --overwrite")
    if args.resume and not run.last.exists():
        raise cli.UserError(f"--resume: no checkpoint at {run.last}")
    if main and args.overwrite and run.root.exists() and not args.resume:
        shutil.rmtree(run.root)
    if main:
        try:
            run.create()
        except OSError as e:
            raise cli.UserError(f"cannot create run folder {run.root}: {e.strerror}") from None


def build(cfg: Config, args, store: Store, split, device, d, plan: RunPlan, quotas: np.ndarray,
          soft: SoftTargets | None = None, scratch: Path | None = None, online: OnlineTeachers | None = None):
    """Model, loaders and training state; the sampler starts from `quotas` drawings per class. With `soft`
    (the teachers' log-probabilities) the batches carry them, with `online` (the teachers themselves) the
    teachers predict each batch; either way the loss is the distillation loss."""
    kind = input_kind_of(cfg)
    n_cls = len(split.classes)
    model = build_model(cfg, n_cls, raster_spec(cfg).channels).to(device)
    model, state = build_train_state(cfg, model, kind, device, plan.epochs)
    sampler = train_sampler(store, split, quotas, plan.batch_size, args.seed, d.rank, d.world, scratch,
                            cfg.distill.transfer if cfg.distill.enabled else 0.0)
    train_ds = BatchDataset(store, split, cfg, kind, train=True, seed=args.seed, soft=soft,
                            teachers=online and online.inputs)
    if soft is not None or online is not None:
        state.distill = DistillLoss(cfg.distill.alpha, cfg.distill.temperature)
        state.teach = online if online is not None else BatchTargets(device)
    state.mix = build_mix(cfg, n_cls)  # checked at start-up (check_mix_config)
    train_loader = make_loader(train_ds, sampler, plan.num_workers, args.seed)
    val_batches = fixed_batches(split.val_idx[d.rank :: d.world], cfg.val.batch_size)
    val_loaders = eval_loaders(store, split, cfg, kind, val_batches, plan.num_workers, cfg.val.tta)
    return model, state, sampler, train_loader, val_loaders, train_ds


def report_transfer(cfg: Config, store: Store, split) -> None:
    """One line on distill.transfer's set: how many drawings of how many other classes (a warning when none)."""
    idx = split.transfer_idx
    if idx is None or len(idx) == 0:
        log.warning("distill.transfer=%g: the store %s holds no training drawings outside data.classes, so the "
                    "transfer set is empty and every drawing is one of the student's classes", cfg.distill.transfer,
                    store.root)
        return
    n_other = np.count_nonzero(np.bincount(np.asarray(store.label[idx]), minlength=len(store.classes)))
    log.info("distill.transfer: %d training drawings of %d classes outside data.classes, %.0f%% of each epoch, "
             "taught by the teachers alone", len(idx), n_other, 100 * cfg.distill.transfer)


def make_plan(cfg: Config, args, store: Store, split, device, d, online: OnlineTeachers | None = None) -> RunPlan:
    """Time a few steps on a throw-away model copy and fit the run to the device and budget (doodle.train.plan);
    with `online` teachers a step includes their pass."""
    rates = None
    if cfg.train.adapt and (cfg.train.max_minutes > 0 or device.type == "cpu"):
        saved = rng_state()  # the probe's model and batch must not shift the run's random streams
        kind = input_kind_of(cfg)
        model = build_model(cfg, len(split.classes), raster_spec(cfg).channels).to(device)
        bs = min(cfg.train.batch_size, 64) if device.type == "cpu" else cfg.train.batch_size
        ds = BatchDataset(store, split, cfg, kind, train=True, seed=args.seed, teachers=online and online.inputs)
        first = split.train_idx[:: max(1, len(split.train_idx) // bs)][:bs].tolist()
        rates = probe(cfg, model, lambda: ds[first], lambda b: to_input(b, device, False),
                      resolve_precision(cfg.train.amp, device), device, teach=online)
        del model
        set_rng_state(saved)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    plan = plan_run(cfg, len(split.classes), len(split.val_idx), device.type, rates, local_world, d.world)
    return RunPlan.from_dict(broadcast_object(plan.to_dict(), d))  # every rank runs rank 0's plan


def checkpoint_state(model, state: TrainState, epoch: int, quotas, best, history, classes, cfg, spent,
                     plan: RunPlan, swa: WeightAverage | None = None) -> dict:
    return {"model": model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler else None,
            "ema": state.ema.module.state_dict() if state.ema else None, "epoch": epoch, "step": state.step,
            "quotas": torch.as_tensor(quotas), "best": best, "history": history, "rng": rng_state(),
            "classes": classes, "config": cfg.to_dict(), "seconds": spent, "plan": plan.to_dict(),
            "swa": swa.state_dict() if swa else None}


def restore(ckpt: dict, model, state: TrainState, swa: WeightAverage | None = None) -> None:
    model.load_state_dict(ckpt["model"])
    if swa and ckpt.get("swa"):
        swa.load_state_dict(ckpt["swa"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    if state.scaler and ckpt["scaler"]:
        state.scaler.load_state_dict(ckpt["scaler"])
    if state.ema and ckpt["ema"]:
        state.ema.module.load_state_dict(ckpt["ema"])
    state.step = int(ckpt.get("step", 0))
    set_rng_state(ckpt["rng"])


def validate(model, state: TrainState, loaders, device, d, n_cls: int, progress: bool) -> dict:
    """Validate the raw weights and, with EMA, the averaged ones; the better by MAP@3 is kept.

    Returns the kept evaluation (logits, targets, metrics, per-class accuracy, its weights) plus both MAP@3s.
    """
    candidates = {"raw": model, **({"ema": state.ema.module} if state.ema else {})}
    results = {name: evaluate_weights(m, state, loaders, device, d, progress) for name, m in candidates.items()}
    kept = max(results, key=lambda k: (results[k]["val/map3"], k == "ema"))  # a tie goes to the EMA
    out = results[kept]
    out["acc_c"] = per_class_accuracy(out["logits"], out["target"], n_cls)
    out["weights"], out["module"] = kept, candidates[kept]
    out["map3_by_weights"] = {k: v["val/map3"] for k, v in results.items()}
    return out


def evaluate_weights(m, state: TrainState, loaders, device, d, progress: bool) -> dict:
    """One set of weights validated on every rank's shard (BatchNorm statistics from rank 0), with its metrics."""
    sync_buffers(m, d)
    ev = gather_eval(evaluate(m, loaders, device, state.precision, state.channels_last, progress), d)
    ev.update(val_metrics(ev["logits"], ev["target"]))
    return ev


def average_epoch(swa: WeightAverage | None, model, state: TrainState, epoch: int, ev: dict, loaders, device, d,
                  n_cls: int, progress: bool) -> dict | None:
    """Add the epoch's raw weights to the running average (train.swa_last) and validate it like the raw and EMA
    weights (`val_swa/map3`). Its first snapshot is the raw weights themselves: their MAP@3, no second pass.
    Returns the average's evaluation when it was validated, else None."""
    if swa is None or not swa.update(model, epoch):
        return None
    if swa.n == 1:
        ev["map3_by_weights"]["swa"] = ev["map3_by_weights"]["raw"]
        return None
    m = swa.on(device)
    out = evaluate_weights(m, state, loaders, device, d, progress)
    out["acc_c"] = per_class_accuracy(out["logits"], out["target"], n_cls)
    out["weights"], out["module"] = "swa", m
    ev["map3_by_weights"]["swa"] = out["val/map3"]
    return out


def best_of(epoch: int, ev: dict) -> dict:
    """What best.pt and last.pt record of the kept weights (rounded as in metrics.csv)."""
    return {"epoch": epoch, **{k: round(float(ev[k]), 6) for k in ("val/map3", "val/acc1", "val/loss")},
            "val/weights": ev["weights"]}


def final_validation(cfg: Config, model, run: RunDir, val_loaders, state, device, d, classes, progress) -> dict:
    """The best checkpoint's weights validated with the run's TTA (val.tta); its logits are the run's
    out-of-fold predictions (val_logits.npz) that ensembles read."""
    best = load_checkpoint(run.best, classes)
    model.load_state_dict(best["model"])
    sync_buffers(model, d)
    ev = gather_eval(evaluate(model, val_loaders, device, state.precision, state.channels_last, progress), d)
    metrics = {**val_metrics(ev["logits"], ev["target"]), **calibration(ev["logits"], ev["target"])}
    if d.main:
        save_logits(run.val_logits, ev["logits"], ev["key_id"], classes, ev["target"])
        best["metrics"] = {**best["metrics"], **metrics, "tta": cfg.val.tta}
        best["temperature"] = metrics["val/temperature"]
        save_checkpoint(best, run.best)
    # best.pt's weights may be an average (train.swa_last) that no epoch row names as its val/weights
    return {**metrics, "val/tta": cfg.val.tta, "best_epoch": int(best["epoch"]),
            "val/weights": best["metrics"].get("val/weights", "raw")}


def calibration(logits: np.ndarray, target: np.ndarray) -> dict:
    """The temperature fitted on the validation logits (the page divides logits by it) and the ECE of the top
    guess before and after; rankings, hence MAP@3, are unchanged by it."""
    logits = np.asarray(logits, np.float32)
    t = fit_temperature(logits, target)
    ece = [expected_calibration_error(softmax(logits / s, np.float64), target) for s in (1.0, t)]
    return {"val/temperature": t, "val/ece": ece[0], "val/ece_calibrated": ece[1]}


def train(args: argparse.Namespace, cfg: Config) -> int:
    """Train fold `args.fold` of `cfg` (parsed and loaded by doodle.train.console)."""
    check_distill_config(cfg)
    check_mix_config(cfg, input_kind_of(cfg))
    d, device = init_distributed(args.device)
    run = RunDir.make(args.out, cfg.name, args.fold)
    prepare_run_dir(run, args, d.main)
    # under DDP only rank 0 reports progress; the other ranks still print warnings and errors
    cli.setup_logging(logging.INFO if d.main else logging.WARNING, logfile=str(run.log) if d.main else None)
    seed_everything(args.seed, cfg.train.deterministic)
    store = Store(cfg.data.store)
    # the split's and sampler's index arrays (4 bytes a drawing each) live in unnamed files next to the run:
    # page cache at Kaggle's size, not process memory (the run folder itself may be replaced by rank 0)
    scratch = run.root.parent
    scratch.mkdir(parents=True, exist_ok=True)
    transfer = cfg.distill.transfer > 0  # only with distill.enabled (check_distill_config)
    split = apply_sources(store, cfg, make_split(store, cfg, args.fold, scratch, transfer))
    if transfer:
        report_transfer(cfg, store, split)
    soft = online = None
    if cfg.distill.enabled:  # the teachers are checked once, before any of their work
        teachers = teacher_folds(cfg.distill.teachers, args.fold, split.classes, store)
        if cfg.distill.init == "teacher":
            start_from_teacher(cfg, teachers)
        if cfg.distill.targets == "online":  # the teachers predict every batch, inside the student's budget
            online = OnlineTeachers(cfg, teachers, device)
            log.info("distill.targets=online: the teachers %s predict each training batch", online.describe())
        else:  # the teachers' pass is made once and kept in the run folder: outside the student's time budget
            soft = soft_targets(cfg, teachers, run.root, store, split, args.fold, device, d.main,
                                not args.no_progress and d.main)
    clock = time.monotonic()
    n_cls = len(split.classes)
    ckpt = load_checkpoint(run.last, split.classes) if args.resume else None
    plan = RunPlan.from_dict(ckpt["plan"]) if ckpt and ckpt.get("plan") else make_plan(cfg, args, store, split,
                                                                                       device, d, online)
    log.info(describe(plan, cfg))
    quotas, best, history, start = np.full(n_cls, plan.per_class), None, [], 0
    spent = time.monotonic() - clock  # the probe counts against the budget
    model, state, sampler, train_loader, val_loaders, train_ds = build(cfg, args, store, split, device, d, plan,
                                                                       quotas, soft, scratch, online)
    swa = build_average(cfg, model, plan.epochs)
    if ckpt:
        restore(ckpt, model, state, swa)
        quotas, best, history = ckpt["quotas"].numpy(), ckpt["best"], ckpt["history"]
        start, spent = ckpt["epoch"], ckpt["seconds"]
        if d.main:
            for f in (run.metrics, run.quotas):
                truncate_csv(f, start)
        log.info("resumed %s at epoch %d", run.last, start)
    if d.main:
        save_config(cfg, run.config, {"fold": args.fold, "seed": args.seed, "commit": git_commit(),
                                      "argv": sys.argv, "device": str(device), "world_size": d.world,
                                      "store_classes": len(store.classes), "classes": split.classes,
                                      "plan": plan.to_dict()})
    train_model = torch.compile(model) if cfg.train.compile else model
    if d.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    epoch_val, final_val = (val_seconds(cfg, len(split.val_idx) // d.world + 1, plan.rates["eval"])
                            if plan.rates else (0.0, 0.0))
    # one agreed clock for all ranks (see Budget): refreshed every log_every steps under DDP; the final
    # validation's time is kept out of the training budget
    minutes = cfg.train.max_minutes
    budget = Budget(max(minutes / 2, minutes - final_val / 60), spent,
                    max_over_ranks(device) if d.enabled else None, every=cfg.train.log_every if d.enabled else 1)
    epochs = plan.epochs
    progress = not args.no_progress and d.main

    def schedule_pos(e: float) -> float:
        if plan.budget_s:  # the plan sizes each epoch to the time left: the schedule follows the epochs
            return e
        return max(e, budget.fraction() * epochs)  # a budget without a plan: the clock; 0 without a budget

    tracker = EpochLog(run, split.classes, d.main, swa=swa is not None)
    if d.main and start == 0:
        tracker.images(train_ds, sampler)
    log.info("run %s: %d classes, %d train / %d val drawings, device %s x%d, model %s",
             run.root, n_cls, len(split.train_idx), len(split.val_idx), device, d.world, cfg.model.name)
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch, quotas)
        tr = train_one_epoch(train_model, train_loader, state, device, epoch, schedule_pos, budget.check,
                             progress=progress)
        check_replicas(model, d)
        ev = validate(model, state, val_loaders[:1], device, d, n_cls, progress)
        avg = average_epoch(swa, model, state, epoch, ev, val_loaders[:1], device, d, n_cls, progress)
        row = tracker.epoch(epoch, tr, ev, quotas, ev["acc_c"], budget.spent)
        history.append(row)
        if swa and d.main and swa.covers(epoch):
            save_average(swa, run, epoch, row, split.classes, cfg)
        top = best_of(epoch, avg if avg and avg["val/map3"] > ev["val/map3"] else ev)
        if best is None or top["val/map3"] > best["val/map3"]:
            best, kept = top, (avg if top["val/weights"] == "swa" else ev)
            if top["val/weights"] == "swa":
                log.info("epoch %d: the average of epochs %s (MAP@3 %.4f) is the best so far: best.pt holds it",
                         epoch, swa.span(epoch), top["val/map3"])
            if d.main:
                save_logits(run.val_logits, kept["logits"], kept["key_id"], split.classes, kept["target"])
                save_checkpoint({"model": kept["module"].state_dict(), "classes": split.classes,
                                 "config": cfg.to_dict(), "epoch": epoch, "metrics": best,
                                 "per_class_acc": torch.as_tensor(kept["acc_c"])}, run.best)
        budget.refresh()  # on every rank, at the same point: all stop after the same epoch
        factor = quota_weights(ev["acc_c"], cfg.train.boost_floor).sum() if cfg.train.boost else n_cls
        factor /= 1 - sampler.transfer_share  # the transfer set's drawings come on top of the quotas
        per_class = next_per_class(plan, factor, budget.seconds - budget.agreed,
                                   epochs - epoch - 1, tr["train/images"] / d.world / max(tr["train/seconds"], 1e-9),
                                   epoch_val, cfg.data.per_class, d.world)
        per_class = broadcast_object(per_class, d)  # measured speeds differ by rank; rank 0's epoch for all
        quotas = (boosted_quotas(per_class, ev["acc_c"], cfg.train.boost_floor) if cfg.train.boost
                  else np.full(n_cls, per_class))
        if d.main:
            save_checkpoint(checkpoint_state(model, state, epoch + 1, quotas, best, history, split.classes,
                                             cfg, budget.spent, plan, swa), run.last)
        if budget.over():
            log.info("time budget of %.1f min spent after epoch %d", cfg.train.max_minutes, epoch)
            break
    if d.enabled:
        torch.distributed.barrier()  # best.pt is written by rank 0
    final = final_validation(cfg, model, run, val_loaders, state, device, d, split.classes, progress)
    if swa:
        final.update(swa.summary(history))
    if d.main:
        summary = tracker.finish(history, budget.spent, device, d.world, len(split.train_idx),
                                 len(split.val_idx), final)
        print(json.dumps({k: summary[k] for k in ("run", "best_epoch", "val/map3", "val/acc1", "val/tta")}))
    if d.enabled:
        torch.distributed.destroy_process_group()
    return 0

