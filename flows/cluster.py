"""Preparation on a Dask cluster, through prefect-dask's ``DaskTaskRunner``.

``open_cluster`` starts a ``distributed.LocalCluster`` for the run (worker processes on
127.0.0.1) or connects to a running scheduler, and fails at once, in one line, when it cannot;
``prepare_on_cluster`` submits one Prefect task per batch and hands batches back as they
finish. Dask itself reruns a task whose worker died (``distributed.scheduler.allowed-failures``
times), so a killed worker costs time, never records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from prefect import Task
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, PREFECT_API_URL, temporary_settings

from flows.by_reference import ByReference
from pipeline.ingest import IngestSettings, PlannedFile, PreparedBatch, unpack_batch
from pipeline.pool import PREFETCH_PER_WORKER, batch_key, claim_prefetched

CONNECT_TIMEOUT_SECONDS = 10  # to reach a scheduler given by address
WORKERS_TIMEOUT_SECONDS = 30  # for a scheduler to have at least one worker
class DaskUnavailable(RuntimeError):
    """The cluster asked for cannot be started or reached; nothing was written."""


def open_cluster(workers: int, address: str | None, log: Callable[[str], None]) -> Any:
    """A started ``DaskTaskRunner`` connected to its scheduler (the caller exits it).

    ``address``: the running scheduler there; else a LocalCluster of ``workers`` processes,
    one thread each (preparing is CPU-bound Python), on the loopback interface only.
    """
    from prefect_dask import DaskTaskRunner

    # The scheduler's and workers' INFO lines (every connection, every close) are noise in a
    # run's output; warnings and errors still show.
    logging.getLogger("distributed").setLevel(logging.WARNING)

    if address:
        runner = DaskTaskRunner(address=address, client_kwargs={"timeout": f"{CONNECT_TIMEOUT_SECONDS}s"})
        where = f"the Dask scheduler at {address}"
    else:
        # preload: each worker imports the library as it starts, while this process plans.
        runner = DaskTaskRunner(cluster_kwargs={
            "n_workers": workers, "threads_per_worker": 1, "processes": True, "preload": ["flows.ingest"],
            "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"})
        where = f"a local Dask cluster of {workers} worker processes"
    runner.__enter__()
    try:
        client = runner.client  # connects (or starts the cluster) now, not at the first batch
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_SECONDS)
    except BaseException as exc:
        runner.__exit__(None, None, None)
        if isinstance(exc, Exception):
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DaskUnavailable(f"cannot use {where}: {reason}") from None
        raise
    info = client.scheduler_info()
    dashboard = client.dashboard_link or "none (install bokeh for it)"
    scheduler = "" if address else f" ({info.get('address', '?')})"
    log(f"dask: {where}{scheduler}, {len(info.get('workers', {}))} worker(s); dashboard {dashboard}")
    return runner


def close_cluster(runner: Any, wait: bool = True) -> threading.Thread | None:
    """Disconnects; stops the LocalCluster the runner started (a cluster given by address stays
    up). ``wait=False``: in a thread, returned for joining later: worker processes take a few
    seconds to stop (Prefect's threads in them), time the commit need not wait for."""
    if wait:
        runner.__exit__(None, None, None)
        return None
    closing = threading.Thread(target=runner.__exit__, args=(None, None, None), name="dask-close", daemon=True)
    closing.start()
    return closing


def _worker_settings() -> dict[Any, Any]:
    """Prefect settings for the workers' task runs: the API this flow talks to. In embedded
    mode that is this process's temporary server, which a worker would otherwise not know
    (and start one of its own); it listens on 127.0.0.1, so workers on other machines need a
    Prefect server they can reach (PREFECT_API_URL)."""
    if PREFECT_API_URL.value():
        return {}
    context = FlowRunContext.get()
    url = getattr(getattr(context, "client", None), "api_url", None)
    if not url:
        return {}
    # Plain http on loopback has no TLS to verify; Prefect still builds a client per task run
    # with a context that parses certifi's CA bundle: ~10 % of a worker's time on 200-file batches.
    return {PREFECT_API_URL: str(url), PREFECT_API_TLS_INSECURE_SKIP_VERIFY: str(url).startswith("http://127.0.0.1:")}


def open_cluster_in_background(workers: int, log: Callable[[str], None]) -> Future[Any]:
    """``open_cluster`` for a LocalCluster of ``workers`` processes, in a thread: its workers take
    2-4 s to start (each imports the library), time in which this process already prepares."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="dask-start")
    future = pool.submit(open_cluster, workers, None, log)
    pool.shutdown(wait=False)
    return future


def runner_of(cluster: Any) -> Any | None:
    """The started runner of ``open_cluster`` or ``open_cluster_in_background`` (waiting for it),
    or None if a background start failed (the caller has logged it)."""
    if isinstance(cluster, Future):
        try:
            return cluster.result()
        except DaskUnavailable:
            return None
    return cluster


# --- a cluster kept between the runs of one backlog ---------------------------------------
#
# `newsdedup run` reads a large backlog in several runs, one after the other in one process.
# While a run commits (one process, one core), its local cluster stays up and prepares the
# next run's first batches, as Prefect task runs of this run ("prefetch"); the next flow run
# in this process finds the cluster and those batches here. A batch is used only for the same
# files (path, size, mtime, known hash) and settings, so a raw dir that changed in between
# costs the work, never a record.

_standing: dict[str, Any] = {}  # "workers": int, "runner": started DaskTaskRunner, "prefetched": {key: future}


def standing_cluster(workers: int) -> Any | None:
    """The runner the previous run of this process kept up with ``workers`` workers, or None
    (another size is closed)."""
    if _standing and _standing["workers"] == workers:
        return _standing["runner"]
    close_standing()
    return None


NO_WORKER_CHECK_SECONDS = 10.0  # waiting on the cluster this long, look whether it has workers at all


def prefetch(runner: Any, task: Task[..., bytes], groups: list[list[PlannedFile]], settings: IngestSettings,
             workers: int) -> int:
    """Submits the first of ``groups`` (the next run's batches) and keeps the cluster up for that
    run. A commit takes about as long as preparing a run, so one worker thread prepares most of
    the next run meanwhile; what it has prepared waits in the workers' memory, pickled (about
    3.5 MB per MB of plain text), not in this process's."""
    prefetched = _standing.get("prefetched", {}) if _standing.get("runner") is runner else {}
    groups = groups[: PREFETCH_PER_WORKER * max(1, sum(runner.client.nthreads().values()))]
    with temporary_settings(_worker_settings()):
        for group in groups:
            key = batch_key(group, settings)
            if key not in prefetched:
                prefetched[key] = runner.submit(task, {"group": ByReference(group), "settings": settings})
    _standing.update(workers=workers, runner=runner, prefetched=prefetched)
    return len(groups)


def release_standing(runner: Any) -> None:
    """The caller closes ``runner`` itself: forget it (and its prefetched batches) if kept."""
    if _standing.get("runner") is runner:
        _standing.clear()


def close_standing() -> None:
    """Stops a kept cluster and drops what it prefetched (the end of a backlog, or a change)."""
    runner = _standing.get("runner")
    _standing.clear()
    if runner is not None:
        close_cluster(runner)


def prepare_on_cluster(cluster: Any, task: Task[..., bytes], groups: list[list[PlannedFile]],
                       settings: IngestSettings, log: Callable[[str], None] | None = None,
                       ) -> Iterator[tuple[int, Callable[[], PreparedBatch] | None]]:
    """(batch index, a call returning the batch or raising its failure), in the order batches
    finish; or (batch index, None): this process prepares that batch itself, now.

    This process takes part: the workers take batches from the front of the list, at most two
    each ahead, and this process takes one from the back whenever none of theirs is finished.
    So both cores of a 2-core machine prepare, and nobody waits at the end for a slow batch.
    ``cluster`` may be a Future still starting (``open_cluster_in_background``): until it is up
    this process prepares alone; if it fails, alone to the end (``log`` says so once).

    A fetched batch is released on the cluster at once, so the workers hold only unfetched
    ones and this process only what the run has prepared so far."""
    finishing = threading.Event()  # set by the cluster's thread when any batch finishes
    inflight: dict[str, tuple[int, Any]] = {}
    runner = None if isinstance(cluster, Future) else cluster
    starting = cluster if isinstance(cluster, Future) else None
    # Batches the previous run of this process prefetched on this cluster are in flight already.
    prefetched = _standing.pop("prefetched", {}) if runner is not None and _standing.get("runner") is runner else {}
    claimed, pending = claim_prefetched(groups, settings, prefetched)
    for i, future in claimed:
        future.wrapped_future.add_done_callback(lambda _: finishing.set())
        inflight[future.wrapped_future.key] = (i, future)
    del claimed
    if prefetched and runner is not None:  # batches this run does not need (raw/ changed): cancelled
        runner.client.cancel([future.wrapped_future for future in prefetched.values()])
    del prefetched
    ahead = 0
    while pending or inflight:
        if starting is not None and starting.done():
            try:
                runner = starting.result()
            except DaskUnavailable as exc:
                if log:
                    log(f"dask: {exc}; preparing in this process")
            starting = None
        if runner is not None:
            if not ahead:
                ahead = 2 * max(1, sum(runner.client.nthreads().values()))
            with temporary_settings(_worker_settings()):
                while pending and len(inflight) < ahead:
                    i = pending.popleft()
                    future = runner.submit(task, {"group": ByReference(groups[i]), "settings": settings})
                    future.wrapped_future.add_done_callback(lambda _: finishing.set())
                    inflight[future.wrapped_future.key] = (i, future)
        finishing.clear()  # before looking: a batch finishing from now on wakes the wait below
        finished = [key for key, (_, future) in inflight.items() if future.wrapped_future.done()]
        for key in finished:
            i, future = inflight.pop(key)

            def fetch(future: Any = future) -> PreparedBatch:
                return unpack_batch(future.result())

            yield i, fetch
            del future
        if finished:
            continue
        if pending:
            yield pending.pop(), None
        elif inflight:
            if not finishing.wait(timeout=NO_WORKER_CHECK_SECONDS) and runner is not None \
                    and not runner.client.nthreads():
                # Every worker is gone (and none comes back): this process takes their batches.
                if log:
                    log("dask: no worker left on the cluster; preparing its batches in this process")
                runner.client.cancel([future.wrapped_future for _, future in inflight.values()])
                pending.extend(sorted(i for i, _ in inflight.values()))
                inflight.clear()
                runner = None  # nothing more is sent to it
