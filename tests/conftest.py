"""Shared fixtures: a project-local Prefect home, the seed corpus, temporary dirs."""

from __future__ import annotations

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


def make_raw(tmp_path: Path, *names: str) -> Path:
    """tmp_path/raw holding copies of the named sample articles."""
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    for name in names:
        shutil.copy2(SEEDS / name, raw / name)
    return raw


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
