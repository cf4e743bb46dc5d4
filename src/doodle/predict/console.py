"""`python src/predict.py --run outputs/r18_boost/fold0 --test input/test_simplified.csv [--tta flip]` (console
script `doodle-predict`).

The arguments are parsed here, before the predict recipe (doodle.predict.recipe) and with it torch and timm are
imported (~10 s on a 2-core CPU), so `--help` and a mistyped option answer at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from doodle import cli


def parse_args(argv):
    p = argparse.ArgumentParser(description="predict drawings with a trained run")
    p.add_argument("--run", required=True, type=Path,
                   help="outputs/<run>/fold<k> (or outputs/<run>: its first fold), or an exported .onnx / .doodle")
    p.add_argument("--test", type=Path, default=Path("input/test_simplified.csv"),
                   help="Kaggle test CSV, Google ndjson, or a folder of Kaggle train CSVs")
    p.add_argument("--labels", type=Path, help="key_id,word CSV with the answers, to report MAP@3")
    p.add_argument("--tta", choices=["none", "flip"], default=None,
                   help="test-time augmentation (default: the run's val.tta, as its validation logits were made)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers rendering the drawings")
    p.add_argument("--out", type=Path, help="submission CSV (default submissions/<run>_fold<k>.csv)")
    p.add_argument("--logits", type=Path, help="logits file (default <run>/test_logits.npz)")
    return cli.add_debug_flag(p).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from doodle.predict.recipe import predict  # torch, timm: only once the arguments are right

    return predict(args)


def console() -> int:
    """`doodle-predict`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
