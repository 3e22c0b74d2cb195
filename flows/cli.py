"""The `newsdedup` command: run the ingest flow by hand or on a schedule, and read what it wrote.

`build_parser` holds every subcommand; each takes the processed dir in both forms
(positional PROCESSED_DIR or --processed-dir) through one shared parent parser, so options
added later to a subcommand go next to the others without repeating that.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pipeline.records import check_fields, iter_record_lines, read_records
from pipeline.state import StateError
from pipeline.state_backend import StateURLError, set_state_url

if TYPE_CHECKING:  # pipeline.settings imports the whole library: only the commands that need it load it
    from pipeline.settings import Settings

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

    # Checked before Prefect is even imported: a typo, a bad setting or a busy processed/ fails fast.
    settings = settings_from_args(args)
    if not Path(args.raw_dir).is_dir():
        print(f"newsdedup: raw dir {args.raw_dir} does not exist or is not a directory", file=sys.stderr)
        return 2
    if args.dask_address:
        unreachable = _unreachable(args.dask_address)
        if unreachable:  # before the lock, a repair or Prefect: nothing is written
            print(f"newsdedup: cannot reach the Dask scheduler at {args.dask_address}: {unreachable}", file=sys.stderr)
            return 4
    processed = Path(args.processed_dir)
    try:
        # Held to the end, shared with the flow this process starts: a second run started
        # meanwhile is refused here, before Prefect, with one line (exit 3).
        with writer_lock(processed, args.wait, share_in_process=True):
            try:
                return _run_locked(args, processed, settings)
            finally:
                _stop_children()
    except ProcessedDirLocked as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 3


def _run_locked(args: argparse.Namespace, processed: Path, settings: Settings) -> int:
    from pipeline.check import repair_on_start
    from pipeline.ingest import pending_files
    from pipeline.state import preflight, rebind_raw_dir, state_exists

    check_state_database(processed)
    if args.rebind_raw_dir and state_exists(processed):
        rebind_raw_dir(processed, Path(args.raw_dir))
    # Another raw dir, or settings that change signatures: refused here (exit 2), before Prefect.
    redecide = preflight(processed, settings.dedup(), Path(args.raw_dir))
    # Before "nothing new": parts, filter and reports as the last committed run left them
    # (also the parts of a run killed after its commit), repaired from the database if not.
    for finding in repair_on_start(processed):
        print(f"newsdedup: repaired before the run: {finding}", file=sys.stderr)
    if not args.force and not redecide and pending_files(Path(args.raw_dir), processed) == 0:
        print(f"newsdedup: nothing new under {args.raw_dir} since the last run; no flow run started "
              "(--force runs one anyway)")
        return 0
    _prefect_env()
    server = _start_temporary_server()  # meanwhile: the flow's imports, on the other core
    from flows.cluster import close_standing
    from pipeline.pool import close_standing_pool

    try:
        _prefetch_first_run(args, processed, settings)
        with _embedded_flow_settings():
            return _run_backlog(args, processed, settings, server)
    finally:
        close_standing()  # a cluster the last run kept for a next one that did not come
        close_standing_pool()  # the same for the prepare pool


def _prefetch_first_run(args: argparse.Namespace, processed: Path, settings: Settings) -> None:
    """While Prefect starts (its temporary server alone takes 4-15 s, on one core), the prepare
    pool's workers start on the batches the first run will read, found read-only. A guess: the
    run plans again under its lock and uses only the batches that still match."""
    workers = int(settings["processes"])
    if not workers or int(settings["dask_workers"]) or args.dask_address:
        return
    from pipeline.ingest import batches, preview_run
    from pipeline.pool import standing_pool

    try:
        run_settings = settings.ingest(lock_wait_seconds=args.wait)
        files = preview_run(Path(args.raw_dir), processed, run_settings.max_run_bytes)
        groups = list(batches(files, run_settings.batch_size))
        if len(groups) > 1:  # a run of one batch is prepared here, without a pool
            standing_pool(workers).prefetch(groups, run_settings)
    except Exception:  # noqa: BLE001 - only time is at stake: the run finds and reports any problem itself
        return


def _embedded() -> bool:
    """No Prefect API configured (environment or profile): flows start a temporary server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED.value())


def _start_temporary_server() -> threading.Thread | None:
    """Embedded mode: Prefect's temporary API server, started in the background now rather than
    by the first flow call, so its 4-15 s start-up (a subprocess) overlaps this process's other
    imports. Joined before the flow: Prefect's own start then finds it running; if this attempt
    failed, it stopped what it started, and the flow call starts it again and says why."""
    if not _embedded():  # imports prefect's settings here, in this thread, before the other one
        return None

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        try:
            server.start()
        except Exception:  # noqa: BLE001
            with contextlib.suppress(Exception):
                server.stop()

    thread = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    thread.start()
    return thread


def _embedded_flow_settings() -> Any:
    """No flow-run heartbeat in embedded mode: its temporary server lives only as long as this
    process, so nothing is there to watch for a crashed run, and the heartbeat thread costs
    each flow run of a backlog about 1 s to stop. Against a real server (PREFECT_API_URL), or
    when set by the user, Prefect's setting stands."""
    import contextlib

    if not _embedded() or any(os.environ.get(name) for name in (
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")):
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.settings.models.flows import FlowsSettings

    if PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() != FlowsSettings.model_fields["heartbeat_frequency"].default:
        return contextlib.nullcontext()  # set in the user's Prefect profile

    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _run_backlog(args: argparse.Namespace, processed: Path, settings: Settings,
                 server: threading.Thread | None = None) -> int:
    from flows.cluster import DaskUnavailable
    from flows.ingest import ingest
    from pipeline.ingest import RunSummary, summary_markdown
    from pipeline.read import RawDirError
    from pipeline.state import ProcessedDirLocked

    if server is not None:
        server.join()
    deferred_before = None
    report_owed = False  # a committed run of this backlog deferred the HTML report to a later one
    try:
        while True:
            try:
                options: dict[str, Any] = dict(settings.values)  # dask_workers among them (--dask-workers)
                if args.state_url:
                    options["state_url"] = args.state_url
                # A backlog's runs follow each other at once: the HTML report (it reads the whole
                # processed dir) is written by the last one only.
                result = ingest(raw_dir=args.raw_dir, processed_dir=args.processed_dir, lock_wait_seconds=args.wait,
                                progress_bar=sys.stderr.isatty(), defer_html_report=not args.once,
                                prefetch_next_run=not args.once,
                                dask_address=args.dask_address, **options)
            except ProcessedDirLocked as exc:
                print(f"newsdedup: {exc}", file=sys.stderr)
                return 3
            except DaskUnavailable as exc:
                print(f"newsdedup: {exc}", file=sys.stderr)
                return 4
            except RawDirError as exc:
                print(f"newsdedup: {exc}", file=sys.stderr)
                return 2
            print(summary_markdown(RunSummary(**result)), end="")
            deferred = result["files_deferred"]
            report_owed = bool(deferred) and not args.once
            # A large backlog is read in several runs, each bounded in memory (max_run_bytes).
            if args.once or not deferred:
                return 0
            if deferred_before is not None and deferred >= deferred_before:
                return 0  # no run follows: the report the runs deferred is written below
            deferred_before = deferred
            print(f"\n{deferred} files left: running again\n")
    finally:
        if report_owed:  # also when a later run of the backlog failed: what is committed is reported
            _write_html_report(processed)


def _write_html_report(processed: Path) -> None:
    from flows.ingest import HTML_REPORT
    from pipeline.report import write_report

    try:
        write_report(processed, processed / HTML_REPORT)
    except Exception as exc:  # noqa: BLE001  # the runs are committed; only the report is missing
        print(f"newsdedup: HTML report not written ({type(exc).__name__}: {exc})", file=sys.stderr)


def _unreachable(address: str) -> str | None:
    """Why nothing answers at a scheduler address (a TCP connect, 5 s at most), or None. Only
    tcp:// (and bare host:port) addresses are tried here; the flow checks every kind itself."""
    import socket

    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme != "tcp":
        return None
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return "expected tcp://HOST:PORT"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


# The whole-file integrity check before a run, up to this size; larger databases get the
# structural reads only (the schema, the small tables), which catch a truncated file.
QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024


def check_state_database(processed: Path) -> None:
    """Raises ``sqlite3.DatabaseError`` when the state database is damaged; nothing when it is
    fine or absent (a first run). Read-only: called before a run starts Prefect."""
    from pipeline.state import connect, has_schema
    from pipeline.state_backend import integrity_problems, state_exists, state_url_for

    target = state_url_for(processed)
    if not state_exists(processed):
        return
    conn = connect(processed, readonly=True)
    try:
        if not has_schema(conn):
            return  # a first run killed before it created its tables: nothing to check yet
        for table in ("meta", "runs", "parts"):
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        if target.path is not None and target.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            problems = integrity_problems(conn, 3, quick=True)
            if problems:
                raise sqlite3.DatabaseError("integrity check failed: " + "; ".join(problems)[:300])
    finally:
        conn.close()


def cmd_check(args: argparse.Namespace) -> int:
    from pipeline.check import check_processed
    from pipeline.lock import writer_lock
    from pipeline.state import ProcessedDirLocked

    processed = Path(args.processed_dir)
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


def cmd_migrate(args: argparse.Namespace) -> int:
    from pipeline.lock import writer_lock
    from pipeline.migrate import migrate_state
    from pipeline.state import ProcessedDirLocked
    from pipeline.state_backend import parse_state_url

    source, destination = parse_state_url(args.source), parse_state_url(args.destination)
    processed = Path(args.processed_dir)
    set_state_url(source.url)  # the lock taken is the source's: no run writes to it meanwhile
    try:
        with writer_lock(processed, args.wait):
            migration = migrate_state(source, destination, processed)
    except ProcessedDirLocked as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 3
    rows = sum(migration.rows.values())
    print(f"newsdedup: moved the state of {processed} from {migration.source} to {migration.destination}: "
          f"{len(migration.rows)} tables, {rows} rows; {migration.records_compared} records read back identical. "
          f"From now on run with --state-url {migration.destination} (or NEWSDEDUP_STATE_URL); "
          f"the old state is left as it was")
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
    except OSError as exc:  # an --out the user may not write, a full disk: one line, no traceback
        return _usage_error(f"cannot write {args.out}: {exc.strerror or exc}")
    if args.out != "-":
        print(f"newsdedup: exported {count} record(s) to {args.out} ({args.format})", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.status import collect_status, format_status  # imports the reader stack: only when asked

    status = collect_status(Path(args.processed_dir), Path(args.raw_dir) if args.raw_dir else None)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report

    written = write_report(args.processed_dir, args.out, progress=sys.stderr)
    out = Path(written["path"]).resolve()
    print(f"newsdedup: report of {written['records']} record(s) and {written['passages']} repeated passage(s) "
          f"written to {args.out} ({written['bytes'] / 1024:.0f} KiB, {written['timings']['total']:.1f} s); "
          f"open {out.as_uri()} in a browser", file=sys.stderr)
    return 0


def add_setting_flags(parser: argparse.ArgumentParser, groups: tuple[str, ...] = ("detection", "run"),
                      own: tuple[str, ...] = ()) -> None:
    """A flag per setting (--threshold, --batch-size, ...) and --config; checked by pipeline.settings.
    ``own``: settings whose flag the command defines itself (run's --dask-workers)."""
    from pipeline.settings import SPECS

    options = parser.add_argument_group(
        "settings", "later wins: defaults, newsdedup.toml (or [tool.newsdedup] in pyproject.toml) in the working "
                    "dir or --config FILE, NEWSDEDUP_<NAME> environment variables, these flags; "
                    "`newsdedup config` shows the effective values")
    options.add_argument("--config", metavar="FILE", help="read settings from this TOML file instead of newsdedup.toml")
    for name, spec in SPECS.items():
        if spec.group in groups and name not in own:
            options.add_argument(spec.flag, dest=f"setting_{name}", metavar=spec.kind.upper(),
                                 help=f"{spec.help} (default {spec.default})")


def settings_from_args(args: argparse.Namespace) -> Settings:
    from pipeline.settings import SPECS, load_settings

    given = {name: getattr(args, f"setting_{name}", getattr(args, name, None)) for name in SPECS}
    config = getattr(args, "config", None)
    return load_settings(given, config_file=Path(config) if config else None)


def cmd_config(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    print(json.dumps(settings.as_json(), indent=2) if args.json else settings.describe())
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from pipeline.ingest import reindex, summary_markdown
    from pipeline.state import ProcessedDirLocked

    settings = settings_from_args(args)
    check_state_database(Path(args.processed_dir))
    try:
        summary = reindex(Path(args.processed_dir), settings.dedup(), lock_wait_seconds=args.wait)
    except ProcessedDirLocked as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 3
    print(summary_markdown(summary), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.serve import serve  # no Prefect import until serve starts

    settings_from_args(args)  # each run reads them again; a bad one is refused before the server starts

    return serve(raw_dir=args.raw_dir, processed_dir=args.processed_dir, name=args.name, cron=args.cron,
                 interval=args.interval, timezone=args.timezone, port=args.port,
                 lock_wait_seconds=args.lock_wait, on_collision=args.on_collision)


def _parameter(text: str) -> tuple[str, str]:
    """-p KEY=VALUE; the value stays text until it is checked against the flow's signature."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def cmd_trigger(args: argparse.Namespace) -> int:
    from flows.serve import trigger

    overrides = {}
    if args.raw_dir:
        overrides["raw_dir"] = str(Path(args.raw_dir).resolve())
    if args.processed_dir:
        overrides["processed_dir"] = str(Path(args.processed_dir).resolve())
    if args.state_url:
        overrides["state_url"] = args.state_url
    return trigger(name=args.name, parameters=dict(args.param or []), overrides=overrides, wait=args.wait,
                   timeout=args.timeout)


# --- the parser ----------------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (examples keep their lines); every option with a
    default says it, unless the help already does or the default is nothing (None, off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "default" in text.lower() or default in (None, False, argparse.SUPPRESS)
                or not action.option_strings and action.nargs != argparse.OPTIONAL):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit code 2, as every other refusal here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("newsdedup")
    except PackageNotFoundError:
        return "unknown"


def _processed_dir_parent(default: str | None, help_text: str) -> argparse.ArgumentParser:
    """PROCESSED_DIR and --processed-dir, the same on every subcommand (the two are aliases)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("processed_dir_arg", nargs="?", default=None, metavar="PROCESSED_DIR",
                        help=f"{help_text} (default: {default or 'the one the deployment has'}; "
                             "the same as --processed-dir)")
    parent.add_argument("--processed-dir", dest="processed_dir", default=None, metavar="DIR",
                        help="the same as PROCESSED_DIR")
    parent.add_argument("--state-url", default=None, metavar="URL",
                        help="where the state is kept: sqlite:///PATH or postgresql://user@host:port/db "
                             "(default: $NEWSDEDUP_STATE_URL, else sqlite:///PROCESSED_DIR/state.sqlite)")
    parent.set_defaults(processed_dir_default=default)
    return parent


def _resolve_processed_dir(args: argparse.Namespace) -> None:
    positional = getattr(args, "processed_dir_arg", None)
    option = getattr(args, "processed_dir", None)
    if positional and option and Path(positional) != Path(option):
        prog = f"newsdedup {args.command}"
        print(f"{prog}: PROCESSED_DIR {positional!r} and --processed-dir {option!r} differ: give one "
              f"(see {prog} --help)", file=sys.stderr)
        sys.exit(2)
    if hasattr(args, "processed_dir_default"):
        args.processed_dir = positional or option or args.processed_dir_default


EXIT_CODES_READ = """exit codes:
  0  done
  2  bad arguments, or no readable state in the processed dir (missing or damaged)"""

DESCRIPTION = """\
newsdedup reads news articles from a raw dir (text, HTML, JSON, JSON Lines, Markdown), cleans
them, finds the background passages they repeat from earlier articles, and writes one
deduplicated record per article to a processed dir. Each run does only new work.

"run" processes the raw dir once, with Prefect's embedded mode (no server to start).
"serve" starts a local Prefect server and runs the flow on a schedule; "trigger" starts a run
of it now. "records", "passages", "export", "status" and "report" (an HTML page) read the processed
dir; they never block or disturb a running flow. "check" verifies the processed dir and can repair it.

Run "newsdedup COMMAND --help" for the options, examples and exit codes of each command."""

EPILOG = """\
examples:
  newsdedup run                                   raw/ -> processed/
  newsdedup run --raw-dir /data/raw /data/processed
  newsdedup records processed --fields id,title,repeats | head
  newsdedup status processed --raw-dir raw        what is processed, and what is not yet
  newsdedup serve --interval 300                  every 5 minutes, until Ctrl-C
  newsdedup trigger --wait                        run the served deployment now

exit codes: 0 done, 2 bad arguments or unusable input; see each command's --help for the others.
Prefect keeps its state in ./.prefect unless PREFECT_HOME is set."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="newsdedup", description=DESCRIPTION, epilog=EPILOG, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    writes = _processed_dir_parent("processed", "the processed dir the records are written to")
    reads = _processed_dir_parent("processed", "the processed dir to read")

    def command(name: str, summary: str, description: str, epilog: str,
                parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, epilog=epilog, parents=parents,
                              formatter_class=_HelpFormatter)

    run = command("run", "run the ingest flow once over the raw dir (embedded Prefect, no server)", """\
Run the ingest flow once: read the files under the raw dir that are new or changed since the
last run, tag repeated passages, write records to the processed dir, and print the run's
report. With nothing new it says so and returns at once, without starting Prefect. A large
backlog is read in several runs, each reading at most --max-run-bytes of raw files.
"python -m flows.ingest" is the same command.""", """\
examples:
  newsdedup run
  newsdedup run --raw-dir /data/raw /data/processed
  newsdedup run --raw-dir /data/raw --processed-dir /data/processed --wait 600
  newsdedup run --dask-workers 4                  prepare on a local Dask cluster of 4 processes
  newsdedup run --dask-address tcp://scheduler:8786

exit codes:
  0  done (or nothing new)
  1  the flow run failed (processed dir left as it was before the run)
  2  bad arguments, a missing raw dir, or a damaged state database
  3  another run holds the processed dir (see --wait)
  4  the Dask cluster could not be started or reached (nothing written)""", [writes])
    run.add_argument("--raw-dir", default="raw", metavar="DIR", help="the dir the articles are read from")
    run.add_argument("--force", action="store_true",
                     help="start a flow run even when nothing under the raw dir is new or changed")
    run.add_argument("--once", action="store_true",
                     help="one run only, even if files are left for a next run (see --max-run-bytes)")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="if another run holds the processed dir, wait this long for it instead of exiting")
    dask = run.add_mutually_exclusive_group()
    dask.add_argument("--dask-workers", type=_worker_count, default=None, metavar="N",
                      help="prepare batches on a local Dask cluster of N worker processes started for the run "
                           "(default, or 0: no cluster; see --processes)")
    dask.add_argument("--dask-address", default=None, metavar="tcp://HOST:PORT",
                      help="prepare batches on the running Dask cluster with this scheduler; its workers must "
                           "see the raw dir at the same path")
    run.add_argument("--rebind-raw-dir", action="store_true",
                     help="the raw dir the processed dir belongs to has moved to --raw-dir: record its new place")
    add_setting_flags(run, own=("dask_workers",))
    run.set_defaults(func=cmd_run)

    config = command("config", "print the effective settings and where each comes from", """\
Print every setting (detection, batch size, Dask workers, size limits), its effective value
and where it comes from, read as a run reads them: the defaults, then newsdedup.toml in the
working dir (or [tool.newsdedup] in pyproject.toml, or --config FILE), then NEWSDEDUP_<NAME>
environment variables, then the flags given here. A bad value is refused as a run refuses it.""", """\
examples:
  newsdedup config
  newsdedup config --threshold 0.5 --json
  NEWSDEDUP_BATCH_SIZE=50 newsdedup config

exit codes:
  0  done
  2  a bad setting (unknown name, wrong type, out of range)""", [])
    config.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_setting_flags(config)
    config.set_defaults(func=cmd_config)

    reindex = command("reindex", "rebuild the sketches of a processed dir for new detection settings", """\
Rebuild the processed dir for other detection settings that change its sketches (shingle_size,
num_perm, bands, rows, seed, min_words): every stored article is sketched again from its
stored cleaned text and decided again. Record ids are kept and raw files are not read. Like a
run, it holds the writer lock and commits in one transaction: a kill leaves the old state or
the new one. A run with such settings is refused until this has been done, and prints the
exact command.""", """\
examples:
  newsdedup reindex processed --shingle-size 4
  newsdedup reindex /data/processed --min-words 6 --threshold 0.5

exit codes:
  0  done
  2  a bad setting, no state in the processed dir, or a damaged state database
  3  another run holds the processed dir (see --wait)""", [writes])
    reindex.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                         help="if a run holds the processed dir, wait this long for it instead of exiting")
    add_setting_flags(reindex, ("detection",))
    reindex.set_defaults(func=cmd_reindex)

    records = command("records", "print every current record as JSON Lines (processed/README.md)", """\
Print the current records, one JSON object per line, oldest published first. The record
fields are described in processed/README.md. With --since, the records later runs wrote or
rewrote come first, then a tombstone {"id": ..., "deleted": true, ...} for each record they
removed (its item gone from a changed file).""", """\
examples:
  newsdedup records processed | head -n 3
  newsdedup records processed --fields id,published,outlet,repeats
  newsdedup records processed --since RUN_ID        only what later runs wrote, rewrote or removed
  newsdedup records processed --since 5d0c3a1e      the start of a run id does, if no other starts so
  newsdedup records processed --since 2026-01-01T00:00:00Z --strip-repeats

""" + EXIT_CODES_READ, [reads])
    records.add_argument("--since", metavar="RUN_ID|TIMESTAMP",
                         help="only records written or rewritten (and tombstones of those removed) after this run "
                              "(its id, or 6+ first characters of it) or ISO time (UTC if no offset)")
    records.add_argument("--fields", metavar="a,b,...", help="only these top-level fields, e.g. id,title,text")
    records.add_argument("--strip-repeats", dest="strip_repeats", action="store_true", default=False,
                         help="leave the flagged (repeated) paragraphs out of 'paragraphs'")
    records.add_argument("--keep-repeats", dest="strip_repeats", action="store_false",
                         help="keep every paragraph with its flag (the default)")
    records.set_defaults(func=cmd_records)

    passages = command("passages", "print the repeated passages (the passage catalog) as JSON Lines", """\
Print each repeated passage once, as JSON Lines: its canonical text, the record and paragraph
of its first occurrence, how many copies and variants, and the outlets that repeat it.""", """\
examples:
  newsdedup passages processed
  newsdedup passages processed --occurrences        every repeat of each passage too

""" + EXIT_CODES_READ, [reads])
    passages.add_argument("--occurrences", action="store_true", help="also list every repeat of each passage")
    passages.set_defaults(func=cmd_passages)

    export = command("export", "write a snapshot of the current records to one file", """\
Write the current records to one file: JSON Lines, Parquet or CSV.""", """\
examples:
  newsdedup export processed --format parquet --out snapshot.parquet   (the directory must exist)
  newsdedup export processed --format csv --out - | head

""" + EXIT_CODES_READ, [reads])
    export.add_argument("--format", choices=("jsonl", "parquet", "csv"), default="jsonl", help="file format")
    export.add_argument("--out", required=True, metavar="PATH", help="file to write ('-' for stdout: jsonl, csv)")
    export.add_argument("--since", metavar="RUN_ID|TIMESTAMP",
                        help="only records written after this run (id or its start) or time; records only, "
                             "no tombstones (see records --since)")
    export.set_defaults(func=cmd_export)

    status = command("status", "what the processed dir holds, how the last run went, what is not processed yet", """\
Print what the processed dir holds (files, records, repeats, quarantine) and how the last run
went. With --raw-dir, also list the raw files a run would read now (new or changed) and those
it could not read that are not in the quarantine list yet.""", """\
examples:
  newsdedup status processed
  newsdedup status processed --raw-dir raw
  newsdedup status processed --json | jq .last_run.run_id

""" + EXIT_CODES_READ, [reads])
    status.add_argument("--raw-dir", default=None, metavar="DIR", help="also list the raw files not processed yet")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=cmd_status)

    report = command("report", "write an HTML report of the processed dir: one self-contained file", """\
Write one static HTML file that shows what repeats, where and since when: the corpus by outlet
and by month, the most copied passages (timeline, most edited copy beside the first
occurrence), syndicated copies, articles with their repeated text highlighted and linked to
its first occurrence, the quarantine and the last runs. It loads nothing: open it from disk
in any browser, offline. Progress goes to stderr for large processed dirs.""", """\
examples:
  newsdedup report processed --out report.html
  newsdedup report --processed-dir /data/processed --out /tmp/report.html

""" + EXIT_CODES_READ, [reads])
    report.add_argument("--out", default="report.html", metavar="PATH", help="the HTML file to write")
    report.set_defaults(func=cmd_report)

    check = command("check", "verify the processed dir (database, part files, Bloom filter, reports)", """\
Verify that the processed dir is consistent: the state database, the part files, the Bloom
filter and the reports agree. With --repair, rewrite what is wrong from the database
(parts, Bloom filter, reports), crash-safely. Holds the writer lock while it checks.""", """\
examples:
  newsdedup check processed
  newsdedup check processed --repair

exit codes:
  0  consistent (with --repair: consistent after the repair)
  1  something is wrong (with --repair: still wrong after the repair)
  2  the state database is damaged, or bad arguments
  3  a run holds the processed dir (see --wait)""", [reads])
    check.add_argument("--repair", action="store_true",
                       help="rewrite what is wrong from the database (parts, Bloom filter, reports), crash-safely")
    check.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="if a run holds the processed dir, wait this long for it instead of exiting (exit 3)")
    check.set_defaults(func=cmd_check)

    migrate = command("migrate", "move the state of a processed dir to another database (SQLite <-> PostgreSQL)", """\
Copy the state (files, records, sketches, LSH keys, quarantine, runs) from one database to
another, in one transaction, holding the processed dir's writer lock; then read every record
back from both and compare them. The destination must hold no state yet; the source is left
as it was. The part files and the Bloom filter under the processed dir stay valid.""", """\
examples:
  newsdedup migrate processed --from sqlite:///processed/state.sqlite --to postgresql://news@db:5432/newsdedup

exit codes:
  0  moved, and the records read back identical
  2  a state URL is bad, the destination holds a state already, or the records differ
  3  a run holds the processed dir (see --wait)""", [reads])
    migrate.add_argument("--from", dest="source", required=True, metavar="URL", help="the state to move")
    migrate.add_argument("--to", dest="destination", required=True, metavar="URL",
                         help="an empty database: sqlite:///PATH or postgresql://user@host:port/db")
    migrate.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                         help="if a run holds the processed dir, wait this long for it instead of exiting (exit 3)")
    migrate.set_defaults(func=cmd_migrate)

    serve = command("serve", "run the ingest flow on a schedule: a local Prefect server and the "
                             "'ingest/newsdedup' deployment (Ctrl-C stops both)", """\
Start a Prefect server on 127.0.0.1 (its data and log under .prefect/) and serve the ingest
flow from this process as the deployment ingest/NAME, on a schedule (every 15 minutes
unless --interval or --cron says otherwise), one run at a time. With PREFECT_API_URL set,
that server is used and none is started.

Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops it cleanly: a run in progress is
cancelled, the schedule is paused, the server stops. The server also stops if this process
is killed; the next start cleans up after a serve that was killed (SIGKILL).""", """\
examples:
  newsdedup serve
  newsdedup serve --interval 300
  newsdedup serve --cron '0 6-22 * * *' --timezone Europe/Berlin
  newsdedup serve --raw-dir /data/raw /data/processed --port 4300

exit codes:
  0  stopped cleanly (Ctrl-C, SIGTERM, SIGHUP)
  2  bad arguments (schedule, time zone), the port is busy, the Prefect server did not start,
     or another newsdedup serve is running with the same PREFECT_HOME""", [writes])
    serve.add_argument("--raw-dir", default="raw", metavar="DIR", help="the dir the articles are read from")
    serve.add_argument("--name", default="newsdedup", help="deployment name")
    when = serve.add_mutually_exclusive_group()
    when.add_argument("--interval", type=_positive_seconds, metavar="SECONDS",
                      help="run every SECONDS (default: 900)")
    when.add_argument("--cron", metavar="EXPR", help="run on a cron schedule instead, e.g. '*/10 * * * *'")
    serve.add_argument("--timezone", metavar="TZ",
                       help="IANA time zone of the schedule, e.g. Europe/Berlin (default: UTC)")
    serve.add_argument("--port", type=_port, default=4200,
                       help="port of the Prefect server started on 127.0.0.1 (default: 4200; ignored when "
                            "PREFECT_API_URL is set: then that server is used and none is started)")
    serve.add_argument("--lock-wait", type=float, default=300.0, metavar="SECONDS",
                       help="a run finding the processed dir locked (e.g. by `newsdedup run`) waits this long")
    serve.add_argument("--on-collision", choices=("enqueue", "cancel"), default="enqueue",
                       help="a run started while another runs: waits for it (enqueue) or is cancelled")
    serve.set_defaults(func=cmd_serve)

    trigger = command("trigger", "start a run of the served deployment now", """\
Start a run of the deployment that "newsdedup serve" serves, now. The server is the one
"newsdedup serve" recorded in .prefect/newsdedup-serve.json, or PREFECT_API_URL. Parameters
are checked against the ingest flow before a run is created, and a run is created only if
something serves the deployment (a live newsdedup serve, or a runner or worker that polled
it in the last 90 s).""", """\
examples:
  newsdedup trigger
  newsdedup trigger --wait                  wait for the run, print its report
  newsdedup trigger --wait --raw-dir /data/extra-raw
  newsdedup trigger -p batch_size=50 -p io_retries=5

exit codes:
  0  run started (with --wait: completed)
  1  with --wait: the run ended failed, cancelled or crashed
  2  bad arguments or parameters, no Prefect server, or no such deployment
  3  nothing serves the deployment (no run was created, or with --wait the runner went away)
  4  with --wait: not finished within --timeout
  5  with --wait: lost the Prefect API""", [_processed_dir_parent(None, "override the deployment's processed dir")])
    trigger.add_argument("--name", default="newsdedup", help="deployment name")
    trigger.add_argument("--raw-dir", default=None, metavar="DIR", help="override the deployment's raw dir")
    trigger.add_argument("-p", "--param", action="append", type=_parameter, metavar="KEY=VALUE",
                         help="another flow parameter for this run, repeatable (checked against the flow)")
    trigger.add_argument("--wait", action="store_true", help="wait for the run; exit non-zero unless it completed")
    trigger.add_argument("--timeout", type=_positive_seconds, default=3600.0, metavar="SECONDS",
                         help="with --wait: give up after this long (exit 4)")
    trigger.set_defaults(func=cmd_trigger)
    return parser


def _checked(convert: Callable[[str], Any], what: str, ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    """An argparse ``type`` that converts, then checks the value (a one-line error otherwise)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}")
        return value

    return parse


_positive_seconds = _checked(float, "a number of seconds", lambda value: value > 0, "must be more than 0 seconds")
_port = _checked(int, "a port number", lambda value: 1 <= value <= 65535, "a port is 1-65535")
_worker_count = _checked(int, "a number of workers", lambda value: value >= 0, "must be 0 or more")


def _database_error(args: argparse.Namespace, exc: sqlite3.DatabaseError) -> str:
    """One line: what is wrong with the state database, and what to do about it."""
    from pipeline.state_backend import state_url_for

    processed = getattr(args, "processed_dir", None) or "processed"
    path = state_url_for(Path(processed)).path or Path(processed) / "state.sqlite"
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
    _resolve_processed_dir(args)
    try:
        set_state_url(getattr(args, "state_url", None))
        code = args.func(args)
    except (StateError, StateURLError) as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        code = 2
    except ValueError as exc:
        # A bad setting (pipeline.settings.SettingsError; imported only by the commands that read settings).
        settings_module = sys.modules.get("pipeline.settings")
        if settings_module is None or not isinstance(exc, settings_module.SettingsError):
            raise
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
