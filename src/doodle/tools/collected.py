"""The team's collected drawings: counts, and an export in the competition's formats.

    python tools/collected.py stats  [--collected input/collected] [--json]
    python tools/collected.py export --to kaggle-csv|ndjson [--accepted] --out DIR [--collected input/collected]

`stats`: drawings per person, per word and per review status (accepted / rejected / unreviewed), decisions
per reviewer. `export`: one file per word; `kaggle-csv` is Kaggle's train_simplified format
(`countrycode,drawing,key_id,recognized,timestamp,word`, drawings simplified as `prepare` simplifies raw
ndjson), `ndjson` the collected lines as they are (Google's raw format plus "author"). `--accepted` writes
only the drawings whose latest review decision is accept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from doodle import cli, resources
from doodle.store import collected as coll


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in [("stats", "counts per person, word and review status"),
                       ("export", "write the drawings as Kaggle CSV or ndjson, one file per word")]:
        s = cli.add_debug_flag(sub.add_parser(name, help=text, description=text))
        s.add_argument("--collected", type=Path, default=Path("input/collected"), help="the collected folder")
    stats = sub.choices["stats"]
    stats.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    export = sub.choices["export"]
    export.add_argument("--to", choices=coll.EXPORT_FORMATS, required=True)
    export.add_argument("--accepted", action="store_true", help="only drawings accepted by review")
    export.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    return p.parse_args(argv)


def read(root: Path) -> tuple[list[coll.Collected], dict, list[str]]:
    if not root.is_dir():
        raise cli.UserError(f"{root}: no such folder (the drawing page's --collected folder)")
    items, problems = coll.read_drawings(root)
    latest, bad = coll.read_decisions(root)
    for p in problems + bad:
        print(f"warning: {p}", file=sys.stderr)
    return items, latest, problems + bad


def table(title: str, counts: dict) -> str:
    width = max([len(str(k)) for k in counts] + [len(title)])
    return "\n".join([title] + [f"  {str(k):<{width}}  {v:>6}" for k, v in counts.items()])


def main(argv=None) -> int:
    args = parse_args(argv)
    items, latest, problems = read(args.collected)
    if args.command == "stats":
        s = coll.stats(items, latest) | {"problems": len(problems)}
        if args.json:
            print(json.dumps(s))
        else:
            print(f"{s['drawings']} drawings in {args.collected}")
            for key, title in [("per_status", "status"), ("per_author", "person"), ("per_word", "word"),
                               ("per_reviewer", "decisions by reviewer")]:
                print(table(title, s[key]))
        return 0
    if args.out.resolve() == args.collected.resolve() or args.collected.resolve() in args.out.resolve().parents:
        raise cli.UserError(f"--out {args.out}: inside the collected folder; choose another folder")
    chosen = [it for it in items if not args.accepted or coll.status(it.key_id, latest) == "accepted"]
    res = coll.export(chosen, args.out, args.to, resources.google_classes())
    print(json.dumps({"format": args.to, "out": str(args.out), "accepted_only": args.accepted,
                      "drawings": len(items), "left_out_by_review": len(items) - len(chosen)} | res))
    return 0


def console() -> int:
    """`doodle-collected`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
