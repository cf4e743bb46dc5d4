"""Compare runs in one markdown table, best MAP@3 first.

    python tools/compare.py outputs/a outputs/b outputs/c/fold0 ... [--out comparison.md] [--json]

Each argument is a run folder (all its fold<k> subfolders) or one fold folder. acc@1 and MAP@3 are the
means over folds of each fold's best epoch (summary.json); OOF MAP@3 scores the folds' val logits joined
(only for several folds). Epochs, images seen, wall minutes and images/s are means per fold.
--json prints the rows as JSON instead of the table (the markdown still goes to --out).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from doodle import cli
from doodle.runs import report as rep

log = logging.getLogger("compare")
HEADER = ["run", "folds", "acc@1", "MAP@3", "OOF MAP@3", "epochs", "images seen", "wall min", "images/s",
          "device", "encoding", "boost", "model"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="outputs/<run> or outputs/<run>/fold<k>")
    p.add_argument("--out", type=Path, help="also write the markdown table to this file")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return cli.add_debug_flag(p).parse_args(argv)


def compare(paths: list[Path]) -> list[dict]:
    """One row per run (see `reporting.run_row`), sorted by mean MAP@3, best first."""
    rows = []
    for path in paths:
        if path.is_file():  # `outputs/*` also matches files such as a comparison.md
            log.warning("skipping %s: a file, not a run folder", path)
            continue
        run = rep.load_run_records(path)
        rows.append(rep.run_row(run, rep.oof_logits(run) if len(run.folds) > 1 else None))
    names = [r["run"] for r in rows]
    for r in rows:
        if names.count(r["run"]) > 1:  # two runs/demo from different output roots: show the paths
            r["run"] = r["path"]
    if not rows:
        raise cli.UserError("no run folders among the arguments")
    return sorted(rows, key=lambda r: -r["map3"])


def table(rows: list[dict]) -> str:
    cells = [[r["run"] + (" *" if r["partial"] else ""), ",".join(map(str, r["folds"])), f"{r['acc1']:.4f}",
              f"{r['map3']:.4f}", "" if r["oof_map3"] is None else f"{r['oof_map3']:.4f}", f"{r['epochs']:g}",
              f"{r['images_seen']:,.0f}", f"{r['wall_minutes']:.1f}", f"{r['images_per_second']:.0f}",
              r["device"], r["encoding"], r["boost"], r["model"]] for r in rows]
    notes = ["", "acc@1 / MAP@3: mean over folds (best epoch of each); OOF: the folds' val logits joined; "
                 "epochs, images seen, wall min and images/s: mean per fold."]
    if any(r["partial"] for r in rows):
        notes.append("* a fold without summary.json (killed or still running): its numbers come from metrics.csv.")
    return rep.markdown_table(HEADER, cells, "lr" + "r" * 7 + "llll") + "\n" + "\n".join(notes) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging(logging.WARNING)
    rows = compare(args.runs)
    text = table(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps(rows, indent=1) if args.json else text, end="" if not args.json else "\n")
    return 0


def console() -> int:
    """`doodle-compare`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
