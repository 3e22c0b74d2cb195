"""The ingest flow end to end in Prefect's embedded mode (one temporary API for the session).

The library is tested without Prefect in test_ingest.py; here: the flow's tasks, its report
and progress artifacts, processed/last_run.md, and its failure policy (a bad file or a
transient read error never fails the run).
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pipeline.ingest as library

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _fast_flows(prefect_harness: None) -> Iterator[None]:
    """No heartbeat thread: a flow call costs 0.2 s instead of 1.1 s."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def _run(raw: Path, processed: Path, **params: Any) -> tuple[Any, dict[str, Any]]:
    from flows.ingest import ingest

    state = ingest(raw_dir=str(raw), processed_dir=str(processed), return_state=True, **params)
    assert state.is_completed(), state.message
    return state, state.result()


def _artifacts(flow_run_id: Any) -> dict[str, dict[str, Any]]:
    """The run's artifacts by key, read over plain HTTP: with the FastAPI pinned here the
    server refused the nulls the Prefect 3.8 client sent before fastapi was pinned below 0.151)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", timeout=30, json={
        "artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 50, "offset": 0, "sort": "CREATED_DESC"})
    response.raise_for_status()
    return {a["key"]: a for a in response.json()}


def test_flow_processes_seeds_and_reports(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    state, result = _run(seed_raw, processed)
    seeds = len(list(seed_raw.iterdir()))
    assert result["outcome"] == "completed"
    assert result["files_seen"] == result["files_new"] == seeds
    assert result["records_written"] >= seeds
    assert result["files_quarantined"] == 0
    assert set(result["timings"]) >= {"plan", "prepare", "commit", "decide", "write", "index", "parts"}

    # The same report, readable without Prefect.
    report = (processed / "last_run.md").read_text(encoding="utf-8")
    assert f"(#{result['run_seq']}): completed" in report
    assert json.loads((processed / "last_run.json").read_text())["records_written"] == result["records_written"]

    artifacts = _artifacts(state.state_details.flow_run_id)
    assert artifacts["ingest-report"]["type"] == "markdown"
    assert artifacts["ingest-report"]["data"] == report
    assert artifacts["ingest-progress"]["type"] == "progress"
    assert float(artifacts["ingest-progress"]["data"]) == 100.0

    # Every record the real flow wrote follows the contract (schema/record.schema.json).
    from tests.test_records import check_processed

    assert len(check_processed(processed)) == result["records_written"]

    # A second run finds nothing new and writes nothing.
    _, again = _run(seed_raw, processed)
    assert again["records_written"] == 0
    assert again["files_unchanged"] == seeds
    assert again["run_seq"] == result["run_seq"] + 1


def test_bad_files_never_fail_the_run(seed_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (seed_raw / "zz_binary.txt").write_bytes(bytes(range(256)) * 40)
    boom = sorted(p.name for p in seed_raw.iterdir())[0]
    real_parse = library.parse

    def parse(entry: Any, data: bytes) -> Any:
        if entry.path == boom:
            raise RuntimeError("parser bug")
        return real_parse(entry, data)

    monkeypatch.setattr(library, "parse", parse)
    _, result = _run(seed_raw, tmp_path / "processed")
    reasons = {q["path"]: q["reason"] for q in result["quarantined"]}
    assert reasons[boom] == "failed to process: RuntimeError: parser bug"
    assert "zz_binary.txt" in reasons
    assert result["files_quarantined"] == 2
    assert result["records_written"] >= len(list(seed_raw.iterdir())) - 2  # the others are all written


def test_transient_read_errors_are_retried_then_reported(seed_raw: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    names = sorted(p.name for p in seed_raw.iterdir())
    flaky, dead = names[0], names[1]
    calls = {flaky: 0, dead: 0}
    real_read = library.read_bytes

    def read_bytes(entry: Any, max_bytes: int) -> bytes:
        if entry.path in calls:
            calls[entry.path] += 1
            if entry.path == dead or calls[entry.path] == 1:
                raise OSError(errno.EIO, "Input/output error")
        return real_read(entry, max_bytes)

    monkeypatch.setattr(library, "read_bytes", read_bytes)
    _, result = _run(seed_raw, tmp_path / "processed", io_retries=2, io_retry_delay_seconds=0.1)
    assert calls == {flaky: 2, dead: 3}  # read once, then retried at most io_retries times
    assert [q["path"] for q in result["quarantined"]] == [dead]
    assert result["quarantined"][0]["reason"] == "unreadable: Input/output error"
    assert result["files_new"] == len(names)
    assert result["records_written"] >= len(names) - 1


def test_detection_settings_are_flow_parameters(seed_raw: Path, tmp_path: Path) -> None:
    """`trigger -p paragraph_share=0.5` reaches the decisions; a bad value fails the run in one line."""
    from flows.ingest import ingest

    processed = tmp_path / "processed"
    _, default = _run(seed_raw, processed)
    _, wider = _run(seed_raw, processed, paragraph_share=0.5)  # nothing new: the stored articles are re-decided
    assert (default["repeats_flagged"], wider["records_rewritten"], wider["replayed_articles"]) == (6, 1, 5)
    state = ingest(raw_dir=str(seed_raw), processed_dir=str(processed), return_state=True, shingle_size=4)
    assert state.is_failed() and "newsdedup reindex" in state.message


def test_a_backlog_run_defers_the_html_report_to_the_last_run(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    _, first = _run(seed_raw, processed, max_run_bytes=6000, defer_html_report=True)
    assert first["files_deferred"] > 0
    assert not (processed / "report.html").exists()  # the next run writes it
    while True:
        _, result = _run(seed_raw, processed, max_run_bytes=6000, defer_html_report=True)
        if not result["files_deferred"]:
            break
    assert (processed / "report.html").is_file()
    # Without deferring, a run that leaves files for the next still writes it (a scheduled run).
    other = tmp_path / "other"
    _, first = _run(seed_raw, other, max_run_bytes=6000)
    assert first["files_deferred"] > 0 and (other / "report.html").is_file()


def test_a_backlog_prepared_by_worker_processes_gives_the_records_of_one_process(seed_raw: Path,
                                                                                 tmp_path: Path) -> None:
    """With ``processes``, the flow's batches are prepared by a worker process and this one;
    with prefetch_next_run the pool stays up and prepares the next run's batches while a run
    commits (the next run takes them), the last run stops it, and the records are those of
    runs prepared in this process alone."""
    import pipeline.pool
    from pipeline.pool import batch_key

    def stable(processed: Path) -> list[dict[str, Any]]:
        from pipeline.records import read_records

        return sorted(({k: v for k, v in r.items() if k != "pipeline"} for r in read_records(processed)),
                      key=lambda r: r["id"])

    alone = tmp_path / "alone"
    while _run(seed_raw, alone, processes=0, batch_size=1, max_run_bytes=6000)[1]["files_deferred"]:
        pass
    assert not pipeline.pool.has_standing_pool()
    pooled = tmp_path / "pooled"
    prefetched_runs = 0
    while True:
        _, result = _run(seed_raw, pooled, processes=1, batch_size=1, max_run_bytes=6000, prefetch_next_run=True)
        if not result["files_deferred"]:
            break
        pool = pipeline.pool._standing["pool"]
        assert pool.workers == 1 and not pool.broken
        # What is prefetched is exactly the next run's batches (one file each).
        settings = library.IngestSettings(batch_size=1, max_run_bytes=6000)
        upcoming = library.preview_run(seed_raw, pooled, 6000)
        assert set(pool._prefetched) == {batch_key([p], settings) for p in upcoming}
        prefetched_runs += 1
    assert prefetched_runs >= 2
    assert not pipeline.pool.has_standing_pool()  # the last run stopped it
    assert stable(pooled) == stable(alone)


def test_a_run_that_fails_after_prefetching_leaves_no_worker_processes(seed_raw: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool kept for a backlog's next run goes with a run that fails: nothing would take
    its batches (a long-lived `newsdedup serve` process would keep it for ever)."""
    import pipeline.pool
    from flows.ingest import ingest

    def broken(self: Any, plan: Any, prepared: Any) -> Any:
        raise RuntimeError("commit failed here")

    monkeypatch.setattr(library.IngestRun, "commit", broken)
    state = ingest(raw_dir=str(seed_raw), processed_dir=str(tmp_path / "processed"), processes=1, batch_size=1,
                   max_run_bytes=6000, prefetch_next_run=True, return_state=True)
    assert state.is_failed()
    assert not pipeline.pool.has_standing_pool()
