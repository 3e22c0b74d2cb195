"""The ingest flow: raw/ -> processed/, as Prefect tasks at batch granularity.

Each task wraps one library step (``pipeline.ingest.IngestRun``); a task works on a batch
of files, never on a paragraph, because every task run costs Prefect milliseconds and an
API write. Run once by hand with ``python -m flows.ingest`` or ``newsdedup run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from pipeline.ingest import (
    IngestRun,
    IngestSettings,
    Plan,
    PlannedFile,
    PreparedBatch,
    RunSummary,
    batches,
    summary_markdown,
)
from pipeline.read import DEFAULT_MAX_BYTES

# Results stay in memory: nothing here is worth caching or persisting between runs, and
# hashing large inputs for a cache key costs more than the task itself.
_TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="plan", **_TASK_OPTIONS)
def plan_task(run: IngestRun) -> Plan:
    return run.plan()


@task(name="prepare-batch", retries=2, retry_delay_seconds=2, **_TASK_OPTIONS)
def prepare_task(run: IngestRun, group: list[PlannedFile]) -> PreparedBatch:
    return run.prepare(group)


@task(name="commit", retries=2, retry_delay_seconds=2, **_TASK_OPTIONS)
def commit_task(run: IngestRun, plan: Plan, prepared: list[PreparedBatch]) -> RunSummary:
    return run.commit(plan, prepared)


@flow(name="ingest", log_prints=False)
def ingest(
    raw_dir: str = "raw",
    processed_dir: str = "processed",
    batch_size: int = 200,
    max_file_bytes: int = DEFAULT_MAX_BYTES,
    lock_wait_seconds: float = 0.0,
) -> dict[str, Any]:
    """Read new and changed files under raw_dir, tag repeats, write records to processed_dir."""
    logger = get_run_logger()
    settings = IngestSettings(max_file_bytes=max_file_bytes, batch_size=batch_size,
                              lock_wait_seconds=lock_wait_seconds)
    run_id = str(flow_run.id) if flow_run.id else None
    with IngestRun(Path(raw_dir), Path(processed_dir), settings, run_id) as run:
        plan = plan_task(run)
        logger.info("plan: %d files to read, %d unchanged, %d scan problems",
                    len(plan.to_read), plan.unchanged, len(plan.problems))
        groups = list(batches(plan.to_read, settings.batch_size))
        prepared = []
        for number, group in enumerate(groups, 1):
            prepared.append(prepare_task(run, group))
            logger.info("prepare: batch %d/%d (%d files)", number, len(groups), len(group))
        summary = commit_task(run, plan, prepared)
        logger.info("commit: %d records written, %d rewritten, %d repeats flagged, %d quarantined",
                    summary.records_written, summary.records_rewritten, summary.repeats_flagged,
                    summary.files_quarantined + summary.items_quarantined)
    create_markdown_artifact(summary_markdown(summary), key="ingest-report",
                             description=f"newsdedup ingest run #{summary.run_seq}")
    return summary.as_dict()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the newsdedup ingest flow once.")
    parser.add_argument("--raw-dir", default="raw")
    parser.add_argument("--processed-dir", default="processed")
    args = parser.parse_args(argv)
    result = ingest(raw_dir=args.raw_dir, processed_dir=args.processed_dir)
    print(f"{result['records_written']} records written, {result['repeats_flagged']} repeats flagged")


if __name__ == "__main__":
    main()
