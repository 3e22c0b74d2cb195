"""Stage 5: records, their files under processed/, and the consumer's read interface.

The state database holds the current version of every record. For tools that read files
(DuckDB, pandas, jq) the same records are written as JSON Lines parts under
``processed/records/``: every current record is in exactly one part, a run writes one new
part with the records it wrote or rewrote, and older parts that held a rewritten record
are rewritten without it. Parts are written to a hidden temporary name and renamed into
place only after the database transaction commits (see ``ingest.commit``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.state import StateError, connect

if TYPE_CHECKING:  # annotations only: readers (`newsdedup records`) start without the dedup stack
    from pipeline.clean import Paragraph
    from pipeline.metadata import Metadata
    from pipeline.repeats import ArticleDecision

RECORD_SCHEMA_VERSION = 1
RECORDS_DIR = "records"
TMP_PREFIX = ".tmp-"
# A repeat's "span" is [start, end) in code points of this join of all paragraphs' texts.
FULL_TEXT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class RunContext:
    run_id: str
    run_seq: int
    processed_at: str


def build_record(
    *,
    record_id: str,
    path: str,
    item: int | None,
    sha256: str,
    fmt: str,
    meta: Metadata,
    paragraphs: list[Paragraph],
    decision: ArticleDecision | None,
    extra: dict[str, Any],
    run: RunContext,
) -> dict[str, Any]:
    """The record as consumers see it (see processed/README.md for the contract)."""
    out_paragraphs = []
    body: list[str] = []
    offset = 0  # where the paragraph starts in FULL_TEXT_SEPARATOR.join(every paragraph's text)
    for index, para in enumerate(paragraphs):
        repeat = decision.repeat_of(index) if decision is not None else None
        spans = decision.spans(index) if decision is not None else []
        repeat_of = None
        if repeat is not None:
            repeat_of = {
                "record": repeat.record,
                "paragraph": repeat.paragraph,
                "passage": repeat.passage,
                "similarity": repeat.similarity,
                "estimated_similarity": repeat.estimated,
                "span": [offset, offset + len(para.text)],
            }
        out_paragraphs.append({
            "index": index, "kind": para.kind, "text": para.text, "repeat_of": repeat_of,
            "repeated_spans": [{"start": sp.start, "end": sp.end, "passage": sp.passage, "record": sp.record,
                                "paragraph": sp.paragraph, "similarity": sp.similarity} for sp in spans],
        })
        if para.kind == "body" and repeat_of is None:
            kept = without_spans(para.text, [(sp.start, sp.end) for sp in spans])
            if kept:
                body.append(kept)
        offset += len(para.text) + len(FULL_TEXT_SEPARATOR)
    source: dict[str, Any] = {"path": path, "sha256": sha256, "format": fmt}
    if item is not None:
        source["item"] = item
    duplicate = decision.duplicate_of if decision is not None else None
    record: dict[str, Any] = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "id": record_id,
        "source": source,
        **meta.as_dict(),
        "paragraphs": out_paragraphs,
        "text": "\n\n".join(body),
        "repeats": sum(1 for p in out_paragraphs if p["repeat_of"] is not None),
        "duplicate_of": None if duplicate is None else {"record": duplicate[0], "share": duplicate[1]},
        "pipeline": {"version": __version__, "run_id": run.run_id, "processed_at": run.processed_at},
    }
    if extra:
        record["extra"] = extra
    return record


def build_tombstone(record: dict[str, Any], run: RunContext) -> dict[str, Any]:
    """What ``since`` readers get for a record that left the current records: its id, ``deleted``,
    the source of its last version, and the run that removed it (schema/tombstone.schema.json)."""
    return {
        "schema_version": RECORD_SCHEMA_VERSION, "id": record["id"], "deleted": True, "source": record["source"],
        "pipeline": {"version": __version__, "run_id": run.run_id, "processed_at": run.processed_at},
    }


def without_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """A paragraph's text with its repeated spans cut out; the pieces left joined by a space."""
    if not spans:
        return text
    pieces = []
    position = 0
    for start, end in sorted(spans):
        pieces.append(text[position:start].strip())
        position = max(position, end)
    pieces.append(text[position:].strip())
    return " ".join(p for p in pieces if p)


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False)


def part_name(run_seq: int) -> str:
    return f"part-{run_seq:08d}.jsonl"


def write_part_tmp(records_dir: Path, name: str, lines: list[str]) -> Path:
    """Write a part under a hidden temporary name, flushed to disk; renamed later."""
    records_dir.mkdir(parents=True, exist_ok=True)
    tmp = records_dir / f"{TMP_PREFIX}{name}"
    with open(tmp, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def finish_parts(conn: sqlite3.Connection, processed_dir: Path) -> None:
    """Move committed parts into place; drop leftovers of runs that never committed.

    Idempotent: run after every commit and at the start of every run, so a crash between
    the commit and the renames is repaired by the next run.
    """
    records_dir = processed_dir / RECORDS_DIR
    if not records_dir.exists():
        return
    # Newest part first: a file reader globbing meanwhile may see a rewritten record twice
    # (old and new part), never zero times.
    pending = {row[0]: row[1] for row in conn.execute(
        "SELECT name, records FROM parts WHERE pending = 1 ORDER BY name DESC")}
    known = {row[0] for row in conn.execute("SELECT name FROM parts")}
    renamed = []
    for name, count in pending.items():
        tmp = records_dir / f"{TMP_PREFIX}{name}"
        final = records_dir / name
        if count == 0:
            final.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
            conn.execute("DELETE FROM outputs WHERE name = ?", (f"{RECORDS_DIR}/{name}",))
        elif tmp.exists():
            os.replace(tmp, final)
            renamed.append(f"{RECORDS_DIR}/{name}")
    _fsync_dir(records_dir)
    # Only parts moved into place here are noted: one whose temporary file had gone is left
    # for the check (pipeline/check.py) to read and compare.
    note_outputs(conn, processed_dir, renamed)
    conn.execute("DELETE FROM parts WHERE pending = 1 AND records = 0")
    conn.execute("UPDATE parts SET pending = 0 WHERE pending = 1")
    for entry in records_dir.iterdir():
        name = entry.name
        if entry.is_dir() and not entry.is_symlink():
            continue  # not ours to remove (`newsdedup check` lists it)
        if name.startswith(TMP_PREFIX) or (name.endswith(".jsonl") and name not in known):
            entry.unlink(missing_ok=True)  # from a run that died before committing


def note_outputs(conn: sqlite3.Connection, processed_dir: Path, names: list[str], run_seq: int | None = None) -> None:
    """Record size and mtime of files just written under processed/ (names relative to it),
    for the cheap check at the start of the next run."""
    for name in names:
        st = os.lstat(processed_dir / name)
        conn.execute("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?)", (name, st.st_size, st.st_mtime_ns, run_seq))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small file via a temporary file and a rename: readers see the old or the new."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write a small JSON/JSONL file via a temporary file and a rename."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    with open(tmp, "w", encoding="utf-8") as fh:
        if isinstance(value, list):
            for item in value:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
        else:
            json.dump(value, fh, ensure_ascii=False, indent=2)
            fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --- the read side: what consumers call (contract in processed/README.md) ------------------

# Top-level fields of a record in the order they are written; schema/record.schema.json
# describes each (tests keep the two in step). "extra" is present only when the source had some.
RECORD_FIELDS = (
    "schema_version", "id", "source", "title", "published", "author", "outlet", "section", "dateline", "url",
    "language", "paragraphs", "text", "repeats", "duplicate_of", "pipeline", "extra",
)


MIN_RUN_ID_PREFIX = 6  # shorter, and a prefix would match too many runs (or read like a year)


def _since_clause(conn: sqlite3.Connection, since: str) -> tuple[str, tuple[Any, ...]]:
    """``since`` as a WHERE clause on ``articles`` (and ``deletions``): a run id, or an
    unambiguous prefix of one, selects what later runs wrote, a timestamp what was stamped
    (``pipeline.processed_at``) after it."""
    row = conn.execute("SELECT MAX(seq) FROM runs WHERE run_id = ?", (since,)).fetchone()
    if row is not None and row[0] is not None:
        return "run_seq > ?", (int(row[0]),)
    if len(since) >= MIN_RUN_ID_PREFIX:
        matches = conn.execute("SELECT run_id, MAX(seq) FROM runs WHERE substr(run_id, 1, ?) = ? GROUP BY run_id "
                               "ORDER BY MAX(seq)", (len(since), since)).fetchall()
        if len(matches) == 1:
            return "run_seq > ?", (int(matches[0][1]),)
        if len(matches) > 1:
            shown = ", ".join(str(m[0]) for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise StateError(f"--since {since!r} is the start of {len(matches)} run ids ({shown}); give more of it")
    return "written_at > ?", (_as_utc_text(since),)


def _as_utc_text(value: str) -> str:
    """An ISO date or datetime as the UTC text records are stamped with ("...Z", whole seconds).
    A datetime without an offset is taken as UTC; a date alone as its midnight UTC."""
    from datetime import datetime, timezone

    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StateError(f"--since {value!r} is neither a run id of this processed dir (or the start of one) "
                         "nor an ISO timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_fields(fields: list[str] | tuple[str, ...] | None) -> None:
    unknown = [f for f in fields or () if f not in RECORD_FIELDS]
    if unknown:
        raise ValueError(f"unknown record field(s) {', '.join(unknown)}; a record has {', '.join(RECORD_FIELDS)}")


def project(record: dict[str, Any], fields: list[str] | tuple[str, ...] | None = None,
            strip_repeats: bool = False) -> dict[str, Any]:
    """A view of one record: only ``fields`` (a missing optional field comes out as null), and
    with ``strip_repeats`` without the flagged paragraphs (the others keep their ``index``)."""
    if strip_repeats and "paragraphs" in record:
        record = {**record, "paragraphs": [p for p in record["paragraphs"] if p.get("repeat_of") is None]}
    if fields:
        record = {name: record.get(name) for name in fields}
    return record


def iter_record_lines(processed_dir: str | Path, since: str | None = None, tombstones: bool = True) -> Iterator[str]:
    """Current records as their stored JSON text (one line each, the bytes of the part files).

    With ``since`` (and ``tombstones``), then a tombstone for each record that later runs
    removed (``{"id": ..., "deleted": true, ...}``), in the order they were removed."""
    conn = connect(Path(processed_dir), readonly=True)
    try:
        conn.execute("BEGIN")  # one snapshot for the whole iteration: a run committing meanwhile is not seen
        where, params = "", ()
        if since is not None:
            clause, params = _since_clause(conn, since)
            where = f"WHERE {clause}"
        for row in conn.execute(f"SELECT record FROM articles {where} ORDER BY sort_key, path, item", params):
            yield row[0]
        if since is not None and tombstones and _has_deletions(conn):
            for row in conn.execute(f"SELECT record FROM deletions {where} ORDER BY run_seq, path, record_id",
                                    params):
                yield row[0]
        conn.execute("COMMIT")
    finally:
        conn.close()


def _has_deletions(conn: sqlite3.Connection) -> bool:
    """A processed dir last written by a version before tombstones has no deletions table yet.
    (Asked by a query both backends know; a PostgreSQL state always has the table.)"""
    try:
        conn.execute("SELECT 1 FROM deletions LIMIT 0").fetchall()
    except sqlite3.OperationalError:
        return False
    return True


def read_records(
    processed_dir: str | Path,
    since: str | None = None,
    *,
    fields: list[str] | tuple[str, ...] | None = None,
    strip_repeats: bool = False,
) -> Iterator[dict[str, Any]]:
    """Current records (never a superseded version), oldest publication first, undated last.

    ``since``: a run id (records written or rewritten by later runs) or an ISO timestamp
    (records whose ``pipeline.processed_at`` is later); after those records, a tombstone
    ``{"id", "deleted": True, "source", "pipeline"}`` for each record those runs removed (its
    item gone from a changed file), so a consumer that upserts by id can delete it too.
    ``fields`` and ``strip_repeats`` as in ``project`` (tombstones come whole). Reads one
    consistent snapshot of the state database in a read-only connection: it never blocks a
    running flow and never sees a half-written record.
    """
    check_fields(fields)
    for line in iter_record_lines(processed_dir, since):
        record = json.loads(line)
        if (fields or strip_repeats) and not record.get("deleted"):  # a tombstone comes whole
            record = project(record, fields, strip_repeats)
        yield record


def last_run_id(processed_dir: str | Path) -> str | None:
    """The id of the last committed run, the cursor for the next ``since``.

    Take it *before* reading: records a run commits while you read then come again next
    time (harmless if you upsert by ``id``) instead of being missed.
    """
    conn = connect(Path(processed_dir), readonly=True)
    try:
        row = conn.execute("SELECT run_id FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()
