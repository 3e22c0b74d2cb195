"""The ingest flow: raw/ -> processed/, as Prefect tasks at batch granularity.

Each task wraps one library step (``pipeline.ingest.IngestRun``); a task works on a batch
of files, never on a paragraph, because every task run costs Prefect milliseconds and an
API write. Run once by hand with ``python -m flows.ingest`` or ``newsdedup run``; on a
schedule with ``newsdedup serve`` (see ``flows/serve.py``). ``python -m flows.ingest`` is
``newsdedup run`` under another name: the same options, the project-local PREFECT_HOME, the
nothing-new shortcut.

Failure policy:
- A file that cannot be read (an ``OSError``: NFS hiccup, file still being written) is
  read again ``io_retries`` times, ``io_retry_delay_seconds`` apart; if it still fails it
  is quarantined with the error and the run goes on.
- A batch whose preparation raises anything else (a parser bug on one odd file) is
  prepared again file by file; the files that raise are quarantined, the others kept.
- Listing raw/ and committing are retried on ``OSError`` and SQLite operational errors
  (``database is locked``, disk I/O); the commit is one transaction, so a failed attempt
  leaves nothing behind, and a retry never commits the same run twice.
- Anything else fails the run: it leaves a "failed" report artifact and processed/ as it was.

By default batches are prepared by the run's own process and ``processes`` worker processes
beside it (``pipeline.pool``: a plain process pool, one per core beyond the first): each
batch is still a ``prepare-batch`` task run here, which waits for its batch from the pool
and unpacks it; the workers make no Prefect API calls. On a backlog read in several runs
(``prefetch_next_run``), the workers prepare the next run's batches while this run commits.
A worker that dies costs its batches, prepared again here, never records.

Parallel preparation can also be Dask's, through prefect-dask's ``DaskTaskRunner`` (``dask_workers``:
a ``distributed.LocalCluster`` for the run; ``dask_address``: a cluster that already runs).
Only preparation is spread: each worker returns its batch as one pickled bytes value, and
the commit stays one sequential step in this process. A worker lost mid-batch has its
batch recomputed by Dask on another worker; a batch that still fails is prepared here, file
by file, as above. A cluster that cannot be reached fails the run before anything is written.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Before Prefect is imported below: it reads PREFECT_HOME once, on import, and would put
    # its database in ~/.prefect; `newsdedup run` sets up the environment first.
    from flows.cli import main as _newsdedup_main

    _newsdedup_main(["run", *sys.argv[1:]])  # exits

import contextlib
import copy
import gc
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.by_reference import ByReference
from flows.cluster import (
    close_cluster,
    close_standing,
    open_cluster,
    open_cluster_in_background,
    prefetch,
    prepare_on_cluster,
    release_standing,
    runner_of,
    standing_cluster,
)
from pipeline.ingest import (
    LAST_RUN_MD,
    FileOutcome,
    IngestRun,
    IngestSettings,
    Plan,
    PlannedFile,
    PreparedBatch,
    RunSummary,
    batches,
    prepare_packed,
    summary_markdown,
    write_reports,
)
from pipeline.pool import PreparePool, close_standing_pool, has_standing_pool, standing_pool
from pipeline.records import finish_parts
from pipeline.settings import load_settings
from pipeline.state_backend import set_state_url

# Results stay in memory: nothing here is worth caching or persisting between runs, and
# hashing large inputs for a cache key costs more than the task itself.
_TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}

REPORT_KEY = "ingest-report"
HTML_REPORT_KEY = "ingest-report-html"
TOP_PASSAGES_KEY = "ingest-top-passages"
HTML_REPORT = "report.html"  # written into the processed dir after each run (pipeline.report)
PROGRESS_KEY = "ingest-progress"
_UNREADABLE = "unreadable:"  # prefix of the quarantine reason for an OSError while reading


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """A run holds its prepared articles (millions of small objects) until the commit; at the
    default thresholds Python's cyclic collector walks them again and again: 7 % of preparing
    10,000 articles. Every object here is freed by reference counting; the collector still runs."""
    before = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what may succeed next time: I/O errors and a busy or failing SQLite."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the exception could not be recovered: do not guess
        return False
    return isinstance(exc, OSError | sqlite3.OperationalError)


@task(name="plan", retries=2, retry_delay_seconds=2, retry_condition_fn=_transient, **_TASK_OPTIONS)
def plan_task(run: IngestRun) -> Plan:
    return run.plan()


# A batch's files go by reference: Prefect would walk its hundreds of PlannedFile dataclasses
# twice per task (parameters, task inputs), ~40 ms a task.
@task(name="prepare-batch", **_TASK_OPTIONS)
def prepare_task(run: IngestRun, group: ByReference, pooled: ByReference | None = None) -> PreparedBatch:
    """The batch, prepared here; or, with ``pooled``, the one a worker process of the prepare pool
    made (``pipeline.pool``): the task then waits for it and unpacks it, and fails as it failed."""
    if pooled is not None:
        return pooled.value()
    return run.prepare(group.value)


@task(name="prepare-batch", **_TASK_OPTIONS)
def prepare_on_worker_task(group: ByReference, settings: IngestSettings) -> bytes:
    """On a Dask worker: the arguments are small (paths, sizes, settings), and the result one
    bytes value, which Prefect keeps in memory (persist_result=False) and never walks."""
    return prepare_packed(group.value, settings)


@task(name="prepare-files-one-by-one", **_TASK_OPTIONS)
def isolate_task(run: IngestRun, group_ref: ByReference) -> PreparedBatch:
    """A batch failed as a whole: prepare each file alone and quarantine the ones that raise."""
    group: list[PlannedFile] = group_ref.value
    merged = PreparedBatch([], [], [])
    for planned in group:
        try:
            batch = run.prepare([planned])
        except Exception as exc:  # one bad file must not fail the run
            batch = PreparedBatch([], [FileOutcome(
                planned.entry.path, None, planned.entry.size, planned.mtime_ns, "quarantined",
                f"failed to process: {type(exc).__name__}: {exc}", changed=planned.known)], [])
        merged.articles += batch.articles
        merged.files += batch.files
        merged.problems += batch.problems
    return merged


def _already_committed(run: IngestRun) -> bool:
    row = run.store.conn.execute("SELECT 1 FROM runs WHERE seq = ?", (run.summary.run_seq,)).fetchone()
    return row is not None


@task(name="commit", retries=2, retry_delay_seconds=2, retry_condition_fn=_transient, **_TASK_OPTIONS)
def commit_task(run: IngestRun, plan_ref: ByReference, prepared_ref: ByReference) -> RunSummary:
    plan: Plan = plan_ref.value
    prepared: list[PreparedBatch] = prepared_ref.value
    if _already_committed(run):
        # An earlier attempt committed and failed afterwards (moving parts, writing reports):
        # finish those steps only; committing again would add the run's paragraphs twice.
        with run.store.transaction():
            finish_parts(run.store.conn, run.processed_dir)
        write_reports(run.store, run.summary)
        return run.summary
    before = copy.deepcopy(run.summary.__dict__)
    try:
        return run.commit(plan, prepared)
    except BaseException:
        if not _already_committed(run):
            run.summary.__dict__.update(before)  # the transaction rolled back: so do the counters
        raise


class _Progress:
    """Files prepared so far: a Prefect progress artifact, and a bar on stderr if asked."""

    def __init__(self, total: int, bar: bool) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.bar = bar
        self.artifact_id = create_progress_artifact(0.0, key=PROGRESS_KEY,
                                                    description=f"newsdedup ingest: files prepared (of {total})")
        self.updated = time.monotonic()

    UPDATE_EVERY_SECONDS = 1.0  # an artifact update is an API call (~20 ms on a busy machine)

    def advance(self, files: int) -> None:
        self.done += files
        percent = min(100.0, 100.0 * self.done / self.total)
        now = time.monotonic()
        if now - self.updated >= self.UPDATE_EVERY_SECONDS:
            update_progress_artifact(self.artifact_id, percent)
            self.updated = now
        if self.bar:
            filled = int(percent / 100 * 30)
            sys.stderr.write(f"\rpreparing [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} files")
            sys.stderr.flush()

    def finish(self) -> None:
        update_progress_artifact(self.artifact_id, 100.0)
        if self.bar and self.done:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _prepare_group(run: IngestRun, group: list[PlannedFile], io_retries: int, io_retry_delay: float,
                   logger: Any, prepared: Callable[[], PreparedBatch] | None = None,
                   pooled: Callable[[], PreparedBatch] | None = None) -> list[PreparedBatch]:
    """The batch (from ``prepared``, a Dask task run; from ``pooled``, through a task here; or
    prepared here), then its failures handled as the module says."""
    try:
        batch = prepared() if prepared is not None else prepare_task(
            run, ByReference(group), ByReference(pooled) if pooled is not None else None)
    except Exception as exc:
        logger.warning("prepare: batch of %d files failed (%s: %s); preparing its files one by one",
                       len(group), type(exc).__name__, exc)
        batch = isolate_task(run, ByReference(group))
    out = [batch]
    by_path = {p.entry.path: p for p in group}
    for attempt in range(1, io_retries + 1):
        unreadable = [o for o in batch.files if o.status == "quarantined" and (o.reason or "").startswith(_UNREADABLE)]
        if not unreadable:
            break
        logger.warning("prepare: %d file(s) could not be read (%s); reading again in %.1f s (attempt %d of %d)",
                       len(unreadable), unreadable[0].reason, io_retry_delay, attempt, io_retries)
        time.sleep(io_retry_delay)
        again = [by_path[o.path] for o in unreadable]
        retried_paths = {p.entry.path for p in again}
        batch.files = [o for o in batch.files if o.path not in retried_paths]  # replaced by the new attempt
        batch = isolate_task(run, ByReference(again))
        out.append(batch)
    return out


@flow(name="ingest", log_prints=False, task_runner=ThreadPoolTaskRunner(max_workers=4))
def ingest(
    raw_dir: str = "raw",
    processed_dir: str = "processed",
    batch_size: int | None = None,
    max_file_bytes: int | str | None = None,
    max_run_bytes: int | str | None = None,
    dask_workers: int | None = None,
    dask_address: str | None = None,
    processes: int | None = None,
    lock_wait_seconds: float = 0.0,
    io_retries: int = 2,
    io_retry_delay_seconds: float = 2.0,
    progress_bar: bool = False,
    state_url: str | None = None,
    html_report: bool = True,
    defer_html_report: bool = False,
    prefetch_next_run: bool = False,
    workers: int | None = None,
    threshold: float | None = None,
    extend_threshold: float | None = None,
    numbers_threshold: float | None = None,
    paragraph_share: float | None = None,
    duplicate_share: float | None = None,
    house_line_articles: int | None = None,
    min_words: int | None = None,
    shingle_size: int | None = None,
    num_perm: int | None = None,
    bands: int | None = None,
    rows: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Read new and changed files under raw_dir, tag repeats, write records to processed_dir.

    Settings left at None come from newsdedup.toml (or [tool.newsdedup] in pyproject.toml) in
    the working directory, then NEWSDEDUP_* environment variables, then the defaults
    (pipeline/settings.py); the processed dir remembers the detection settings.

    ``state_url``: where the state is kept (``sqlite:///PATH`` or ``postgresql://…``; default:
    ``$NEWSDEDUP_STATE_URL``, else ``processed_dir/state.sqlite``).

    Batches are prepared on a Dask cluster: ``dask_address`` (a running scheduler, e.g.
    ``tcp://host:8786``; its workers must see raw_dir at the same path), or a LocalCluster of
    ``dask_workers`` processes started for the run; neither (or ``dask_workers=0``): this
    process and its worker processes (``processes``, below; README, "Worker processes").
    ``workers`` is the deprecated name of ``dask_workers``. Without a Dask cluster, ``processes``
    worker processes (default: one per core beyond the first) prepare batches beside this one,
    when the run has more than one batch.

    Leaves a markdown report artifact (key ``ingest-report``), a progress artifact, and the
    same report in processed_dir/last_run.md (with the numbers in last_run.json). With
    ``html_report``, also processed_dir/report.html (``newsdedup report``; it reads the whole
    processed dir: about 5-10 s per 100,000 records) and a table artifact of its top passages.
    ``prefetch_next_run`` (with worker processes, or a local Dask cluster): when this run leaves
    files for the next one, they stay up and prepare the next run's batches while this run
    commits; the next flow run in this process uses them (``newsdedup run`` on a backlog).
    ``defer_html_report``: skip it when this run leaves files for the next one (a backlog read
    in several runs back to back, ``newsdedup run``): the backlog's last run writes it once.
    """
    logger = get_run_logger()
    if state_url:
        set_state_url(state_url)
    if workers is not None and dask_workers is None:
        logger.warning("ingest: parameter workers is deprecated; use dask_workers (newsdedup run --dask-workers)")
        dask_workers = workers if workers > 1 else 0
    given = {"batch_size": batch_size, "max_file_bytes": max_file_bytes, "max_run_bytes": max_run_bytes,
             "dask_workers": dask_workers, "processes": processes, "threshold": threshold,
             "extend_threshold": extend_threshold,
             "numbers_threshold": numbers_threshold, "paragraph_share": paragraph_share,
             "duplicate_share": duplicate_share, "house_line_articles": house_line_articles, "min_words": min_words,
             "shingle_size": shingle_size, "num_perm": num_perm, "bands": bands, "rows": rows, "seed": seed}
    run_id = str(flow_run.id) if flow_run.id else None
    cluster = None
    closing = None
    keep_pool = False  # the prepare pool stays up for the next run of a backlog (set once committed)
    prefetching = False
    try:
        effective = load_settings(given, override_label=lambda name: f"flow parameter {name}")
        settings = effective.ingest(lock_wait_seconds=lock_wait_seconds)
        dask_workers = int(effective["dask_workers"])
        processes = int(effective["processes"])
        # A cluster given by address is reached before the run takes the lock or writes anything;
        # a local one starts in the background while this process plans and prepares.
        if dask_address:
            close_standing()  # a cluster kept by an earlier run of this process is not the one asked for
            cluster = open_cluster(0, dask_address, logger.info)
        elif dask_workers:
            cluster = standing_cluster(dask_workers) or open_cluster_in_background(dask_workers, logger.info)
        else:
            close_standing()
        if cluster is not None or not processes:
            close_standing_pool()
        with _fewer_collections(), IngestRun(Path(raw_dir), Path(processed_dir), settings, run_id) as run:
            plan = plan_task(run)
            logger.info("plan: %d files seen, %d to read, %d unchanged, %d scan problems (%.2f s)",
                        plan.seen, len(plan.to_read), plan.unchanged, len(plan.problems),
                        run.summary.timings.get("plan", 0.0))
            groups = list(batches(plan.to_read, settings.batch_size))
            progress = _Progress(len(plan.to_read), progress_bar)
            prepare_started = time.perf_counter()
            pool = _pool_for(processes, logger) if cluster is None and processes and (
                len(groups) > 1 or has_standing_pool()) else None
            if pool is not None:
                prepared, here = _prepare_in_pool(run, pool, groups, io_retries, io_retry_delay_seconds,
                                                  logger, progress)
                logger.info("prepare: %d of %d batch(es) in %d worker process(es), %d in this process",
                            len(groups) - here, len(groups), processes, here)
                if prefetch_next_run and plan.deferred and not pool.broken:
                    # The next run follows at once: the workers prepare its batches while this run commits.
                    next_groups = list(batches(plan.next_run(settings.max_run_bytes), settings.batch_size))
                    logger.info("prepare: the next run's %d batch(es) go to the worker processes while this "
                                "run commits", pool.prefetch(next_groups, settings))
                    prefetching = True
            elif cluster is None:
                prepared = []
                for group in groups:
                    prepared += _prepare_group(run, group, io_retries, io_retry_delay_seconds, logger)
                    progress.advance(len(group))
            else:
                by_index: dict[int, list[PreparedBatch]] = {}
                here = 0
                for i, fetch in prepare_on_cluster(cluster, prepare_on_worker_task, groups, settings, logger.warning):
                    by_index[i] = _prepare_group(run, groups[i], io_retries, io_retry_delay_seconds, logger, fetch)
                    here += fetch is None
                    progress.advance(len(groups[i]))
                prepared = [batch for i in sorted(by_index) for batch in by_index[i]]
                logger.info("prepare: %d of %d batch(es) on the Dask cluster, %d in this process",
                            len(groups) - here, len(groups), here)
                cluster, started = None, runner_of(cluster)
                if started is None:
                    logger.warning("dask: the local cluster did not start; every batch was prepared in this process")
                if started is not None and prefetch_next_run and plan.deferred and not dask_address:
                    # The next run follows at once: the cluster stays up and prepares its first
                    # batches while this run commits.
                    next_groups = list(batches(plan.next_run(settings.max_run_bytes), settings.batch_size))
                    logger.info("prepare: the next run's %d batch(es) go to the Dask cluster while this run commits",
                                prefetch(started, prepare_on_worker_task, next_groups, settings, dask_workers))
                elif started is not None:
                    # The commit runs here alone: the cluster stops meanwhile (joined before the flow ends).
                    release_standing(started)
                    closing = close_cluster(started, wait=False)
            progress.finish()
            # Wall time of the phase: on a cluster, the tasks' own timings overlap.
            run.summary.timings["prepare"] = round(time.perf_counter() - prepare_started, 3)
            files = [o for b in prepared for o in b.files]
            logger.info("prepare: %d files in %d batch(es), %d articles, %d quarantined (%.2f s)",
                        len(files), len(groups), sum(len(b.articles) for b in prepared),
                        sum(1 for o in files if o.status == "quarantined"), run.summary.timings.get("prepare", 0.0))
            summary = commit_task(run, ByReference(plan), ByReference(prepared))
            keep_pool = prefetching  # a run that failed leaves no pool behind it
            logger.info("commit: %d records written, %d rewritten, %d paragraphs, %d repeats flagged, "
                        "%d quarantined (%.2f s)", summary.records_written, summary.records_rewritten,
                        summary.paragraphs, summary.repeats_flagged,
                        summary.files_quarantined + summary.items_quarantined, summary.timings.get("commit", 0.0))
            report = summary_markdown(summary)
    except Exception as exc:
        create_markdown_artifact(f"# newsdedup ingest run failed\n\n`{type(exc).__name__}: {exc}`\n\n"
                                 "processed/ was left as it was before this run.\n",
                                 key=REPORT_KEY, description="newsdedup ingest run: failed")
        raise
    finally:
        if not keep_pool:
            close_standing_pool(wait_for_workers=False)  # its workers stop while this run commits
        if cluster is not None and (started := runner_of(cluster)) is not None:
            release_standing(started)
            close_cluster(started)
        if closing is not None:
            closing.join()
    create_markdown_artifact(report, key=REPORT_KEY, description=f"newsdedup ingest run #{summary.run_seq}")
    if html_report and not (defer_html_report and summary.files_deferred):
        _html_report(Path(processed_dir), logger)
    logger.info("report: artifact %r, %s", REPORT_KEY, Path(processed_dir) / LAST_RUN_MD)
    return summary.as_dict()


def _pool_for(processes: int, logger: Any) -> PreparePool | None:
    """The prepare pool of this process, or None where it cannot start (no /dev/shm, no
    process left to fork): the run then prepares in this process, as with ``processes=0``."""
    try:
        return standing_pool(processes)
    except Exception as exc:  # noqa: BLE001
        logger.warning("prepare: worker processes could not start (%s: %s); preparing in this process",
                       type(exc).__name__, exc)
        return None


def _prepare_in_pool(run: IngestRun, pool: PreparePool, groups: list[list[PlannedFile]], io_retries: int,
                     io_retry_delay: float, logger: Any, progress: _Progress) -> tuple[list[PreparedBatch], int]:
    """Every batch, by the pool's workers and this process together; (batches in order, how many
    were prepared here)."""
    by_index: dict[int, list[PreparedBatch]] = {}
    here = 0
    for i, pooled in pool.take(groups, run.settings, logger.warning):
        by_index[i] = _prepare_group(run, groups[i], io_retries, io_retry_delay, logger, pooled=pooled)
        here += pooled is None
        progress.advance(len(groups[i]))
    return [batch for i in sorted(by_index) for batch in by_index[i]], here


def _html_report(processed: Path, logger: Any) -> None:
    """processed/report.html, a link artifact to it and a table artifact of its top passages. A failure
    here costs the HTML report only, never the run (it is committed by now)."""
    from pipeline.report import write_report

    try:
        written = write_report(processed, processed / HTML_REPORT)
    except Exception as exc:  # noqa: BLE001
        logger.warning("report: HTML report not written (%s: %s)", type(exc).__name__, exc)
        return
    path = Path(written["path"]).resolve()
    create_link_artifact(path.as_uri(), link_text=str(path), key=HTML_REPORT_KEY,
                         description=f"newsdedup HTML report: {written['records']} records, "
                                     f"{written['passages']} repeated passages (open from the machine that ran it)")
    if written["top_passages"]:
        create_table_artifact(written["top_passages"], key=TOP_PASSAGES_KEY,
                              description="newsdedup: the most copied passages of the processed dir")
    logger.info("report: %s (%.2f s)", path, written["timings"]["total"])
