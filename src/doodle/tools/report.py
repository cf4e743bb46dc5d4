"""Write report.md (with PNG figures in report/) for a run folder or one fold folder.

    python tools/report.py outputs/<run> [--store input/store] [--out DIR] [--pairs 15]

Sections: summary numbers per fold (mean and out-of-fold rows for several folds), learning curves,
calibration (the temperature of each fold, ECE before / after, a reliability diagram), per-class accuracy, the most confused class pairs with example drawings, per-class quotas over epochs,
and a grid of inputs as the model sees them. The drawing-based figures need the run's store
(`data.store` of its config, or --store); without it they are skipped with a note.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from doodle import cli
from doodle.metrics import (
    expected_calibration_error,
    fit_temperature,
    per_class_accuracy,
    reliability,
    softmax,
)
from doodle.render.raster import ENCODINGS
from doodle.runs import figures as figs
from doodle.runs import report as rep

log = logging.getLogger("report")
FIGS = "report"  # subfolder of the report's folder that holds the PNGs


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("run", type=Path, help="outputs/<run> or outputs/<run>/fold<k>")
    p.add_argument("--store", type=Path, help="the prepared store (default: the run config's data.store)")
    p.add_argument("--out", type=Path, help="folder for report.md and report/ (default: the run folder)")
    p.add_argument("--pairs", type=int, default=15, help="confused class pairs in the table")
    return cli.add_debug_flag(p).parse_args(argv)


def summary_section(run: rep.Run, oof: dict | None) -> str:
    cfg, facts = run.cfg, run.folds[0].facts
    header = ["fold", "best epoch", "MAP@3", "acc@1", "val loss", "epochs", "images seen", "wall min",
              "images/s", "train", "val"]
    rows = []
    for f in run.folds:
        s = f.summary
        rows.append([f.k, s["best_epoch"], f"{s['val/map3']:.4f}", f"{s['val/acc1']:.4f}", f"{s['val/loss']:.4f}",
                     s["epochs_run"], f"{s['images_seen']:,}", f"{s['wall_seconds'] / 60:.1f}",
                     f"{s['train_images_per_second']:.0f}", s.get("n_train", "?"), s.get("n_val", "?")])
    if len(run.folds) > 1:
        m = rep.run_row(run, oof)
        rows.append(["mean", "", f"{m['map3']:.4f}", f"{m['acc1']:.4f}", "", f"{m['epochs']:.1f}",
                     f"{m['images_seen']:,.0f}", f"{m['wall_minutes']:.1f}", f"{m['images_per_second']:.0f}", "", ""])
        if oof is not None:
            rows.append(["OOF", "", f"{m['oof_map3']:.4f}", f"{m['oof_acc1']:.4f}", "", "", "", "", "", "",
                         len(oof["target"])])
    partial = [str(f.k) for f in run.folds if f.summary.get("partial")]
    lines = [f"# Report: {run.name}", "",
             f"`{run.path}`: {len(run.folds)} fold(s); model **{cfg.model.name}**, encoding "
             f"**{cfg.raster.encoding}** at {cfg.data.img_size} px, boost "
             f"{'on (floor ' + format(cfg.train.boost_floor, 'g') + ')' if cfg.train.boost else 'off'}, "
             f"{cfg.data.per_class} drawings per class per epoch, {len(facts.get('classes', [])) or '?'} classes; "
             f"commit `{facts.get('commit', '?')}`, device {facts.get('device', '?')} x{facts.get('world_size', 1)}.",
             "", "## Summary", "", rep.markdown_table(header, rows)]
    if partial:
        lines += ["", f"Fold(s) {', '.join(partial)} have no summary.json (killed or still running): "
                      "their numbers come from metrics.csv."]
    return "\n".join(lines)


def class_section(oof: dict, out: Path) -> str:
    n_cls = len(oof["classes"])
    acc = per_class_accuracy(oof["logits"], oof["target"], n_cls)
    counts = np.bincount(oof["target"], minlength=n_cls)
    png = figs.plot_class_accuracy(acc, counts, oof["classes"], out / FIGS / "class_accuracy.png")
    return (f"## Per-class accuracy\n\nTop-1 accuracy of each class on the {len(oof['target']):,} out-of-fold "
            f"drawings (folds {sorted(set(oof['fold'].tolist()))}, best epoch of each); n = drawings of the class."
            f"\n\n![per-class accuracy]({png.relative_to(out).as_posix()})")


def fold_temperatures(run: rep.Run, oof: dict) -> dict[int, tuple[float, str]]:
    """Each fold's temperature: the one its training stored (summary.json), else fitted here on its logits."""
    out = {}
    for f in run.folds:
        rows = oof["fold"] == f.k
        if "val/temperature" in f.summary:
            out[f.k] = (float(f.summary["val/temperature"]), "stored by training")
        elif rows.any():
            out[f.k] = (fit_temperature(oof["logits"][rows], oof["target"][rows]), "fitted by this report")
    return out


def calibration_section(run: rep.Run, oof: dict, out: Path) -> str:
    temps = fold_temperatures(run, oof)
    t_row = np.array([temps.get(int(k), (1.0, ""))[0] for k in oof["fold"]], np.float32)[:, None]
    logits = np.asarray(oof["logits"], np.float32)
    before, after = softmax(logits, np.float64), softmax(logits / t_row, np.float64)
    rows = []
    for k, (t, how) in sorted(temps.items()):
        m = oof["fold"] == k
        rows.append([k, f"{t:.3f}", how, f"{expected_calibration_error(before[m], oof['target'][m]):.4f}",
                     f"{expected_calibration_error(after[m], oof['target'][m]):.4f}"])
    e0, e1 = (expected_calibration_error(p, oof["target"]) for p in (before, after))
    png = figs.plot_reliability({f"raw softmax (ECE {e0:.3f})": reliability(before, oof["target"]),
                                 f"temperature-scaled (ECE {e1:.3f})": reliability(after, oof["target"])},
                                out / FIGS / "reliability.png", f"{run.name}: calibration of the top guess")
    return "\n".join([
        "## Calibration", "",
        "The page divides each fold's logits by a temperature fitted on its validation logits at the end of "
        "training (minimum NLL), and says \"not sure\" when the top probability is under `app.not_sure`. "
        "Rankings, hence MAP@3, do not change. ECE: expected calibration error of the top guess, 15 bins.", "",
        rep.markdown_table(["fold", "temperature", "", "ECE before", "ECE after"], rows, "rrlrr"), "",
        f"All {len(oof['target']):,} out-of-fold drawings: ECE {e0:.4f} before, {e1:.4f} after.", "",
        f"![reliability diagram]({png.relative_to(out).as_posix()})"])


def confusion_section(oof: dict, pairs: list[dict], drawings: rep.Drawings | None, note: str, out: Path) -> str:
    if not pairs:
        return "## Most confused pairs\n\nNo mistakes in the out-of-fold predictions."
    rows = [[p["true"], p["pred"], p["count"], f"{100 * p['share']:.1f}%"] for p in pairs]
    lines = ["## Most confused pairs", "", "Out-of-fold mistakes, counted by (true class, top-1 prediction).", "",
             rep.markdown_table(["true", "predicted", "count", "% of true class"], rows, "llrr")]
    if drawings is None:
        return "\n".join([*lines, "", f"_Example drawings skipped: {note}._"])
    prob = softmax(oof["logits"])
    grid = []
    for p in pairs[:6]:
        wrong = np.flatnonzero((oof["target"] == p["t"]) & (oof["pred"] == p["p"]))[:4]
        right = np.flatnonzero((oof["target"] == p["p"]) & (oof["pred"] == p["p"]))[:1]
        cells = [(img, f"{p['pred'][:14]} {prob[i, p['p']]:.2f}\n{p['true'][:14]} {prob[i, p['t']]:.2f}", figs.BAD)
                 for i in wrong if (img := drawings.render(oof["key_id"][i])) is not None]
        cells += [(img, f"a real {p['pred'][:14]}\n(for reference)", figs.GOOD) for i in right
                  if (img := drawings.render(oof["key_id"][i])) is not None]
        if cells:
            grid.append((f"{p['true']} →\n{p['pred']}\n({p['count']}x)", cells))
    if not grid:
        return "\n".join([*lines, "", "_Example drawings skipped: none of these drawings is in the store._"])
    png = figs.plot_image_grid(grid, out / FIGS / "confusions.png",
                              "misclassified drawings (red; captions: probability of the predicted and the true "
                              "class)\nand a correctly classified drawing of the predicted class (green)")
    return "\n".join([*lines, "", f"![confused pairs]({png.relative_to(out).as_posix()})"])


def quota_section(run: rep.Run, out: Path) -> str:
    quotas = rep.quota_table(run)
    if quotas is None:
        return "## Quotas\n\n_No quotas.csv in this run._"
    if quotas.nunique().max() <= 1 and quotas.iloc[0].nunique() <= 1:
        return (f"## Quotas\n\nEvery class got {quotas.iloc[0, 0]:.0f} drawings in every epoch "
                f"(boost {'on' if run.cfg.train.boost else 'off'}).")
    title = "drawings per class per epoch" + (f" (mean of {len(run.folds)} folds)" if len(run.folds) > 1 else "")
    png = figs.plot_quotas(quotas, out / FIGS / "quotas.png", title)
    return (f"## Quotas\n\nAccuracy-driven resampling: the classes with the largest and smallest quota in the "
            f"last epoch (top and bottom), and the spread over all classes.\n\n"
            f"![quotas]({png.relative_to(out).as_posix()})")


def inputs_section(run: rep.Run, oof: dict, drawings: rep.Drawings, out: Path) -> str:
    classes = oof["classes"]
    picks = np.unique(np.linspace(0, len(classes) - 1, min(8, len(classes))).round().astype(int))
    grid = []
    for c in picks:
        keys = oof["key_id"][oof["target"] == c][:6]
        preds = oof["pred"][oof["target"] == c][:6]
        cells = [(img, f"→ {classes[p]}"[:18], figs.GOOD if p == c else figs.BAD)
                 for k, p in zip(keys, preds, strict=True) if (img := drawings.render(k)) is not None]
        if cells:
            grid.append((classes[c], cells))
    if not grid:
        return "## Inputs\n\n_None of the validation drawings is in the store._"
    from doodle.models.factory import input_kind_of  # torch + timm: only when the section is written

    enc = run.cfg.raster.encoding
    png = figs.plot_image_grid(grid, out / FIGS / "inputs.png",
                              f"validation inputs ({enc}, {run.cfg.data.img_size} px): caption = top-1 prediction")
    chan = figs.plot_channels([cells[0][0] for _, cells in grid[:3]], [label for label, _ in grid[:3]],
                             ENCODINGS[enc], out / FIGS / "channels.png")
    seen = ("Drawings as the model sees them" if input_kind_of(run.cfg) == "image" else
            "Drawings rendered with the run's raster settings (this model reads point sequences, not images)")
    return (f"## Inputs\n\n{seen} (channels {', '.join(ENCODINGS[enc])} shown as RGB); "
            f"captions are the top-1 predictions, green when right.\n\n"
            f"![inputs]({png.relative_to(out).as_posix()})\n\n![channels]({chan.relative_to(out).as_posix()})")


def open_drawings(run: rep.Run, store: Path | None, oof: dict | None) -> tuple[rep.Drawings | None, str]:
    path = store or Path(run.cfg.data.store)
    if oof is None:
        return None, "no val_logits.npz"
    try:
        drawings = rep.Drawings(run.cfg, path)
    except FileNotFoundError as e:
        log.warning("drawing-based figures skipped: %s", e)
        return None, f"store `{path}` not available here (a moved run? point --store at it)"
    except (OSError, ValueError) as e:
        log.warning("drawing-based figures skipped: %s", e)
        return None, f"store `{path}` not readable ({e})"
    drawings.index(oof["key_id"])
    return drawings, ""


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    run = rep.load_run_records(args.run)
    out = args.out or args.run
    oof = rep.oof_logits(run)
    for stale in (out / FIGS).glob("*.png"):  # figures of an earlier report that this one may not redraw
        stale.unlink()
    drawings, note = open_drawings(run, args.store, oof)
    sections = [summary_section(run, oof)]
    png = figs.plot_curves(run, out / FIGS / "curves.png")
    sections.append(f"## Learning curves\n\n![learning curves]({png.relative_to(out).as_posix()})")
    if oof is None:
        sections.append("## Per-class accuracy and confusions\n\n_Skipped: no fold has val_logits.npz._")
    else:
        sections.append(calibration_section(run, oof, out))
        sections.append(class_section(oof, out))
        pairs = rep.confusion_pairs(oof["target"], oof["pred"], oof["classes"], args.pairs)
        sections.append(confusion_section(oof, pairs, drawings, note, out))
    sections.append(quota_section(run, out))
    if drawings is not None:
        sections.append(inputs_section(run, oof, drawings, out))
    else:
        sections.append(f"## Inputs\n\n_Skipped: {note}._")
    report = out / "report.md"
    report.write_text("\n\n".join(sections) + "\n")
    log.info("wrote %s", report)
    return 0


def console() -> int:
    """`doodle-report`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
