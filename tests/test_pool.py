"""The prepare pool (pipeline/pool.py): real worker processes, no Prefect.

Records made from batches the workers prepared are compared with those of a run prepared in
this process alone; a worker is SIGKILLed mid-run to show that its batches are prepared here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import IngestRun, IngestSettings, PlannedFile, PreparedBatch, batches, prepare_batch, run_ingest
from pipeline.pool import PreparePool, batch_key, close_standing_pool, standing_pool
from pipeline.read import scan_raw
from pipeline.records import read_records
from tests.conftest import SEEDS, write_background_reports

SETTINGS = IngestSettings(batch_size=2)


def _stable(processed: Path) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in r.items() if k != "pipeline"} for r in read_records(processed)),
                  key=lambda r: r["id"])


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample articles and twelve short reports that repeat one background sentence."""
    raw = tmp_path_factory.mktemp("pool") / "raw"
    raw.mkdir()
    for path in SEEDS.glob("*.txt"):
        shutil.copy2(path, raw / path.name)
    write_background_reports(raw, 12)
    return raw


@pytest.fixture
def pool() -> Iterator[PreparePool]:
    pool = PreparePool(1)
    try:
        yield pool
    finally:
        pool.close()


def _groups(raw: Path) -> list[list[PlannedFile]]:
    entries, _ = scan_raw(raw)
    files = [PlannedFile(e, e.abs_path.stat().st_mtime_ns, None) for e in sorted(entries, key=lambda e: e.path)]
    return list(batches(files, SETTINGS.batch_size))


def _take_all(pool: PreparePool, groups: list[list[PlannedFile]]) -> tuple[dict[int, PreparedBatch], list[int]]:
    """Every batch, as a run takes them: (batches by index, the indices prepared here)."""
    prepared: dict[int, PreparedBatch] = {}
    here: list[int] = []
    for i, fetch in pool.take(groups, SETTINGS):
        assert i not in prepared
        if fetch is None:
            here.append(i)
            prepared[i] = prepare_batch(groups[i], SETTINGS)
        else:
            prepared[i] = fetch()
    assert sorted(prepared) == list(range(len(groups)))
    return prepared, here


def test_batches_prepared_by_workers_give_the_records_of_a_run_in_one_process(
        raw: Path, pool: PreparePool, tmp_path: Path) -> None:
    alone = tmp_path / "alone"
    run_ingest(raw, alone, SETTINGS)
    pooled = tmp_path / "pooled"
    with IngestRun(raw, pooled, SETTINGS) as run:
        plan = run.plan()
        groups = list(batches(plan.to_read, SETTINGS.batch_size))
        prepared, here = _take_all(pool, groups)
        run.commit(plan, [prepared[i] for i in sorted(prepared)])
    assert len(here) < len(groups)  # the worker prepared some
    assert _stable(pooled) == _stable(alone)
    assert sum(r["repeats"] for r in _stable(pooled)) > 0


def test_this_process_takes_batches_from_the_back_while_the_worker_takes_the_front(
        raw: Path, pool: PreparePool) -> None:
    groups = _groups(raw)
    prepared, here = _take_all(pool, groups)
    # Nothing is finished when taking starts (the worker is still starting): this process
    # begins with the last batch, and goes on backwards.
    assert here and here[0] == len(groups) - 1
    assert here == sorted(here, reverse=True)
    assert 0 not in here
    for i, batch in prepared.items():
        assert [o.path for o in batch.files] == [p.entry.path for p in groups[i]]


def test_prefetched_batches_are_used_and_a_changed_file_is_prepared_again(raw: Path, pool: PreparePool,
                                                                         tmp_path: Path) -> None:
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    groups = _groups(copy)
    assert pool.prefetch(groups, SETTINGS) == len(groups)
    deadline = time.monotonic() + 120
    while not all(f.done() for f in pool._prefetched.values()):
        assert time.monotonic() < deadline, "the worker did not prepare the prefetched batches"
        time.sleep(0.05)
    changed = copy / "extra-00.json"
    changed.write_text(json.dumps({"text": "A correction, in words no other report uses at all.",
                                   "published": "2020-11-01"}))
    os.utime(changed, ns=(1, 1))
    regrouped = _groups(copy)
    stale = next(i for i, g in enumerate(regrouped) if any(p.entry.path == "extra-00.json" for p in g))
    assert batch_key(regrouped[stale], SETTINGS) != batch_key(groups[stale], SETTINGS)
    prepared, here = _take_all(pool, regrouped)
    # Every other batch was done before taking began: none is prepared here again.
    assert set(here) <= {stale}
    texts = [p.text for a in prepared[stale].articles if a.path == "extra-00.json" for p in a.paragraphs]
    assert texts == ["A correction, in words no other report uses at all."]


def test_a_worker_killed_mid_run_leaves_its_batches_to_this_process(raw: Path, pool: PreparePool,
                                                                    tmp_path: Path) -> None:
    groups = _groups(raw)
    handed: list[tuple[int, bool]] = []
    prepared: dict[int, PreparedBatch] = {}
    messages: list[str] = []
    for i, fetch in pool.take(groups, SETTINGS, messages.append):
        if not handed:  # the first batch handed out: kill the worker before it prepares the rest
            assert pool._executor is not None
            for process in list(pool._executor._processes.values()):
                os.kill(process.pid, signal.SIGKILL)
        if fetch is not None:
            try:
                prepared[i] = fetch()
            except Exception:  # noqa: BLE001 - the flow prepares such a batch here, file by file
                prepared[i] = prepare_batch(groups[i], SETTINGS)
        else:
            prepared[i] = prepare_batch(groups[i], SETTINGS)
        handed.append((i, fetch is None))
    assert sorted(prepared) == list(range(len(groups)))
    assert pool.broken
    assert messages == ["prepare: a worker process of the prepare pool died; preparing its batches in this process"]
    for i, batch in prepared.items():
        assert [o.path for o in batch.files] == [p.entry.path for p in groups[i]]
        assert all(o.status == "ok" for o in batch.files)


def test_a_standing_pool_is_kept_for_the_same_size_and_replaced_when_broken() -> None:
    try:
        first = standing_pool(1)
        assert standing_pool(1) is first
        first.broken = True
        second = standing_pool(1)
        assert second is not first
        assert standing_pool(2) is not second and second._executor is None  # another size: closed
    finally:
        close_standing_pool()



def test_workers_run_at_a_lower_priority_and_leave_ctrl_c_to_the_run(pool: PreparePool) -> None:
    """Where cores are short, the committing process and Prefect's server go first; Ctrl-C
    stops the run, without a traceback from each worker."""
    from pipeline.pool import WORKER_NICENESS

    assert pool._executor is not None
    here = os.nice(0)
    assert pool._executor.submit(os.nice, 0).result(timeout=120) == min(19, here + WORKER_NICENESS)
    assert pool._executor.submit(signal.getsignal, signal.SIGINT).result(timeout=120) == signal.SIG_IGN


_OWNER = """
import os, sys
from pipeline.pool import PreparePool
pool = PreparePool(1)
print(pool._executor.submit(os.getpid).result(timeout=120), flush=True)
sys.stdin.read()  # until killed
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaps yet
    except FileNotFoundError:
        return True


def test_workers_exit_when_the_run_process_is_killed() -> None:
    """SIGKILL (or the OOM killer) gives the run no chance to stop its workers: they notice."""
    from tests.conftest import ROOT

    owner = subprocess.Popen([sys.executable, "-c", _OWNER], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        worker = int(owner.stdout.readline())
        assert not _gone(worker)
        owner.kill()
        owner.wait(30)
        deadline = time.monotonic() + 30
        while not _gone(worker):
            assert time.monotonic() < deadline, f"worker {worker} outlived the run's process"
            time.sleep(0.1)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(30)
