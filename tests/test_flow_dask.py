"""Preparation on a real Dask cluster (flows/cluster.py) under the real flow.

A ``distributed.LocalCluster`` of 2 worker processes started by the flow, and a ``dask
scheduler`` with two ``dask worker`` processes started here on 127.0.0.1 (free ports, stopped
by PID in teardown). Records are compared with those of a run without Dask; one worker of
the external cluster SIGKILLs itself in the middle of its first batch (NEWSDEDUP_CRASH_AT,
pipeline/ingest.py), so Dask must recompute that batch on the other one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import CRASH_ENV, IngestSettings, run_ingest
from pipeline.records import read_records
from tests.conftest import ROOT, SEEDS, write_background_reports

pytestmark = pytest.mark.e2e

DASK = Path(sys.executable).parent / "dask"
BATCH_SIZE = 2  # several batches from a small corpus, each of at least two files (the crash point)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stable(processed: Path) -> list[dict[str, Any]]:
    """Records without what differs between runs by design (run ids, times)."""
    return sorted(({k: v for k, v in r.items() if k != "pipeline"} for r in read_records(processed)),
                  key=lambda r: r["id"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The sample articles and ten short ones that repeat their background; and the records a
    run without Dask (the library alone, in this process) makes of them."""
    base = tmp_path_factory.mktemp("dask")
    raw = base / "raw"
    raw.mkdir()
    for path in SEEDS.glob("*.txt"):
        shutil.copy2(path, raw / path.name)
    write_background_reports(raw, 10)
    plain = base / "plain"
    summary = run_ingest(raw, plain, IngestSettings(batch_size=BATCH_SIZE))
    assert summary.records_written == 15 and summary.repeats_flagged > 0
    return raw, _stable(plain)


@pytest.fixture(autouse=True)
def _fast_flows(prefect_harness: None) -> Iterator[None]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def _run(raw: Path, processed: Path, **params: Any) -> Any:
    from flows.ingest import ingest

    return ingest(raw_dir=str(raw), processed_dir=str(processed), batch_size=BATCH_SIZE, return_state=True, **params)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def external_cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`dask scheduler` and two `dask worker` processes (no nanny: a killed worker stays dead);
    the first SIGKILLs itself at its first batch's second file."""
    from distributed import Client

    port, dashboard = _free_port(), _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen([str(DASK), *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    worker_args = ["worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1", "--no-dashboard",
                   "--preload", "flows.ingest"]
    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port),
                            "--dashboard-address", f"127.0.0.1:{dashboard}"], dict(os.environ))
        doomed = start("worker-doomed", worker_args, dict(os.environ, **{CRASH_ENV: "prepare-batch"}))
        start("worker", worker_args, dict(os.environ))
        with Client(address, timeout=60) as client:
            deadline = time.monotonic() + 120
            while len(client.scheduler_info()["workers"]) < 2:
                exited = [p.args for p in started if p.poll() is not None]
                assert not exited and time.monotonic() < deadline, f"dask processes not up: {exited}, see {logs}"
                time.sleep(0.2)
        yield {"address": address, "dashboard": dashboard, "doomed": doomed, "logs": logs}
    finally:
        for process in reversed(started):
            _stop(process)


def test_local_cluster_gives_the_records_of_a_run_without_dask(corpus: tuple[Path, list[dict[str, Any]]],
                                                                tmp_path: Path) -> None:
    raw, expected = corpus
    state = _run(raw, tmp_path / "processed", dask_workers=2)
    assert state.is_completed(), state.message
    assert state.result()["records_written"] == 15
    assert _stable(tmp_path / "processed") == expected


def test_worker_killed_mid_batch_on_an_external_cluster_changes_no_record(
        corpus: tuple[Path, list[dict[str, Any]]], external_cluster: dict[str, Any], tmp_path: Path) -> None:
    raw, expected = corpus
    state = _run(raw, tmp_path / "processed", dask_address=external_cluster["address"])
    assert state.is_completed(), state.message
    # The doomed worker did take a batch and died in it (not merely idle): Dask reran that batch.
    doomed = external_cluster["doomed"]
    assert doomed.wait(30) == -signal.SIGKILL
    assert _stable(tmp_path / "processed") == expected

    # What a user is told on connecting: the scheduler's workers and its dashboard.
    from flows.cluster import close_cluster, open_cluster

    said: list[str] = []
    close_cluster(open_cluster(0, external_cluster["address"], said.append))
    assert said == [f"dask: the Dask scheduler at {external_cluster['address']}, 1 worker(s); "
                    f"dashboard http://127.0.0.1:{external_cluster['dashboard']}/status"]


def test_unreachable_cluster_fails_the_run_before_anything_is_written(
        corpus: tuple[Path, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.cluster

    raw, _ = corpus
    nobody = f"tcp://127.0.0.1:{_free_port()}"
    monkeypatch.setattr(flows.cluster, "CONNECT_TIMEOUT_SECONDS", 1)
    state = _run(raw, tmp_path / "processed", dask_address=nobody)
    assert state.is_failed()
    with pytest.raises(flows.cluster.DaskUnavailable, match=f"cannot use the Dask scheduler at {nobody}"):
        state.result()
    assert not (tmp_path / "processed").exists()


def test_run_command_refuses_an_unreachable_cluster_in_one_line(
        corpus: tuple[Path, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows import cli

    raw, _ = corpus
    nobody = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--raw-dir", str(raw), "--processed-dir", str(tmp_path / "processed"),
                  "--dask-address", nobody])
    assert exited.value.code == 4
    err = capsys.readouterr().err
    assert err == f"newsdedup: cannot reach the Dask scheduler at {nobody}: Connection refused\n"
    assert not (tmp_path / "processed").exists()


def test_this_process_shares_the_batches_with_the_cluster(corpus: tuple[Path, list[dict[str, Any]]]) -> None:
    """prepare_on_cluster hands out every batch exactly once: to the workers from the front, to
    this process (fetch None) from the back whenever no worker's batch is finished; a cluster
    still starting in the background leaves every batch to this process until it is up."""
    from prefect import flow

    from flows.cluster import close_cluster, open_cluster, open_cluster_in_background, prepare_on_cluster
    from flows.ingest import prepare_on_worker_task
    from pipeline.ingest import PlannedFile
    from pipeline.read import scan_raw

    raw, _ = corpus
    settings = IngestSettings(batch_size=1)

    @flow
    def share(background: bool) -> list[tuple[int, bool]]:
        entries, _ = scan_raw(raw)
        groups = [[PlannedFile(entry, 0, None)] for entry in sorted(entries, key=lambda e: e.path)]
        cluster = open_cluster_in_background(1, print) if background else open_cluster(1, None, print)
        handed: list[tuple[int, bool]] = []
        try:
            for i, fetch in prepare_on_cluster(cluster, prepare_on_worker_task, groups, settings):
                if fetch is None:
                    time.sleep(0.5)  # this process "prepares" slowly: the worker gets the most
                else:
                    assert fetch().files[0].path == groups[i][0].entry.path
                handed.append((i, fetch is None))
        finally:
            close_cluster(cluster if not background else cluster.result())
        assert sorted(i for i, _ in handed) == list(range(len(groups)))
        return handed

    handed = share(False)
    on_cluster = [i for i, here in handed if not here]
    in_process = [i for i, here in handed if here]
    assert on_cluster and in_process
    assert min(in_process) > min(on_cluster) and max(in_process) == len(handed) - 1  # from the back
    early = share(True)
    assert early[0] == (len(early) - 1, True)  # the cluster was not up yet: this process began


def test_a_backlog_run_keeps_its_cluster_to_prepare_the_next_run(corpus: tuple[Path, list[dict[str, Any]]],
                                                                  tmp_path: Path) -> None:
    """With prefetch_next_run, a run that leaves files for the next keeps its local cluster up,
    which prepares the next run's batches while this run commits; the next run (in this
    process) takes them, the last run stops the cluster, and the records are those of one run
    without Dask."""
    import flows.cluster
    from pipeline.dedup import DedupSettings
    from pipeline.ingest import batches, plan_run
    from pipeline.pool import batch_key
    from pipeline.state import Store

    raw, expected = corpus
    processed = tmp_path / "processed"
    runs = 0
    prefetched_batches = []
    while True:
        state = _run(raw, processed, dask_workers=1, prefetch_next_run=True, max_run_bytes=6_000)
        assert state.is_completed(), state.message
        runs += 1
        if not state.result()["files_deferred"]:
            break
        kept = flows.cluster._standing
        assert kept["workers"] == 1 and kept["runner"] is not None
        prefetched_batches.append(len(kept["prefetched"]))
        # Exactly the batches the next run will plan, so that it takes them all.
        store = Store(processed, DedupSettings(), raw)
        try:
            upcoming = list(batches(plan_run(raw, store, 6_000).to_read, BATCH_SIZE))
        finally:
            store.close()
        first = upcoming[: flows.cluster.PREFETCH_PER_WORKER]  # a few per worker, not the whole run
        assert set(kept["prefetched"]) == {batch_key(g, IngestSettings()) for g in first}
    assert runs >= 3 and all(prefetched_batches)
    assert flows.cluster._standing == {}  # the last run stopped it
    assert _stable(processed) == expected
