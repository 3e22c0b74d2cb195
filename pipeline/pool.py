"""Preparation in worker processes beside the run's own: a plain process pool, no Prefect.

Preparing (read, clean, metadata, sentences, sketches) is CPU-bound Python, and the commit is
one sequential step, so a run on one process leaves every other core idle. ``PreparePool``
prepares batches in ``workers`` processes started by a fork server (safe in a process that
already runs threads, as a Prefect flow does), while the run's own process:

- takes part in preparing (``take``): the workers take batches from the front of the list,
  this process the last one not handed out whenever none of theirs is finished, so no core
  waits for a slow batch at the end;
- commits while the workers prepare the next run of a backlog (``prefetch``): a commit lasts
  about as long as preparing a run, so that run finds most of its batches done.

A batch prepared by a worker comes back as one pickled bytes value (``prepare_packed``), sent
to this process as soon as it is done (so prefetched batches wait here, pickled: about 3.5 MB
per MB of plain text), and is used only for the same files (path, size, mtime, known hash) and
settings; a raw dir that changed in between costs the work, never a record. A worker that
dies breaks the pool: its batches, and every batch after, are prepared in this process
(``take`` yields them so).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pipeline.ingest import IngestSettings, PlannedFile, PreparedBatch, prepare_packed, unpack_batch

MAX_DEFAULT_WORKERS = 4  # each worker holds the library and its language model: ~150 MB
PREFETCH_PER_WORKER = 32  # batches prepared ahead for the next run, per worker (a 16 MB run is ~24)
# Imported once by the fork server, so each worker starts as a fork of a process that has them.
_PRELOAD = ["pipeline.ingest"]

WORKER_NICENESS = 10
PARENT_CHECK_SECONDS = 1.0  # how soon a worker notices that the run's process is gone

BatchKey = tuple[Any, ...]


def _start_worker(parent: int) -> None:
    """In each worker, as it starts.

    - A lower priority: a worker prepares ahead, for a later step; where cores are short, the
      run's own process (its commit) and Prefect's server (start-up, API calls) go first.
    - Ctrl-C is the run's to handle: a worker would print a KeyboardInterrupt traceback.
    - It exits when the run's process is gone (SIGKILL, the OOM killer): a fork server's child
      keeps both ends of its pipes open and would wait for work for ever."""
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not permitted here: the same priority, only slower
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive, under another user: keep going
                pass

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def default_workers() -> int:
    """One worker per core beyond the run's own (at most ``MAX_DEFAULT_WORKERS``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(MAX_DEFAULT_WORKERS, cores - 1))


def batch_key(group: list[PlannedFile], settings: IngestSettings) -> BatchKey:
    """What a prepared batch depends on: its files as planned, and the settings preparing reads."""
    return (settings.max_file_bytes, settings.dedup,
            tuple((p.entry.path, str(p.entry.abs_path), p.entry.size, p.mtime_ns, p.known_sha256, p.known)
                  for p in group))


def claim_prefetched(groups: list[list[PlannedFile]], settings: IngestSettings,
                     prefetched: dict[BatchKey, Any]) -> tuple[list[tuple[int, Any]], deque[int]]:
    """Splits ``groups`` into ((index, prefetched future), ...) and the indices still to prepare,
    in order; the futures taken are removed from ``prefetched``, so what is left there is what
    these groups do not need (the pool here and the Dask cluster share this)."""
    claimed: list[tuple[int, Any]] = []
    pending: deque[int] = deque()
    for i, group in enumerate(groups):
        future = prefetched.pop(batch_key(group, settings), None)
        if future is None:
            pending.append(i)
        else:
            claimed.append((i, future))
    return claimed, pending


class PreparePool:
    """``workers`` processes preparing batches; see the module docstring."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a prepare pool needs at least one worker, got {workers}")
        self.workers = workers
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        self._executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),))
        self._prefetched: dict[BatchKey, Future[bytes]] = {}
        self.broken = False

    def _submit(self, group: list[PlannedFile], settings: IngestSettings) -> Future[bytes] | None:
        if self._executor is None or self.broken:
            return None
        try:
            return self._executor.submit(prepare_packed, group, settings)
        except (BrokenProcessPool, RuntimeError, OSError, EOFError):
            # A worker died, the pool is shutting down, or no process could be forked for it.
            self.broken = True
            return None

    def prefetch(self, groups: list[list[PlannedFile]], settings: IngestSettings) -> int:
        """Starts preparing the first of ``groups`` (the next run's batches); returns how many."""
        groups = groups[: PREFETCH_PER_WORKER * self.workers]
        for group in groups:
            key = batch_key(group, settings)
            if key not in self._prefetched and (future := self._submit(group, settings)) is not None:
                self._prefetched[key] = future
        return len(groups)

    def take(self, groups: list[list[PlannedFile]], settings: IngestSettings,
             log: Callable[[str], None] | None = None) -> Iterator[tuple[int, Callable[[], PreparedBatch] | None]]:
        """(batch index, a call returning the batch or raising its failure), in the order batches
        finish; or (batch index, None): the caller prepares that batch itself, now.

        Batches prefetched for these files are used; the workers get the others from the front,
        at most two each ahead, and this process takes one from the back whenever none of theirs
        is finished. Nothing handed to a worker is cancelled (on Python 3.11 a worker dying
        after a cancel leaves the pool's other futures unresolved for ever): a prefetched batch
        these groups do not need (raw/ changed) is prepared and dropped. A fetched batch is
        dropped here at once, so the pool holds only batches not yet handed out."""
        claimed, pending = claim_prefetched(groups, settings, self._prefetched)
        self._prefetched = {}  # what was not claimed is prepared and dropped (never cancelled: above)
        inflight: dict[int, Future[bytes]] = dict(claimed)
        del claimed
        ahead = 2 * self.workers
        told = False
        while pending or inflight:
            while pending and len(inflight) < ahead and not self.broken:
                future = self._submit(groups[pending[0]], settings)
                if future is None:
                    break
                inflight[pending.popleft()] = future
            finished = [i for i, future in inflight.items() if future.done()]
            for i in finished:
                future = inflight.pop(i)
                if isinstance(future.exception(), BrokenProcessPool):
                    self.broken = True
                    if log and not told:
                        log("prepare: a worker process of the prepare pool died; preparing its batches "
                            "in this process")
                        told = True
                    yield i, None
                    continue

                def fetch(future: Future[bytes] = future) -> PreparedBatch:
                    return unpack_batch(future.result())

                yield i, fetch
                del future, fetch
            if finished:
                continue
            if pending:
                yield pending.pop(), None  # the back: the workers are at the front
            else:
                wait(list(inflight.values()), return_when=FIRST_COMPLETED)

    def close(self, wait_for_workers: bool = True) -> None:
        """Stops the workers; batches prefetched and not taken are dropped."""
        executor, self._executor = self._executor, None
        self._prefetched.clear()
        if executor is not None:
            executor.shutdown(wait=wait_for_workers, cancel_futures=True)


# --- one pool kept between the runs of a backlog ------------------------------------------
#
# `newsdedup run` reads a large backlog in several runs, one after the other in one process:
# the pool stays up between them, so the next run finds what it prefetched.

_standing: dict[str, PreparePool] = {}


def standing_pool(workers: int) -> PreparePool:
    """The pool of this process with ``workers`` workers: the one kept up, else a new one
    (a kept pool of another size, or a broken one, is closed)."""
    pool = _standing.get("pool")
    if pool is not None and pool.workers == workers and not pool.broken:
        return pool
    close_standing_pool()
    pool = PreparePool(workers)
    _standing["pool"] = pool
    return pool


def has_standing_pool() -> bool:
    return "pool" in _standing


def close_standing_pool(wait_for_workers: bool = True) -> None:
    """Stops the kept pool, if any (the end of a backlog, or a run that needs none)."""
    pool = _standing.pop("pool", None)
    if pool is not None:
        pool.close(wait_for_workers)
