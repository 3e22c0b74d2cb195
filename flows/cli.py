"""The ``newsdedup`` command: run the flow by hand, and read what it wrote."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.records import read_records
from pipeline.state import StateError
from pipeline.status import collect_status, format_status

# Embedded Prefect: a slow first start on a busy machine must not time out, and an
# offline machine must not log telemetry errors. Users' own settings win.
_PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}


def _prefect_env() -> None:
    for key, value in _PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def cmd_run(args: argparse.Namespace) -> int:
    _prefect_env()
    from flows.ingest import ingest
    from pipeline.ingest import RunSummary, summary_markdown
    from pipeline.state import ProcessedDirLocked

    try:
        result = ingest(raw_dir=args.raw_dir, processed_dir=args.processed_dir,
                        lock_wait_seconds=args.wait)
    except ProcessedDirLocked as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 3
    print(summary_markdown(RunSummary(**result)), end="")
    return 0


def cmd_records(args: argparse.Namespace) -> int:
    out = sys.stdout
    for record in read_records(args.processed_dir):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = collect_status(Path(args.processed_dir), Path(args.raw_dir) if args.raw_dir else None)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsdedup", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the ingest flow once over the raw dir (embedded Prefect, no server)")
    run.add_argument("--raw-dir", default="raw")
    run.add_argument("--processed-dir", default="processed")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="if another run holds processed/, wait this long for it instead of exiting")
    run.set_defaults(func=cmd_run)

    records = sub.add_parser("records", help="print every current record as JSON Lines")
    records.add_argument("processed_dir", nargs="?", default="processed", metavar="PROCESSED_DIR")
    records.set_defaults(func=cmd_records)

    status = sub.add_parser("status", help="what the processed dir holds and how the last run went")
    status.add_argument("processed_dir", nargs="?", default="processed", metavar="PROCESSED_DIR")
    status.add_argument("--raw-dir", default=None, help="also count raw files not processed yet")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except StateError as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        code = 2
    except BrokenPipeError:  # `newsdedup records | head`
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
