"""The ``newsdedup`` command: run the flow by hand, and read what it wrote."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.records import check_fields, iter_record_lines, read_records
from pipeline.state import StateError

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
    # Prefect's state stays with the project (as with `make run` and `serve`), not in ~/.prefect.
    os.environ.setdefault("PREFECT_HOME", str((Path.cwd() / ".prefect").resolve()))


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.lock import writer_lock
    from pipeline.state import ProcessedDirLocked

    # Checked before Prefect is even imported: a typo or a busy processed/ fails fast.
    if not Path(args.raw_dir).is_dir():
        print(f"newsdedup: raw dir {args.raw_dir} does not exist or is not a directory", file=sys.stderr)
        return 2
    processed = Path(args.processed_dir)
    try:
        # Held to the end, shared with the flow this process starts: a second run started
        # meanwhile is refused here, before Prefect, with one line (exit 3).
        with writer_lock(processed, args.wait, share_in_process=True):
            try:
                return _run_locked(args, processed)
            finally:
                _stop_children()
    except ProcessedDirLocked as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 3


def _run_locked(args: argparse.Namespace, processed: Path) -> int:
    from pipeline.check import repair_on_start
    from pipeline.ingest import RunSummary, pending_files, summary_markdown
    from pipeline.read import RawDirError
    from pipeline.state import ProcessedDirLocked

    check_state_database(processed)
    # Before "nothing new": parts, filter and reports as the last committed run left them
    # (also the parts of a run killed after its commit), repaired from the database if not.
    for finding in repair_on_start(processed):
        print(f"newsdedup: repaired before the run: {finding}", file=sys.stderr)
    if not args.force and pending_files(Path(args.raw_dir), processed) == 0:
        print(f"newsdedup: nothing new under {args.raw_dir} since the last run; no flow run started "
              "(--force runs one anyway)")
        return 0
    _prefect_env()
    from flows.ingest import ingest

    deferred_before = None
    while True:
        try:
            options = {"max_run_bytes": args.max_run_bytes} if args.max_run_bytes else {}
            result = ingest(raw_dir=args.raw_dir, processed_dir=args.processed_dir,
                            lock_wait_seconds=args.wait, progress_bar=sys.stderr.isatty(), **options)
        except ProcessedDirLocked as exc:
            print(f"newsdedup: {exc}", file=sys.stderr)
            return 3
        except RawDirError as exc:
            print(f"newsdedup: {exc}", file=sys.stderr)
            return 2
        print(summary_markdown(RunSummary(**result)), end="")
        deferred = result["files_deferred"]
        # A large backlog is read in several runs, each bounded in memory (max_run_bytes).
        if args.once or not deferred or (deferred_before is not None and deferred >= deferred_before):
            return 0
        deferred_before = deferred
        print(f"\n{deferred} files left: running again\n")


# The whole-file integrity check before a run, up to this size; larger databases get the
# structural reads only (the schema, the small tables), which catch a truncated file.
QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024


def check_state_database(processed: Path) -> None:
    """Raises ``sqlite3.DatabaseError`` when the state database is damaged; nothing when it is
    fine or absent (a first run). Read-only: called before a run starts Prefect."""
    from pipeline.state import STATE_FILE, connect

    path = processed / STATE_FILE
    if not path.exists():
        return
    conn = connect(processed, readonly=True)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        for table in ("meta", "runs", "parts"):
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        if path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("integrity check failed: " + "; ".join(problems)[:300])
    finally:
        conn.close()


def cmd_check(args: argparse.Namespace) -> int:
    from pipeline.check import check_processed
    from pipeline.lock import writer_lock
    from pipeline.state import ProcessedDirLocked

    processed = Path(args.processed_dir_option or args.processed_dir)
    try:
        with writer_lock(processed, args.wait):  # the files and the database from one moment, no run between
            findings = check_processed(processed, repair=args.repair)
            remaining = check_processed(processed) if args.repair and findings else findings
    except ProcessedDirLocked as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 3
    for finding in findings:
        print(finding)
    if args.repair:
        for finding in remaining:
            print(f"still wrong after the repair: {finding}")
    if remaining:
        return 1
    if not findings:
        print(f"newsdedup: {processed} is consistent: database, parts, Bloom filter and reports agree")
    return 0


def _stop_children() -> None:
    """No process of ours outlives `newsdedup run`: worker processes, then the forkserver and
    the resource tracker that multiprocessing leaves behind (they would exit only after us)."""
    import gc
    import multiprocessing

    for child in multiprocessing.active_children():
        child.terminate()
        child.join(5)
    gc.collect()  # finalizers of pool semaphores talk to the resource tracker: before it stops
    from multiprocessing import forkserver, resource_tracker

    for helper in (getattr(forkserver, "_forkserver", None), getattr(resource_tracker, "_resource_tracker", None)):
        try:
            helper._stop()  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001  (best effort: these exit after us anyway)
            pass


def _usage_error(message: object) -> int:
    print(f"newsdedup: {message}", file=sys.stderr)
    return 2


def cmd_records(args: argparse.Namespace) -> int:
    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    try:
        check_fields(fields)
    except ValueError as exc:
        return _usage_error(exc)
    out = sys.stdout
    if fields or args.strip_repeats:
        for record in read_records(args.processed_dir, args.since, fields=fields, strip_repeats=args.strip_repeats):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:  # the stored lines as they are: the same bytes as the part files, no re-encoding
        for line in iter_record_lines(args.processed_dir, args.since):
            out.write(line + "\n")
    return 0


def cmd_passages(args: argparse.Namespace) -> int:
    from pipeline.catalog import read_passages

    out = sys.stdout
    for passage in read_passages(args.processed_dir, occurrences=args.occurrences):
        out.write(json.dumps(passage, ensure_ascii=False) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.export import export_records

    try:
        count = export_records(args.processed_dir, args.format, args.out, since=args.since)
    except (ValueError, RuntimeError) as exc:
        return _usage_error(exc)
    if args.out != "-":
        print(f"newsdedup: exported {count} record(s) to {args.out} ({args.format})", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.status import collect_status, format_status  # imports the reader stack: only when asked

    status = collect_status(Path(args.processed_dir), Path(args.raw_dir) if args.raw_dir else None)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.serve import serve  # no Prefect import until serve starts

    return serve(raw_dir=args.raw_dir, processed_dir=args.processed_dir, name=args.name, cron=args.cron,
                 interval=args.interval, timezone=args.timezone, port=args.port,
                 lock_wait_seconds=args.lock_wait, on_collision=args.on_collision)


def _parameter(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a plain string


def cmd_trigger(args: argparse.Namespace) -> int:
    from flows.serve import trigger

    parameters = dict(args.param or [])
    if args.raw_dir:
        parameters["raw_dir"] = str(Path(args.raw_dir).resolve())
    if args.processed_dir:
        parameters["processed_dir"] = str(Path(args.processed_dir).resolve())
    return trigger(name=args.name, parameters=parameters, wait=args.wait, timeout=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsdedup", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the ingest flow once over the raw dir (embedded Prefect, no server)")
    run.add_argument("--raw-dir", default="raw")
    run.add_argument("--processed-dir", default="processed")
    run.add_argument("--max-run-bytes", type=int, default=None, metavar="BYTES",
                     help="raw bytes one run reads at most (default 256 MB); bounds memory on a large backlog")
    run.add_argument("--force", action="store_true",
                     help="start a flow run even when nothing under the raw dir is new or changed")
    run.add_argument("--once", action="store_true",
                     help="one run only, even if files are left for a next run (see max_run_bytes)")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="if another run holds processed/, wait this long for it instead of exiting")
    run.set_defaults(func=cmd_run)

    records = sub.add_parser("records", help="print every current record as JSON Lines (processed/README.md)")
    records.add_argument("processed_dir", nargs="?", default="processed", metavar="PROCESSED_DIR")
    records.add_argument("--since", metavar="RUN_ID|TIMESTAMP",
                         help="only records written or rewritten after this run (id) or ISO time (UTC if no offset)")
    records.add_argument("--fields", metavar="a,b,...", help="only these top-level fields, e.g. id,title,text")
    records.add_argument("--strip-repeats", dest="strip_repeats", action="store_true", default=False,
                         help="leave the flagged (repeated) paragraphs out of 'paragraphs'")
    records.add_argument("--keep-repeats", dest="strip_repeats", action="store_false",
                         help="keep every paragraph with its flag (the default)")
    records.set_defaults(func=cmd_records)

    passages = sub.add_parser("passages", help="print the repeated passages (the passage catalog) as JSON Lines")
    passages.add_argument("processed_dir", nargs="?", default="processed", metavar="PROCESSED_DIR")
    passages.add_argument("--occurrences", action="store_true", help="also list every repeat of each passage")
    passages.set_defaults(func=cmd_passages)

    export = sub.add_parser("export", help="write a snapshot of the current records to one file")
    export.add_argument("processed_dir", nargs="?", default="processed", metavar="PROCESSED_DIR")
    export.add_argument("--format", choices=("jsonl", "parquet", "csv"), default="jsonl")
    export.add_argument("--out", required=True, metavar="PATH", help="file to write ('-' for stdout: jsonl, csv)")
    export.add_argument("--since", metavar="RUN_ID|TIMESTAMP", help="only records written after this run or time")
    export.set_defaults(func=cmd_export)

    status = sub.add_parser("status", help="what the processed dir holds and how the last run went")
    status.add_argument("processed_dir", nargs="?", default="processed", metavar="PROCESSED_DIR")
    status.add_argument("--raw-dir", default=None, help="also count raw files not processed yet")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=cmd_status)

    check = sub.add_parser("check", help="verify processed/ (database, part files, Bloom filter, reports); "
                                         "exit 0 when sound, 1 when something is wrong, 2 when the database is damaged")
    check.add_argument("processed_dir", nargs="?", default="processed", metavar="PROCESSED_DIR")
    check.add_argument("--processed-dir", dest="processed_dir_option", default=None, help=argparse.SUPPRESS)
    check.add_argument("--repair", action="store_true",
                       help="rewrite what is wrong from the database (parts, Bloom filter, reports), crash-safely")
    check.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="if a run holds processed/, wait this long for it instead of exiting (exit 3)")
    check.set_defaults(func=cmd_check)

    serve = sub.add_parser("serve", help="run the ingest flow on a schedule: a local Prefect server and the "
                                         "'ingest/newsdedup' deployment (Ctrl-C stops both)")
    serve.add_argument("--raw-dir", default="raw")
    serve.add_argument("--processed-dir", default="processed")
    serve.add_argument("--name", default="newsdedup", help="deployment name (default: newsdedup)")
    when = serve.add_mutually_exclusive_group()
    when.add_argument("--interval", type=float, metavar="SECONDS", help="run every SECONDS (default: 900)")
    when.add_argument("--cron", metavar="EXPR", help="run on a cron schedule instead, e.g. '*/10 * * * *'")
    serve.add_argument("--timezone", metavar="TZ", help="time zone of the schedule, e.g. Europe/Berlin (default UTC)")
    serve.add_argument("--port", type=int, default=4200,
                       help="port of the Prefect server started on 127.0.0.1 (default 4200; ignored when "
                            "PREFECT_API_URL is set: then that server is used and none is started)")
    serve.add_argument("--lock-wait", type=float, default=300.0, metavar="SECONDS",
                       help="a run finding processed/ locked (e.g. by `newsdedup run`) waits this long (default 300)")
    serve.add_argument("--on-collision", choices=("enqueue", "cancel"), default="enqueue",
                       help="a run started while another runs: waits for it (enqueue, default) or is cancelled")
    serve.set_defaults(func=cmd_serve)

    trigger = sub.add_parser("trigger", help="start a run of the served deployment now")
    trigger.add_argument("--name", default="newsdedup", help="deployment name (default: newsdedup)")
    trigger.add_argument("--raw-dir", default=None, help="override the deployment's raw dir for this run")
    trigger.add_argument("--processed-dir", default=None, help="override the deployment's processed dir")
    trigger.add_argument("-p", "--param", action="append", type=_parameter, metavar="KEY=VALUE",
                         help="another flow parameter for this run (JSON value or string), repeatable")
    trigger.add_argument("--wait", action="store_true", help="wait for the run; exit non-zero unless it completed")
    trigger.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                         help="with --wait: give up after this long (exit 4; default 3600)")
    trigger.set_defaults(func=cmd_trigger)
    return parser


def _database_error(args: argparse.Namespace, exc: sqlite3.DatabaseError) -> str:
    """One line: what is wrong with the state database, and what to do about it."""
    processed = getattr(args, "processed_dir", None) or "processed"
    path = Path(processed) / "state.sqlite"
    name = getattr(exc, "sqlite_errorname", "") or ""
    damaged = (type(exc) is sqlite3.DatabaseError or name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
               or "no such table" in str(exc) or "malformed" in str(exc))
    if not damaged:
        return f"cannot use the state database {path}: {exc}"
    raw = getattr(args, "raw_dir", None) or "raw"
    return (f"the state database {path} is damaged ({exc}); nothing was changed. Restore it (with its -wal file) "
            f"from a backup, or rebuild it: newsdedup run --raw-dir {raw} --processed-dir NEW_DIR "
            "reads every raw file again into a new processed dir")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except StateError as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        code = 2
    except sqlite3.DatabaseError as exc:  # a truncated or overwritten state.sqlite: no traceback
        print(f"newsdedup: {_database_error(args, exc)}", file=sys.stderr)
        code = 2
    except BrokenPipeError:  # `newsdedup records | head`
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
