"""pipeline.state_backend: the state URL, and a SQLite state kept outside the processed dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import state_backend
from pipeline.ingest import run_ingest
from pipeline.records import read_records
from pipeline.state_backend import STATE_URL_ENV, StateURLError, parse_state_url, state_url_for
from tests.conftest import ROOT


def test_urls_name_the_backend_and_the_default_is_the_file_under_processed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_URL_ENV, raising=False)
    assert parse_state_url("sqlite:///data/state.db").path == Path("data/state.db")
    assert parse_state_url("sqlite:////srv/state.db").path == Path("/srv/state.db")
    pg = parse_state_url("postgresql://news:secret@db.example:5433/newsdedup")
    assert pg.scheme == "postgresql" and "secret" not in pg.display()
    assert state_url_for(tmp_path).path == tmp_path / "state.sqlite"
    for bad in ("mysql://x/y", "sqlite:///", "/plain/path"):
        with pytest.raises(StateURLError):
            parse_state_url(bad)


def test_a_sqlite_state_elsewhere_is_written_and_read_through_the_url(
        seed_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "db" / "team.sqlite"
    elsewhere.parent.mkdir()
    monkeypatch.setenv(STATE_URL_ENV, f"sqlite:///{elsewhere}")
    processed = tmp_path / "processed"
    assert run_ingest(seed_raw, processed).records_written == 5
    assert elsewhere.exists() and not (processed / "state.sqlite").exists()
    assert len(list(read_records(processed))) == 5
    state_backend.set_state_url(f"sqlite:///{tmp_path / 'other.sqlite'}")  # the CLI option beats the environment
    try:
        assert state_url_for(processed).path == tmp_path / "other.sqlite"
    finally:
        state_backend.set_state_url(None)


def test_a_bad_state_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "status", str(tmp_path), "--state-url", "mysql://x/y"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "postgresql://" in proc.stderr
