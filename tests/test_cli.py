"""The `newsdedup` command as a user runs it: a real process, the real flow (embedded Prefect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.state import writer_lock
from tests.conftest import ROOT

NEWSDEDUP = [sys.executable, "-m", "flows.cli"]


def newsdedup(*args: str, env_home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PREFECT_HOME=str(env_home))
    return subprocess.run([*NEWSDEDUP, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_run_reads_a_backlog_in_bounded_runs_then_records_and_status(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    home = tmp_path / "prefect-home"
    done = newsdedup("run", "--raw-dir", str(seed_raw), "--processed-dir", str(processed),
                     "--max-run-bytes", "6000", env_home=home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "files left: running again" in done.stdout
    assert done.stdout.count("# newsdedup ingest run") >= 3

    listed = newsdedup("records", str(processed), env_home=home)
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(records) == 5
    assert sum(r["repeats"] for r in records) == 6

    status = newsdedup("status", str(processed), "--json", env_home=home)
    assert json.loads(status.stdout)["records"] == 5

    with writer_lock(processed):
        refused = newsdedup("run", "--raw-dir", str(seed_raw), "--processed-dir", str(processed), env_home=home)
    assert refused.returncode == 3
    assert "another newsdedup run is writing" in refused.stderr


def test_run_with_a_missing_raw_dir_fails_fast_and_clearly(tmp_path: Path) -> None:
    done = newsdedup("run", "--raw-dir", str(tmp_path / "typo"), "--processed-dir", str(tmp_path / "p"),
                     env_home=tmp_path / "home")
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert not (tmp_path / "home").exists()  # Prefect never started


def test_run_with_nothing_new_returns_at_once(seed_raw: Path, tmp_path: Path) -> None:
    from pipeline.ingest import pending_files, run_ingest

    processed = tmp_path / "processed"
    assert pending_files(seed_raw, processed) is None  # no state yet: a run is needed
    (seed_raw / "notes.docx").write_bytes(b"PK")  # reported once, then known
    run_ingest(seed_raw, processed)
    assert pending_files(seed_raw, processed) == 0
    done = newsdedup("run", "--raw-dir", str(seed_raw), "--processed-dir", str(processed), env_home=tmp_path / "h")
    assert done.returncode == 0 and "nothing new" in done.stdout
    assert not (tmp_path / "h").exists()  # Prefect never started
    (seed_raw / "new.txt").write_text("A new article arrives with a few words of its own to say.")
    assert pending_files(seed_raw, processed) == 1
