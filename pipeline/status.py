"""What a processed/ directory holds, read from its state without blocking a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.ingest import pending_paths
from pipeline.read import scan_raw
from pipeline.state import bound_raw_dir, connect, read_meta

# `status` text lists this many files not processed yet; --json lists them all.
PENDING_SHOWN = 50


def collect_status(processed_dir: Path, raw_dir: Path | None = None) -> dict[str, Any]:
    conn = connect(processed_dir, readonly=True)
    try:
        conn.execute("BEGIN")
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        status: dict[str, Any] = {
            "processed_dir": str(processed_dir),
            "raw_dir": bound_raw_dir(read_meta(conn)),  # the one its records' source.path is relative to
            "files_processed": one("SELECT COUNT(*) FROM files WHERE status = 'ok'"),
            "files_quarantined": one("SELECT COUNT(*) FROM files WHERE status = 'quarantined'"),
            "quarantine_entries": one("SELECT COUNT(*) FROM quarantine"),
            "records": one("SELECT COUNT(*) FROM articles"),
            "units": one("SELECT COUNT(*) FROM units"),
            "units_repeated": one("SELECT COUNT(*) FROM units WHERE match_uid IS NOT NULL"),
            "repeats": one("SELECT COUNT(*) FROM (SELECT DISTINCT record_id, para FROM spans WHERE whole = 1) "
                           "AS whole_paragraphs"),
            "spans": one("SELECT COUNT(*) FROM spans WHERE whole = 0"),
            "duplicates": one("SELECT COUNT(*) FROM articles WHERE json_extract(record, '$.duplicate_of') "
                              "IS NOT NULL"),
            "passages": one("SELECT COUNT(DISTINCT passage) FROM spans"),
            "runs": one("SELECT COUNT(*) FROM runs"),
        }
        last = conn.execute("SELECT * FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
        if last is not None:
            summary = json.loads(last["summary"] or "{}")
            status["last_run"] = {
                "run_id": last["run_id"], "seq": last["seq"], "started_at": last["started_at"],
                "finished_at": last["finished_at"], "outcome": last["outcome"],
                "records_written": summary.get("records_written"),
                "records_rewritten": summary.get("records_rewritten"),
                "repeats_flagged": summary.get("repeats_flagged"),
            }
        else:
            status["last_run"] = None
        conn.execute("COMMIT")
    finally:
        conn.close()
    if raw_dir is not None:
        entries, _ = scan_raw(raw_dir)
        status["raw_files"] = len(entries)
        status["raw_dir"] = str(raw_dir)
        status["not_processed"] = [{"path": path, "why": why}
                                   for path, why in pending_paths(raw_dir, processed_dir) or []]
    return status


def format_status(status: dict[str, Any]) -> str:
    lines = [
        f"processed dir:      {status['processed_dir']}",
        f"raw dir:            {status['raw_dir'] or 'not recorded yet (the next run records it)'}",
        f"files processed:    {status['files_processed']}",
        f"files quarantined:  {status['files_quarantined']} ({status['quarantine_entries']} quarantine entries)",
        f"records:            {status['records']}",
        f"sentences:          {status['units']} ({status['units_repeated']} repeat earlier text)",
        f"repeats flagged:    {status['repeats']} paragraphs and {status['spans']} spans inside paragraphs, "
        f"copies of {status['passages']} repeated passages; {status['duplicates']} whole copies",
        f"runs:               {status['runs']}",
    ]
    last = status.get("last_run")
    if last:
        lines.append(f"last run:           #{last['seq']} {last['run_id']} {last['outcome']} at {last['finished_at']} "
                     f"({last['records_written']} written, {last['records_rewritten']} rewritten, "
                     f"{last['repeats_flagged']} repeats)")
    else:
        lines.append("last run:           none")
    if "raw_files" in status:
        pending = status["not_processed"]
        lines.append(f"raw files now:      {status['raw_files']} in {status['raw_dir']}, "
                     f"{len(pending)} not processed yet" + (":" if pending else ""))
        for item in pending[:PENDING_SHOWN]:
            known = item["why"] in ("new", "changed")  # else the reason the next run will quarantine it
            lines.append(f"  {item['why']:<8} {item['path']}" if known else f"  refused  {item['path']}: {item['why']}")
        if len(pending) > PENDING_SHOWN:
            lines.append(f"  ... and {len(pending) - PENDING_SHOWN} more (--json lists them all)")
    return "\n".join(lines)
