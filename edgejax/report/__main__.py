"""``python -m edgejax.report DIRS... --out report/ [--bench bench.json] [--confusion RUN]``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edgejax.report",
        description="Markdown tables and PNG plots from edgejax run and study directories.",
    )
    p.add_argument("dirs", nargs="+", help="run dirs, study dirs, or folders holding them")
    p.add_argument("--out", required=True, help="output folder (README.md, tables.json, *.png)")
    p.add_argument(
        "--bench",
        action="append",
        default=[],
        help="JSON written by `python -m edgejax.bench --json` (repeatable)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="SQLAlchemy URL of the studies (default: each study dir's study.db)",
    )
    p.add_argument(
        "--confusion",
        default="best",
        help="run dir for the confusion matrix, 'best' (default) or 'none'",
    )
    p.add_argument("--title", default="edgejax report")
    args = p.parse_args(argv)
    from . import build_report

    try:
        res = build_report(
            args.dirs,
            args.out,
            bench=args.bench,
            storage=args.storage,
            confusion=None if args.confusion == "none" else args.confusion,
            title=args.title,
        )
    except FileNotFoundError as e:
        print(f"edgejax.report: error: {e}", file=sys.stderr)
        return 2
    print(f"edgejax.report: wrote {res['markdown']} and {len(res['plots'])} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
