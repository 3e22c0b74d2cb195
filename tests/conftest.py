"""Shared fixtures: a project-local Prefect home, the seed corpus, temporary dirs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "raw"
SEED_FILES = sorted(p.name for p in SEEDS.glob("*.txt"))

# Prefect state for the test session lives in the project, never in ~/.prefect.
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect" / "tests"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Prefect creates its home's last directory only: missing parents make its temporary server
# fail to open its database, and Prefect 3.8 then restarts it on new ports for ever.
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def make_raw(tmp_path: Path, *names: str) -> Path:
    """tmp_path/raw holding copies of the named sample articles."""
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    for name in names:
        shutil.copy2(SEEDS / name, raw / name)
    return raw


def write_background_reports(raw: Path, count: int) -> None:
    """``count`` short JSON reports (extra-00.json, ...), each with news of its own and then the
    same background sentence, a day apart from 2020-11-01."""
    for i in range(count):
        (raw / f"extra-{i:02d}.json").write_text(json.dumps({
            "text": f"Report {i} opens with news of its own, in words of its own, number {i}.\n\n"
                    "The conflict between the two South Caucasus countries began in 1988 when Armenia made "
                    "territorial claims against Azerbaijan.", "published": f"2020-11-{i + 1:02d}"}))


@pytest.fixture
def seed_raw(tmp_path: Path) -> Path:
    """A temporary raw/ holding a copy of the five sample articles."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in SEED_FILES:
        shutil.copy2(SEEDS / name, raw / name)
    return raw


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole session (embedded, SQLite)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
