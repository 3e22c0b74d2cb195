"""Snapshots of the current records as one file: JSON Lines, Parquet or CSV.

All three come from one consistent read (``records.iter_record_lines``) and are written to a
hidden temporary file beside ``out`` that is renamed into place when complete, so a reader
of ``out`` sees the previous snapshot or the new one, never half a file. Parquet needs
pyarrow (imported only for it). Column mapping: processed/README.md, "Export".
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pipeline.records import RECORD_FIELDS, TMP_PREFIX, iter_record_lines

FORMATS = ("jsonl", "parquet", "csv")
PARQUET_BATCH = 2000  # records per row group: memory stays flat however many records there are

# CSV: one row per record; nested values are flattened or carried as JSON text.
CSV_COLUMNS = (
    "schema_version", "id", "source_path", "source_item", "source_sha256", "source_format", "title", "published",
    "author", "outlet", "section", "dateline", "url", "language", "text", "repeats", "duplicate_of_record",
    "duplicate_of_share", "pipeline_version",
    "pipeline_run_id", "pipeline_processed_at", "paragraphs", "extra",
)


def export_records(processed_dir: str | Path, fmt: str, out: str | Path, since: str | None = None) -> int:
    """Write the current records (or those written after ``since``) to ``out``; returns how many.

    ``out`` may be ``"-"`` (standard output) for jsonl and csv.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    lines = iter_record_lines(processed_dir, since, tombstones=False)  # a snapshot holds records only
    if fmt == "parquet":
        if str(out) == "-":
            raise ValueError("parquet cannot be written to standard output; give --out PATH")
        with _atomic(Path(out), binary=True) as tmp_path:
            return _write_parquet(lines, tmp_path)
    writer = _write_jsonl if fmt == "jsonl" else _write_csv
    if str(out) == "-":
        return writer(lines, sys.stdout)
    with _atomic(Path(out)) as tmp_path, open(tmp_path, "w", encoding="utf-8", newline="") as fh:
        count = writer(lines, fh)
        fh.flush()
        os.fsync(fh.fileno())
        return count


@contextmanager
def _atomic(out: Path, binary: bool = False) -> Iterator[Path]:
    # A missing directory is the user's typo more often than a wish: say so, create nothing.
    parent = out.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ValueError(f"cannot write {out}: the directory {parent} {what} (create it first)")
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a directory; give a file name")
    tmp = out.with_name(f"{TMP_PREFIX}{out.name}")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _write_jsonl(lines: Iterator[str], fh: IO[str]) -> int:
    count = 0
    for line in lines:
        fh.write(line)
        fh.write("\n")
        count += 1
    return count


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    source, pipeline = record.get("source") or {}, record.get("pipeline") or {}
    duplicate = record.get("duplicate_of") or {}
    row = {name: record.get(name) for name in CSV_COLUMNS if name in RECORD_FIELDS}
    row.update({
        "source_path": source.get("path"), "source_item": source.get("item"), "source_sha256": source.get("sha256"),
        "source_format": source.get("format"), "duplicate_of_record": duplicate.get("record"),
        "duplicate_of_share": duplicate.get("share"), "pipeline_version": pipeline.get("version"),
        "pipeline_run_id": pipeline.get("run_id"), "pipeline_processed_at": pipeline.get("processed_at"),
        "paragraphs": json.dumps(record.get("paragraphs", []), ensure_ascii=False),
        "extra": json.dumps(record["extra"], ensure_ascii=False) if record.get("extra") else None,
    })
    return row


def _write_csv(lines: Iterator[str], fh: IO[str]) -> int:
    writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for line in lines:
        writer.writerow(csv_row(json.loads(line)))
        count += 1
    return count


def arrow_schema() -> Any:
    """The Parquet schema: the record's own nesting; ``extra`` (free-form) as JSON text."""
    import pyarrow as pa

    text, whole = pa.string(), pa.int64()
    repeat_of = pa.struct([
        ("record", text), ("paragraph", whole), ("passage", text), ("similarity", pa.float64()),
        ("estimated_similarity", pa.float64()), ("span", pa.list_(whole)),
    ])
    span = pa.struct([("start", whole), ("end", whole), ("passage", text), ("record", text), ("paragraph", whole),
                      ("similarity", pa.float64())])
    paragraph = pa.struct([("index", whole), ("kind", text), ("text", text), ("repeat_of", repeat_of),
                           ("repeated_spans", pa.list_(span))])
    return pa.schema([
        ("schema_version", whole), ("id", text),
        ("source", pa.struct([("path", text), ("sha256", text), ("format", text), ("item", whole)])),
        ("title", text), ("published", text), ("author", text), ("outlet", text), ("section", text),
        ("dateline", text), ("url", text), ("language", text),
        ("paragraphs", pa.list_(paragraph)), ("text", text), ("repeats", whole),
        ("duplicate_of", pa.struct([("record", text), ("share", pa.float64())])),
        ("pipeline", pa.struct([("version", text), ("run_id", text), ("processed_at", text)])),
        ("extra", text),
    ])


def _write_parquet(lines: Iterator[str], path: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError("--format parquet needs pyarrow: pip install pyarrow") from None
    schema = arrow_schema()
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict[str, Any]] = []
        for line in lines:
            record = json.loads(line)
            if record.get("extra") is not None:
                record["extra"] = json.dumps(record["extra"], ensure_ascii=False)
            batch.append(record)
            if len(batch) >= PARQUET_BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count
