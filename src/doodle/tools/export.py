"""Export a finished run as one file: ONNX (fp32 or static int8) or a `.doodle` package, checked first.

    python tools/export.py --run outputs/r18_boost/fold0 --format onnx [--int8] [--out exports/NAME.onnx]
    python tools/export.py --run outputs/r18_boost/fold0 --format package [--out exports/NAME.doodle]

The checks run on real drawings of the run's store (its config's data.store, or --store): the exported
logits against the run's on --check-rows validation drawings (fail above --max-diff), and for --int8 the
top-1 agreement and MAP@3 against fp32 on the whole validation fold. A file that fails is not written;
one that passes is written atomically, with the checks inside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from doodle import cli
from doodle.export.bounds import Bounds
from doodle.runs.folder import atomic_write_bytes

log = logging.getLogger("export")
SUFFIX = {"onnx": ".onnx", "package": ".doodle"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = Bounds()
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--run", required=True, type=Path, help="outputs/<run>/fold<k> (or outputs/<run>: its first fold)")
    p.add_argument("--format", choices=list(SUFFIX), default="onnx")
    p.add_argument("--int8", action="store_true", help="onnx only: static int8, calibrated on training drawings")
    p.add_argument("--out", type=Path, help="default exports/<run>_fold<k>[_int8].onnx|.doodle")
    p.add_argument("--store", type=Path, help="the run's store, when it is not at its config's data.store")
    p.add_argument("--check-rows", type=int, default=d.check_rows, help="validation drawings for the logit check")
    p.add_argument("--calib-rows", type=int, default=d.calib_rows, help="training drawings to calibrate int8")
    p.add_argument("--max-diff", type=float, default=d.max_diff, help="largest abs logit difference accepted")
    p.add_argument("--min-top1", type=float, default=d.min_top1, help="int8: least top-1 agreement with fp32")
    p.add_argument("--max-map3-drop", type=float, default=d.max_map3_drop,
                   help="int8: most validation MAP@3 lost against fp32 (0.005 = half a point)")
    return cli.add_debug_flag(p).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    from doodle.export.make import make_onnx, make_package  # torch, onnx: after the arguments are read
    from doodle.predict.exported import fold_split, is_exported
    from doodle.predict.loaded_run import load_run

    if args.int8 and args.format != "onnx":
        raise cli.UserError("--int8 is for --format onnx (a package keeps the run's float32 weights)")
    if is_exported(args.run):
        raise cli.UserError(f"--run {args.run}: export from a run folder, not from an exported file")
    lr = load_run(args.run, "cpu")
    out = args.out or Path("exports") / (f"{lr.run.run_name}_fold{lr.run.fold}"
                                         f"{'_int8' if args.int8 else ''}{SUFFIX[args.format]}")
    if out.suffix != SUFFIX[args.format]:
        raise cli.UserError(f"--out {out}: a {args.format} export is named *{SUFFIX[args.format]}")
    store, split = fold_split(lr.cfg, lr.run.fold, args.store)
    bounds = Bounds(args.check_rows, args.calib_rows, args.max_diff, args.min_top1, args.max_map3_drop)
    if args.format == "onnx":
        data, report = make_onnx(lr, store, split, args.int8, bounds, str(out))
    else:
        data, report = make_package(lr, store, split, bounds, str(out))
    atomic_write_bytes(out, data)
    log.info("wrote %s (%.1f MB)", out, len(data) / 1e6)
    print(json.dumps({"out": str(out), "format": args.format, "int8": args.int8, "bytes": len(data), **report}))
    return 0


def console() -> int:
    """`doodle-export`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
