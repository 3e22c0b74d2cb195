"""The consumer's import (``newsdedup``) and what git keeps of raw/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.ingest import run_ingest
from pipeline.records import read_records
from tests.conftest import ROOT, make_raw

S000, S002 = "000_b734071999a0cdc9.txt", "002_fd68ee673bc3184e.txt"

CONSUMER = """
import json, sys
order = sys.argv[1]
if order == "theirs-first":
    import pipeline
from newsdedup import export_records, last_run_id, read_passages, read_records
import pipeline.records
print(json.dumps({
    "theirs": pipeline.NAME, "their_records": pipeline.records.WHAT,
    "ids": [r["id"] for r in read_records("processed")],
    "passages": len(list(read_passages("processed"))),
    "exported": export_records("processed", "jsonl", "out.jsonl"),
    "cursor": last_run_id("processed"),
}))
"""


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A consumer's project with a ``pipeline`` package of its own, and a processed dir."""
    project = tmp_path_factory.mktemp("consumer")
    (project / "pipeline").mkdir()
    (project / "pipeline" / "__init__.py").write_text('NAME = "theirs"\n', encoding="utf-8")
    (project / "pipeline" / "records.py").write_text('WHAT = "their records"\n', encoding="utf-8")
    run_ingest(make_raw(project, S000, S002), project / "processed", run_id="run-1")
    return project


@pytest.mark.parametrize("order", ["theirs-first", "ours-first"])
def test_newsdedup_imports_beside_a_consumers_own_pipeline_package(consumer: Path, order: str) -> None:
    done = subprocess.run([sys.executable, "-c", CONSUMER, order], cwd=consumer, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["theirs"] == "theirs" and seen["their_records"] == "their records"
    expected = [r["id"] for r in read_records(consumer / "processed")]
    assert seen["ids"] == expected and seen["exported"] == len(expected) == 2
    assert seen["passages"] >= 1 and seen["cursor"] == "run-1"


def test_newsdedup_is_the_pipeline_read_side_in_a_plain_process() -> None:
    import newsdedup
    import pipeline.catalog
    import pipeline.export
    import pipeline.records

    assert newsdedup.read_records is pipeline.records.read_records
    assert newsdedup.read_passages is pipeline.catalog.read_passages
    assert newsdedup.export_records is pipeline.export.export_records


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_gitignore_keeps_the_sample_corpus_and_ignores_what_a_user_drops_in_raw() -> None:
    samples = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "raw").glob("0*.txt"))
    assert len(samples) == 5
    user_files = ["raw/feed.jsonl", "raw/2024/03/story.html", "raw/notes.md", "raw/005_mine.txt"]

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", path]).returncode == 0

    assert [p for p in samples if ignored(p)] == []
    assert [p for p in user_files if not ignored(p)] == []
