"""The state in a PostgreSQL database (``postgresql://…`` state URL), for teams whose runs land
on several worker hosts.

The rest of ``pipeline/`` talks to the state through ``sqlite3.Connection``'s interface in
SQLite's dialect; ``PgConnection`` gives that interface over psycopg and maps the few SQLite
idioms the state SQL uses: ``?`` placeholders, ``INSERT OR REPLACE``/``OR IGNORE`` (upserts on
the table's primary key), ``BEGIN`` (a reader's ``BEGIN`` is a REPEATABLE READ, READ ONLY
snapshot, as a SQLite read transaction is), the column types of ``CREATE TABLE`` (``INTEGER``
is BIGINT for the 64-bit LSH keys and nanosecond mtimes, ``BLOB`` BYTEA, ``REAL`` DOUBLE
PRECISION, ``TEXT`` collated "C" so that ``ORDER BY`` sorts as SQLite's byte order does), and
SQLite's ``json_extract``/``instr`` (SQL functions created with the schema).

Guarantees, as on SQLite: one writer at a time (``pipeline.lock.writer_lock`` also holds a
session advisory lock on the database for the run, so runs on different hosts exclude each
other; the server drops it when a killed run's connection goes), one transaction per commit
(a killed run's open transaction is rolled back by the server), readers on a snapshot that
never blocks the writer and never sees half a commit.

Records stay JSON Lines parts under the processed dir, committed by the same protocol as with
SQLite: the parts a run writes are listed as pending in the ``parts`` table inside the run's
transaction and renamed into place after it; the next run (on any host) finishes a killed
run's renames first. Only the lock holder writes there, and a rename is atomic on a shared
POSIX or NFS filesystem, so the protocol holds across hosts that share the processed dir;
the database is the truth the parts are rewritten from (``newsdedup check --repair``).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper

if TYPE_CHECKING:
    from pipeline.state_backend import StateURL

# The advisory lock key of the writer lock: one state per database, so one key.
WRITER_LOCK_KEY = 0x6E657773_64656475  # "newsdedu"

# SQLite's json_extract over the record text (paths like $.outlet, $.paragraphs[3].text), instr, and
# substr with the BIGINT arguments INTEGER columns become.
_FUNCTIONS = """
CREATE OR REPLACE FUNCTION json_extract(doc TEXT, path TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
  SELECT doc::jsonb #>> regexp_split_to_array(
      regexp_replace(regexp_replace(substr(path, 3), '\\[(\\d+)\\]', '.\\1', 'g'), '^\\.', ''), '\\.')
$$;
CREATE OR REPLACE FUNCTION substr(s TEXT, start BIGINT, len BIGINT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
  SELECT pg_catalog.substr(s, start::integer, len::integer)
$$;
CREATE OR REPLACE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS INTEGER LANGUAGE sql IMMUTABLE AS $$
  SELECT strpos(haystack, needle)
$$;
"""


class PgRow(tuple):
    """A row readable by index and by column name, as ``sqlite3.Row`` is."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    return type("Row", (PgRow,), {"_index": {name: i for i, name in enumerate(names)}})


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    if cursor.description is None:
        return tuple
    return _row_class(tuple(column.name for column in cursor.description))


class _BoolAsInt(Dumper):
    """Python bools into the INTEGER (BIGINT) columns SQLite stores them in, as 0/1."""

    oid = postgres.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


def _placeholders(sql: str) -> str:
    """``?`` -> ``%s`` and ``%`` -> ``%%``, outside string literals."""
    pieces = re.split(r"('(?:[^']|'')*')", sql)
    return "".join(p if i % 2 else p.replace("%", "%%").replace("?", "%s") for i, p in enumerate(pieces))


def translate_ddl(script: str) -> str:
    """SQLite's CREATE TABLE column types as PostgreSQL's (see the module doc)."""
    script = re.sub(r"--[^\n]*", "", script)
    for sqlite_type, pg_type in (("INTEGER", "BIGINT"), ("BLOB", "BYTEA"), ("REAL", "DOUBLE PRECISION"),
                                 ("TEXT", 'TEXT COLLATE "C"')):
        script = re.sub(rf"\b{sqlite_type}\b", pg_type, script)
    return script


# Rows a reader's server-side cursor fetches at a time.
READ_SLICE_ROWS = 2_000
# Queued writes are sent once this many wait.
QUEUE_MAX = 2_000
# executemany of this many rows or more of a plain VALUES insert goes through COPY.
COPY_MIN_ROWS = 64
_VALUES_ONLY = re.compile(r"^\s*INSERT\s+(OR\s+(REPLACE|IGNORE)\s+)?INTO\s+(\w+)\s*(\(([^)]*)\))?\s*"
                          r"VALUES\s*\(\s*\?(\s*,\s*\?)*\s*\)\s*$", re.IGNORECASE | re.DOTALL)
_UPSERT = re.compile(r"^\s*INSERT\s+OR\s+(REPLACE|IGNORE)\s+INTO\s+(\w+)\s*(\(([^)]*)\))?", re.IGNORECASE | re.DOTALL)


class PgConnection:
    """``sqlite3.Connection``'s interface over one psycopg connection in autocommit mode."""

    def __init__(self, conn: psycopg.Connection[Any], readonly: bool) -> None:
        self.raw = conn
        self.readonly = readonly
        self._tables: dict[str, tuple[list[str], list[str]]] = {}
        self._queued: list[tuple[str, tuple[Any, ...]]] = []
        self._writing = False  # inside a write transaction begun through execute("BEGIN…")
        self._reading = False  # inside a reader's snapshot
        self._cursors = 0

    def close(self) -> None:
        self._queued.clear()  # an open transaction is rolled back by the server anyway
        self.raw.close()

    def _columns(self, table: str) -> tuple[list[str], list[str]]:
        """The table's columns and its primary key's, from the catalog (cached)."""
        if table not in self._tables:
            rows = self.raw.execute(
                "SELECT a.attname, COALESCE(a.attnum = ANY(i.indkey), false) FROM pg_attribute a "
                "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (table,)).fetchall()
            self._tables[table] = ([r[0] for r in rows], [r[0] for r in rows if r[1]])
        return self._tables[table]

    def translate(self, sql: str) -> str:
        head = sql.lstrip()[:16].upper()
        if head.startswith("BEGIN"):
            return "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if self.readonly else "BEGIN"
        if head.startswith("CREATE"):
            return translate_ddl(sql)
        match = _UPSERT.match(sql)
        if match:
            verb, table, listed = match.group(1).upper(), match.group(2), match.group(4)
            columns, key = self._columns(table)
            named = [c.strip() for c in listed.split(",")] if listed else columns
            rest = sql[match.end():]
            sql = f"INSERT INTO {table} {match.group(3) or ''}{rest}"
            updates = [c for c in named if c not in key]
            if verb == "IGNORE" or not updates:
                sql += f" ON CONFLICT ({', '.join(key)}) DO NOTHING"
            else:
                sql += (f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
                        + ", ".join(f"{c} = EXCLUDED.{c}" for c in updates))
        return _placeholders(sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        head = sql.lstrip()[:16].upper()
        if head.startswith("ROLLBACK"):
            self._queued.clear()
            self._writing = self._reading = False
            return self.raw.execute("ROLLBACK")
        if self._writing and head.startswith(("INSERT", "UPDATE", "DELETE")) and "RETURNING" not in sql.upper():
            # Inside a write transaction a write's result is never read: queued, and sent with the
            # next statements in one pipeline (a round trip per statement is what a server costs).
            self._queued.append((_translated(self, sql), tuple(params)))
            if len(self._queued) >= QUEUE_MAX:
                self.flush()
            return self.raw.cursor()
        self.flush()
        if head.startswith("CREATE"):
            return self.raw.execute(translate_ddl(sql))  # type: ignore[arg-type]
        if head.startswith(("BEGIN", "COMMIT")):
            self._writing = head.startswith("BEGIN") and not self.readonly
            self._reading = head.startswith("BEGIN") and self.readonly
            return self.raw.execute(self.translate(sql))  # type: ignore[arg-type]
        if self._reading and head.startswith("SELECT"):
            # A reader's query runs in a server-side cursor, fetched in slices: reading every
            # record of a large state must not hold them all in memory at once.
            self._cursors += 1
            cursor = self.raw.cursor(name=f"newsdedup_read_{self._cursors}")
            cursor.itersize = READ_SLICE_ROWS
            cursor.execute(_translated(self, sql), tuple(params))  # type: ignore[arg-type]
            return cursor  # type: ignore[return-value]
        return self.raw.execute(_translated(self, sql), tuple(params))  # type: ignore[arg-type]

    def flush(self) -> None:
        """Send the queued writes, in order, in one pipeline; raises the first one's error."""
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        with self.raw.pipeline():
            for sql, params in queued:
                self.raw.execute(sql, params)  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        self.flush()
        rows = [tuple(r) for r in rows]
        bulk = _VALUES_ONLY.match(sql) if len(rows) >= COPY_MIN_ROWS else None
        if bulk:
            self._copy_insert(bulk, rows)
            return self.raw.cursor()
        cursor = self.raw.cursor()
        cursor.executemany(_translated(self, sql), rows)  # type: ignore[arg-type]
        return cursor

    def _copy_insert(self, bulk: re.Match[str], rows: list[tuple[Any, ...]]) -> None:
        """A batch ``INSERT [OR REPLACE|IGNORE] INTO t [(cols)] VALUES (?, …)`` as COPY: straight
        into the table, or (an upsert) into a temporary twin, then one INSERT … SELECT … ON CONFLICT."""
        verb, table, listed = (bulk.group(2) or "").upper(), bulk.group(3), bulk.group(5)
        all_columns, key = self._columns(table)
        columns = [c.strip() for c in listed.split(",")] if listed else all_columns
        if not verb:
            with self.copy_rows(table, columns) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        twin = f"bulk_{table}"
        self.raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {twin} (LIKE {table} INCLUDING DEFAULTS)")  # type: ignore[arg-type]
        with self.copy_rows(twin, columns) as copy:
            for row in rows:
                copy.write_row(row)
        listed_sql = ", ".join(columns)
        upsert = self.translate(f"INSERT OR {verb} INTO {table} ({listed_sql}) SELECT {listed_sql} FROM {twin}")
        self.raw.execute(upsert)  # type: ignore[arg-type]
        self.raw.execute(f"TRUNCATE {twin}")  # type: ignore[arg-type]

    def executescript(self, script: str) -> None:
        self.flush()
        self.raw.execute(translate_ddl(script))  # type: ignore[arg-type]

    @contextmanager
    def copy_rows(self, table: str, columns: Sequence[str]) -> Iterator[Any]:
        """COPY into a table, for bulk writes (``copy.write_row(row)``)."""
        self.flush()
        with self.raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[arg-type]
            yield copy


def _translated(conn: PgConnection, sql: str) -> str:
    # Upserts depend on the table's columns, so they are cached per connection; the rest by text.
    return conn.translate(sql) if _UPSERT.match(sql) else _translate_plain(sql)


@lru_cache(maxsize=512)
def _translate_plain(sql: str) -> str:
    return _placeholders(sql)


def _open(url: str, readonly: bool) -> psycopg.Connection[Any]:
    from pipeline.state import StateError
    from pipeline.state_backend import parse_state_url

    try:
        conn = psycopg.connect(url, autocommit=True, row_factory=_row_factory, connect_timeout=10,
                               application_name=f"newsdedup pid {os.getpid()} on {socket.gethostname()}"[:63])
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:300]
        raise StateError(f"cannot reach the PostgreSQL state {parse_state_url(url).display()}: {reason}") from None
    conn.adapters.register_dumper(bool, _BoolAsInt)
    conn.execute("SET client_min_messages = warning")  # CREATE ... IF NOT EXISTS notices
    return conn


def pg_state_exists(url: str) -> bool:
    conn = _open(url, readonly=True)
    try:
        return conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]  # type: ignore[index]
    finally:
        conn.close()


def connect_pg(target: StateURL, readonly: bool) -> PgConnection:
    from pipeline.state import StateError

    conn = _open(target.url, readonly)
    if readonly:
        if not conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
            conn.close()
            raise StateError(f"no newsdedup state in {target.display()} (run `newsdedup run` first)")
    else:
        conn.execute(_FUNCTIONS)
    return PgConnection(conn, readonly)


@contextmanager
def advisory_writer_lock(target: StateURL, deadline: float) -> Iterator[None]:
    """The database's writer lock, held by a session of its own for the run (``deadline``: a
    ``time.monotonic()`` until which to wait for it). The server drops it when the session ends,
    also when the process is killed."""
    from pipeline.state import ProcessedDirLocked

    conn = _open(target.url, readonly=False)
    try:
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() >= deadline:
                holder = conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objid::bigint = %s",
                    (WRITER_LOCK_KEY & 0xFFFFFFFF,)).fetchone()
                raise ProcessedDirLocked(
                    f"another newsdedup run is writing to the state {target.display()} "
                    f"({holder[0] if holder else 'holder unknown'}); this run exits without changing anything. "
                    "Try again when it has finished.")
            time.sleep(0.2)
        yield
    finally:
        conn.close()  # ends the session: releases the lock
