"""Download the competition files (Kaggle API) or Google's per-class ndjson files (public bucket).

    python tools/download.py kaggle [--dest input/]
    python tools/download.py google [--format raw|simplified] [--classes all|cat,dog|FILE]
                                    [--dest input/google/] [--workers 4] [--base-url URL]

    python tools/download.py model <URL or path> --sha256 HEX [--dest exports/]

Google files land in DEST/<format>/<word>.ndjson; an interrupted download resumes on the next run. A model
(an exported .onnx / .doodle) lands in DEST/<name> only once its sha256 matches.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from doodle import cli, resources
from doodle.resources import load_class_list
from doodle.sources import google, kaggle_api, model_file

log = logging.getLogger("download")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = p.add_subparsers(dest="source", required=True)

    k = cli.add_debug_flag(sub.add_parser("kaggle", help="competition files through the kaggle API"))
    k.add_argument("--dest", type=Path, default=Path("input"), help="folder for the competition files")
    k.add_argument("--files", nargs="+", default=list(kaggle_api.KAGGLE_FILES),
                   help="competition files to fetch (zips are unpacked to a folder and removed)")
    k.add_argument("--competition", default=kaggle_api.COMPETITION, help=argparse.SUPPRESS)
    k.set_defaults(run=run_kaggle)

    g = cli.add_debug_flag(sub.add_parser("google", help="Google's per-class ndjson files"))
    g.add_argument("--format", choices=google.GOOGLE_FORMATS, default="simplified",
                   help="raw (timed strokes) or simplified (Ramer-Douglas-Peucker, 0..255)")
    g.add_argument("--classes", default="all",
                   help="'all' (Google's 345), 'cat,dog', or a file of one word per line")
    g.add_argument("--dest", type=Path, default=Path("input/google"), help="files go to DEST/<format>/")
    g.add_argument("--base-url", default=google.GOOGLE_BASE_URL, help="bucket URL (tests use a local one)")
    g.add_argument("--workers", type=int, default=4, help="parallel downloads (threads)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds before a silent connection fails")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(run=run_google)

    m = cli.add_debug_flag(sub.add_parser("model", help="an exported model (.onnx / .doodle), checksum verified"))
    m.add_argument("source", help="http(s) URL or local path of the file")
    m.add_argument("--sha256", required=True, help="the file's expected sha256 (64 hex digits)")
    m.add_argument("--dest", type=Path, default=Path("exports"), help="folder for the model")
    m.add_argument("--timeout", type=float, default=60.0, help="seconds before a silent connection fails")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(run=run_model)
    return p.parse_args(argv)


def run_kaggle(args: argparse.Namespace) -> dict:
    outcome = kaggle_api.download_kaggle(args.dest, args.files, args.competition)
    return {"dest": str(args.dest), "files": outcome}


def run_google(args: argparse.Namespace) -> dict:
    known = resources.google_classes()
    classes = resources.check_classes(load_class_list(args.classes, known), known)
    urls = google.google_urls(classes, args.format, args.base_url)
    folder = args.dest / args.format
    jobs = {folder / f"{word}.ndjson": url for word, url in urls.items()}
    log.info("%d %s file(s) from %s into %s", len(jobs), args.format, args.base_url, folder)
    counts = google.download_many(jobs, workers=args.workers, timeout=args.timeout,
                                    progress=not args.no_progress)
    return {"dest": str(folder), **{k: counts.get(k, 0) for k in ("downloaded", "resumed", "skipped")}}


def run_model(args: argparse.Namespace) -> dict:
    return model_file.fetch_model(args.source, args.dest, args.sha256, args.timeout, not args.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    print(json.dumps(args.run(args)))
    return 0


def console() -> int:
    """`doodle-download`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
