"""pipeline.state_pg against a real PostgreSQL server: the same records, readers, crash safety
and writer lock as the SQLite state (tests/postgres_server.py starts the server)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import state_backend, state_pg
from pipeline.catalog import read_passages
from pipeline.check import check_processed
from pipeline.ingest import CRASH_ENV, IngestSettings, run_ingest
from pipeline.lock import writer_lock
from pipeline.records import read_records
from pipeline.state import ProcessedDirLocked
from pipeline.state_backend import STATE_URL_ENV
from pipeline.status import collect_status
from tests.conftest import ROOT
from tests.postgres_server import SKIP_REASON, fresh_database, postgres_server, server_bin
from tests.test_ingest import SEED, part_records, stable

_databases = itertools.count()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    if server_bin() is None:
        pytest.skip(SKIP_REASON)
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty database, the state URL of this test (subprocesses inherit it)."""
    url = fresh_database(pg_server, f"state_{next(_databases)}")
    monkeypatch.setenv(STATE_URL_ENV, url)
    return url


@pytest.fixture(scope="module")
def sqlite_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], dict[str, Any], list[Any]]:
    """Records, status and passages of one run over the seeds on the SQLite state."""
    processed = tmp_path_factory.mktemp("sqlite") / "processed"
    run_ingest(ROOT / "raw", processed)
    return (stable(list(read_records(processed))), _without_run(collect_status(processed)),
            list(read_passages(processed, occurrences=True)))


def _without_run(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in ("processed_dir", "raw_dir", "last_run")}


def test_seeds_give_the_records_and_readings_of_sqlite(seed_raw: Path, tmp_path: Path, pg_url: str,
                                                      sqlite_reference: tuple[Any, ...],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_pg, "READ_SLICE_ROWS", 2)  # readers' server-side cursors fetch in several slices
    expected = sqlite_reference
    processed = tmp_path / "pg"
    summary = run_ingest(seed_raw, processed)
    assert (summary.records_written, summary.repeats_flagged) == (5, 6)
    assert not (processed / "state.sqlite").exists()
    got = (stable(list(read_records(processed))), _without_run(collect_status(processed)),
           list(read_passages(processed, occurrences=True)))
    assert got == expected
    assert stable(part_records(processed)) == expected[0]
    assert check_processed(processed) == []
    again = run_ingest(seed_raw, processed)
    assert (again.records_written, again.files_unchanged) == (0, 5)


def test_the_development_set_gives_the_records_of_sqlite(tmp_path: Path, pg_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """House lines, spans, split and merged background, whole copies: every kind of decision,
    with its state queries (house-line occurrences among them), on both databases."""
    from pipeline.state import SqliteUnits

    devset = ROOT / "bench" / "devset" / "articles"
    monkeypatch.delenv(STATE_URL_ENV)
    run_ingest(devset, tmp_path / "sqlite")
    expected = stable(list(read_records(tmp_path / "sqlite")))
    found: list[int] = []
    looked_up = SqliteUnits.house_line_occurrences

    def counting(self: SqliteUnits, keys: Any) -> Any:
        out = looked_up(self, keys)
        found.append(sum(len(v) for v in out.values()))
        return out

    monkeypatch.setattr(SqliteUnits, "house_line_occurrences", counting)
    monkeypatch.setenv(STATE_URL_ENV, pg_url)
    for part in range(3):  # in three runs, so that stored house lines are looked up on the server
        raw = tmp_path / "arriving"
        raw.mkdir(exist_ok=True)
        for path in sorted(devset.glob("*.txt"))[part::3]:
            shutil.copy2(path, raw / path.name)
        run_ingest(raw, tmp_path / "pg")
    assert sum(found) > 0
    assert stable(list(read_records(tmp_path / "pg"))) == expected


def test_one_file_per_run_in_any_order_equals_one_run(seed_raw: Path, tmp_path: Path, pg_url: str,
                                                      sqlite_reference: tuple[Any, ...]) -> None:
    expected = sqlite_reference[0]
    raw = tmp_path / "raw2"
    raw.mkdir()
    for name in ["004", "002", "000", "003", "001"]:  # late, earlier-published articles rewrite records
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
        run_ingest(raw, tmp_path / "pg")
    assert stable(list(read_records(tmp_path / "pg"))) == expected


_RUN_SCRIPT = "import sys; from pipeline.ingest import run_ingest; run_ingest(sys.argv[1], sys.argv[2])"


def test_a_reader_keeps_its_snapshot_while_a_run_commits(seed_raw: Path, tmp_path: Path, pg_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_pg, "READ_SLICE_ROWS", 1)  # the rest of the rows are fetched after the commit
    raw = tmp_path / "raw2"
    raw.mkdir()
    for name in ("000", "001", "003"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    reader = read_records(processed)
    first = next(reader)  # the reader's snapshot is taken
    for name in ("002", "004"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    assert run_ingest(raw, processed).records_written == 2  # not blocked by the open reader
    assert len([first, *reader]) == 3  # nor does the reader see the run that committed meanwhile
    assert len(list(read_records(processed))) == 5


# Inside the run's transaction with its parts written, and after its commit before the renames.
@pytest.mark.parametrize("crash_at", ["parts-written", "committed"])
def test_sigkill_at_any_point_then_rerun_gives_the_same_records(seed_raw: Path, tmp_path: Path, pg_url: str,
                                                                sqlite_reference: tuple[Any, ...],
                                                                crash_at: str) -> None:
    expected = sqlite_reference[0]
    raw = tmp_path / "raw2"
    raw.mkdir()
    for name in ("000", "003"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    for name in ("001", "002", "004"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    proc = subprocess.run([sys.executable, "-c", _RUN_SCRIPT, str(raw), str(processed)], cwd=ROOT,
                          env={**os.environ, CRASH_ENV: crash_at}, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    # The killed run's session is gone: its transaction rolled back, its advisory lock released.
    run_ingest(raw, processed)
    assert stable(list(read_records(processed))) == expected
    assert stable(part_records(processed)) == expected


def test_the_database_lock_excludes_a_run_from_another_working_copy(seed_raw: Path, tmp_path: Path,
                                                                    pg_url: str) -> None:
    # Two processed dirs (two hosts' working copies) share one database: the lock file of each
    # is its own, the advisory lock on the database is the one they share.
    with writer_lock(tmp_path / "host_a"):
        with pytest.raises(ProcessedDirLocked, match="another newsdedup run is writing to the state"):
            run_ingest(seed_raw, tmp_path / "host_b")
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        with writer_lock(tmp_path / "host_a"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        threading.Timer(0.5, release.set).start()
        summary = run_ingest(seed_raw, tmp_path / "host_b", IngestSettings(lock_wait_seconds=30))
    finally:
        release.set()
        holder.join()
    assert summary.records_written == 5


def test_since_tombstones_on_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    from tests.test_records import test_since_yields_a_tombstone_for_an_item_gone_from_a_changed_file as scenario

    scenario(tmp_path, monkeypatch, capsys)  # the same runs and reads, the state in PostgreSQL
    assert not (tmp_path / "processed" / "state.sqlite").exists()


def _record_lines(processed: Path) -> list[str]:
    from pipeline.records import iter_record_lines

    return list(iter_record_lines(processed))


def test_migrate_moves_a_sqlite_state_and_runs_go_on_from_it(seed_raw: Path, tmp_path: Path, pg_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_URL_ENV)
    raw = tmp_path / "raw2"
    raw.mkdir()
    for name in ("000", "002", "003"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    before = _record_lines(processed)
    sqlite_url = f"sqlite:///{processed / 'state.sqlite'}"
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "migrate", str(processed), "--from", sqlite_url,
                           "--to", pg_url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 records read back identical" in proc.stdout
    again = subprocess.run([sys.executable, "-m", "flows.cli", "migrate", str(processed), "--from", sqlite_url,
                            "--to", pg_url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds a newsdedup state" in again.stderr
    sqlite_copy = tmp_path / "processed-sqlite"
    shutil.copytree(processed, sqlite_copy)  # the SQLite state, left as it was, and its parts
    monkeypatch.setenv(STATE_URL_ENV, pg_url)
    assert _record_lines(processed) == before  # the same lines, byte for byte
    assert run_ingest(raw, processed).files_unchanged == 3  # the files table moved too
    # The runs that follow continue the migrated state exactly as they would have the SQLite one.
    for name in ("001", "004"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    run_ingest(raw, processed)
    on_postgres = stable([json.loads(line) for line in _record_lines(processed)])
    monkeypatch.delenv(STATE_URL_ENV)
    run_ingest(raw, sqlite_copy)
    assert on_postgres == stable([json.loads(line) for line in _record_lines(sqlite_copy)])
    assert on_postgres == stable(part_records(processed))


def test_two_cli_runs_from_two_working_copies_never_interleave(seed_raw: Path, tmp_path: Path, pg_url: str,
                                                               sqlite_reference: tuple[Any, ...]) -> None:
    # Two users' checkouts (each its own working dir and Prefect home) start `newsdedup run` at
    # the same moment against one PostgreSQL state and one shared processed dir: one run
    # commits, the other waits for the lock and then finds nothing new.
    processed = tmp_path / "shared-processed"
    copies = [tmp_path / "copy_a", tmp_path / "copy_b"]
    procs = []
    for copy in copies:
        copy.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--raw-dir", str(seed_raw), "--processed-dir", str(processed),
             "--wait", "240"], cwd=copy, env={k: v for k, v in os.environ.items() if k != "PREFECT_HOME"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("nothing new" in out for out in outputs) == 1, outputs
    conn = state_backend.connect(processed, readonly=True)
    try:
        runs = conn.execute("SELECT seq, started_at, finished_at FROM runs ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert len(runs) == 1  # the waiting run committed nothing over the first one
    assert stable(list(read_records(processed))) == sqlite_reference[0]
