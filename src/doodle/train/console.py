"""`python src/train.py --cfg configs/r18_boost.yaml --fold 0 [--set train.epochs=3]` (console script
`doodle-train`).

Several GPUs or machines: `torchrun --nproc_per_node 4 src/train.py --cfg ... --fold 0`.
The arguments are parsed and the config is loaded here, before the recipe (doodle.train.recipe) and with it torch
and timm are imported (~10 s on a 2-core CPU), so `--help`, a mistyped option and a wrong config key or value
answer at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from doodle import cli
from doodle.config import load_config


def parse_args(argv):
    p = argparse.ArgumentParser(description="train one fold of a doodle config")
    p.add_argument("--cfg", required=True, type=Path, help="configs/<name>.yaml")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--resume", action="store_true", help="continue from checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys: --set a.b=1 c.d=2 (repeatable)")
    p.add_argument("--out", type=Path, default=Path("outputs"), help="outputs root")
    p.add_argument("--name", default=None, help="run name (default: the config's name / file stem)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return cli.add_debug_flag(p).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.cfg, args.set)
    if args.name:
        cfg.name = args.name
    from doodle.train.recipe import train  # torch, timm: only once the arguments and the config are right

    return train(args, cfg)


def console() -> int:
    """`doodle-train`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
