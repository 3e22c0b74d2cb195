"""``newsdedup migrate``: move a state from one database to another (SQLite to PostgreSQL, or
back), table by table, in one transaction on each side; then read the records back from both
and compare them line by line.

The source is read in one snapshot, under the processed dir's writer lock (no run of this
processed dir writes meanwhile). The destination must hold no state yet: a migration never
merges two states. The part files, the Bloom filter and the reports under the processed dir
stay as they are: they belong to the state being moved (its run numbers and Bloom generation
move with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.state import _SCHEMA, StateError
from pipeline.state_backend import StateURL, column_names, connect_url, table_names

BATCH_ROWS = 5_000


@dataclass
class Migration:
    source: str
    destination: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    records_compared: int = 0


def migrate_state(source: StateURL, destination: StateURL, processed_dir: Path) -> Migration:
    """Copy every table of ``source`` into ``destination`` (which must hold no state) and check
    that the records read back identical. The caller holds the processed dir's writer lock."""
    if source.url == destination.url:
        raise StateError(f"--from and --to are the same state ({source.display()})")
    src = connect_url(source, readonly=True, processed_dir=processed_dir)
    try:
        dst = connect_url(destination)
        try:
            return _copy(src, dst, source, destination)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src: Any, dst: Any, source: StateURL, destination: StateURL) -> Migration:
    if "meta" in table_names(dst) and dst.execute("SELECT COUNT(*) FROM meta").fetchone()[0]:
        raise StateError(f"{destination.display()} already holds a newsdedup state; migrate into an empty one")
    result = Migration(source.display(), destination.display())
    src.execute("BEGIN")  # one snapshot of the source
    try:
        dst.executescript(f"BEGIN;{_SCHEMA}")
        try:
            wanted = set(table_names(dst))
            for table in table_names(src):
                if table not in wanted:
                    raise StateError(f"{source.display()} has a table {table!r} this newsdedup does not know; "
                                     "migrate with the version that wrote it")
                result.rows[table] = _copy_table(src, dst, table)
            dst.execute("COMMIT")
        except BaseException:
            dst.execute("ROLLBACK")
            raise
        result.records_compared = _compare_records(src, dst, source, destination)
    finally:
        src.execute("COMMIT")
    return result


def _copy_table(src: Any, dst: Any, table: str) -> int:
    theirs = set(column_names(src, table))
    columns = [c for c in column_names(dst, table) if c in theirs]
    listed = ", ".join(columns)
    cursor = src.execute(f"SELECT {listed} FROM {table}")
    insert = f"INSERT INTO {table} ({listed}) VALUES ({', '.join('?' * len(columns))})"
    copied = 0
    while rows := cursor.fetchmany(BATCH_ROWS):
        if hasattr(dst, "copy_rows"):  # PostgreSQL: COPY, the bulk path
            with dst.copy_rows(table, columns) as copy:
                for row in rows:
                    copy.write_row(tuple(row))
        else:
            dst.executemany(insert, [tuple(row) for row in rows])
        copied += len(rows)
    return copied


def _compare_records(src: Any, dst: Any, source: StateURL, destination: StateURL) -> int:
    """Every record, in reading order, byte for byte; raises if one differs."""
    sql = "SELECT record_id, record FROM articles ORDER BY sort_key, path, item"
    dst.execute("BEGIN")
    try:
        theirs, ours = src.execute(sql), dst.execute(sql)
        count = 0
        while True:
            a, b = theirs.fetchone(), ours.fetchone()
            if a is None and b is None:
                return count
            if a is None or b is None or tuple(a) != tuple(b):
                raise StateError(f"the records of {destination.display()} differ from those of {source.display()} "
                                 f"at record {count + 1}; the migrated state is not to be used")
            count += 1
    finally:
        dst.execute("COMMIT")
