"""The persistent state under ``processed/``: one SQLite database, one writer at a time.

Everything a run decides (files seen, records, paragraph sketches, LSH buckets, runs,
quarantine) is committed in one transaction, so a run killed at any moment leaves either
the previous state or the new one. SQLite's write-ahead log lets readers
(``records.read_records``, ``newsdedup status``) read a consistent snapshot while a run
writes, without blocking it.

The database is the one the state URL names (``pipeline.state_backend``): the SQLite file
``processed/state.sqlite`` by default, or a PostgreSQL database (``pipeline.state_pg``, which
takes this module's SQL as it is written here).
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import bloom as bloom_file
from pipeline.bloom import BloomFilter
from pipeline.state_backend import STATE_FILE, connect, state_exists  # noqa: F401  (the factory by state URL; importable here)

if TYPE_CHECKING:  # imported where used: readers of the state need neither datasketch nor scipy
    from pipeline.dedup import DedupSettings
    from pipeline.repeats import StoredUnit

# keys_recent is merged into keys (in key order) once it holds this many rows, or a quarter of
# the stored keys if that is more: a merge rewrites the big table (every page of it: the keys are
# random), so its cost grows with the archive and it must come rarer as the archive grows.
RECENT_KEYS_MAX_ROWS = 2_000_000
RECENT_KEYS_MAX_SHARE = 4
SCHEMA_VERSION = 2

# Size and mtime of each file a run wrote under processed/ (parts, reports), as it left them:
# the cheap check every run starts with (pipeline/check.py) compares them with an lstat.
OUTPUTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS outputs (name TEXT PRIMARY KEY, bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    run_seq INTEGER);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, sha256 TEXT, size INTEGER, mtime_ns INTEGER,
    status TEXT NOT NULL, reason TEXT, run_seq INTEGER, updated_at TEXT);
CREATE TABLE IF NOT EXISTS quarantine (
    path TEXT NOT NULL, item INTEGER NOT NULL DEFAULT -1, sha256 TEXT, reason TEXT NOT NULL,
    detected_at TEXT NOT NULL, run_seq INTEGER, PRIMARY KEY (path, item));
CREATE TABLE IF NOT EXISTS articles (
    record_id TEXT PRIMARY KEY, path TEXT NOT NULL, item INTEGER NOT NULL, sha256 TEXT NOT NULL,
    sort_key TEXT NOT NULL, part TEXT NOT NULL, run_seq INTEGER NOT NULL, written_at TEXT NOT NULL,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS articles_order ON articles (sort_key, path, item);
CREATE INDEX IF NOT EXISTS articles_path ON articles (path);
CREATE INDEX IF NOT EXISTS articles_run ON articles (run_seq);
CREATE INDEX IF NOT EXISTS articles_part ON articles (part);
-- Units of evidence (sentences, windows of short sentences) of every current article, with
-- their sketches and decisions. match_uid: the unit it was matched to (NULL: not matched);
-- root_uid: its first occurrence (itself for one); passage: the passage id it belongs to.
CREATE TABLE IF NOT EXISTS units (
    uid INTEGER PRIMARY KEY, record_id TEXT NOT NULL, seq INTEGER NOT NULL, para INTEGER NOT NULL,
    start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, words INTEGER NOT NULL, eligible INTEGER NOT NULL,
    shingles BLOB NOT NULL, signature BLOB NOT NULL,
    match_uid INTEGER, root_uid INTEGER NOT NULL, similarity REAL, estimated REAL, passage TEXT,
    numbers INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS units_record ON units (record_id, seq);
-- LSH keys and their holder, the earliest unit that has the key: one row per distinct key.
-- New keys land in keys_recent first: inserts into a small table touch few pages, while random
-- keys inserted into the big one would dirty nearly every page of it on each run.
CREATE TABLE IF NOT EXISTS keys (key INTEGER PRIMARY KEY, uid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS keys_recent (key INTEGER PRIMARY KEY, uid INTEGER NOT NULL);
-- Repeated spans as the records state them, for the passage catalog (whole = paragraph-level repeat).
CREATE TABLE IF NOT EXISTS spans (
    record_id TEXT NOT NULL, para INTEGER NOT NULL, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL,
    passage TEXT NOT NULL, root_record TEXT NOT NULL, root_para INTEGER NOT NULL, similarity REAL,
    words INTEGER NOT NULL, whole INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS spans_passage ON spans (passage);
CREATE INDEX IF NOT EXISTS spans_record ON spans (record_id);
-- Short paragraphs by (house-line group, word hash), to count how many articles of an outlet carry them.
CREATE TABLE IF NOT EXISTS house_lines (
    grp TEXT NOT NULL, hash INTEGER NOT NULL, record_id TEXT NOT NULL, para INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS house_lines_key ON house_lines (grp, hash);
CREATE INDEX IF NOT EXISTS house_lines_record ON house_lines (record_id);
-- Records that left the current records (their item is gone from a changed file), as the tombstone
-- `since` readers get; a record that comes back removes its row.
CREATE TABLE IF NOT EXISTS deletions (
    record_id TEXT PRIMARY KEY, path TEXT NOT NULL, run_seq INTEGER NOT NULL, written_at TEXT NOT NULL,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS deletions_run ON deletions (run_seq);
CREATE TABLE IF NOT EXISTS parts (name TEXT PRIMARY KEY, records INTEGER NOT NULL, pending INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    outcome TEXT NOT NULL, summary TEXT);
""" + OUTPUTS_SCHEMA


class StateError(Exception):
    """The state under processed/ cannot be used as asked; the message says why."""


class ProcessedDirLocked(StateError):
    """Another run holds processed/."""


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


from pipeline.lock import LOCK_FILE, writer_lock  # noqa: E402,F401  (moved to pipeline/lock.py; importable here)

META_SETTINGS = "dedup_settings"
META_RAW_DIR = "raw_dir"


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {row[0]: row[1] for row in conn.execute("SELECT key, value FROM meta")}


def settings_json(settings: DedupSettings) -> str:
    return json.dumps(settings.as_dict(), sort_keys=True)


def settings_changes(stored: str | None, wanted: DedupSettings) -> dict[str, tuple[Any, Any]]:
    """name -> (stored value, wanted value) for the detection settings that differ."""
    if stored is None:
        return {}
    old = json.loads(stored)
    # A setting the stored state does not name was added later with the old behaviour as its default.
    return {k: (old.get(k, v), v) for k, v in wanted.as_dict().items() if old.get(k, v) != v}


def raw_dir_binding(raw_dir: Path, processed_dir: Path) -> dict[str, str]:
    """The raw dir as stored: absolute, and relative to the processed dir (a project moved as a
    whole, raw/ and processed/ side by side, keeps its binding)."""
    raw = Path(raw_dir).resolve()
    return {"path": str(raw), "relative": os.path.relpath(raw, Path(processed_dir).resolve())}


def bound_raw_dir(meta: dict[str, str]) -> str | None:
    """The raw dir a processed dir belongs to (None: not bound yet)."""
    value = meta.get(META_RAW_DIR)
    return json.loads(value)["path"] if value else None


def check_compatible(meta: dict[str, str], processed_dir: Path, settings: DedupSettings,
                     raw_dir: Path | None, rebuild: bool = False) -> bool:
    """Raises ``StateError`` when a run with these settings and raw dir may not use this state;
    returns whether the stored decision settings differ (the run re-decides every article)."""
    from pipeline.dedup import SIGNATURE_FIELDS

    version = meta.get("schema_version")
    if version is not None and version != str(SCHEMA_VERSION):
        raise StateError(
            f"{processed_dir} holds state of an older newsdedup (state version {version}, "
            f"this one writes {SCHEMA_VERSION}); rebuild it from raw/ into a new processed dir.")
    stored_raw = meta.get(META_RAW_DIR)
    if raw_dir is not None and stored_raw:
        bound = json.loads(stored_raw)
        here = raw_dir_binding(raw_dir, processed_dir)
        if here["path"] != bound["path"] and here["relative"] != bound["relative"]:
            raise StateError(
                f"{processed_dir} belongs to raw dir {bound['path']}, not {here['path']}: records are keyed by "
                f"their path inside the raw dir, so two raw dirs would replace each other's records. Give "
                f"{here['path']} a processed dir of its own (--processed-dir NEW_DIR), or, if the raw dir "
                f"moved there, run once with --rebind-raw-dir.")
    changes = settings_changes(meta.get(META_SETTINGS), settings)
    signature = sorted(k for k in changes if k in SIGNATURE_FIELDS)
    if signature and not rebuild:
        was = ", ".join(f"{k} {changes[k][0]} -> {changes[k][1]}" for k in signature)
        raise StateError(
            f"{processed_dir} was sketched with other settings ({was}); its signatures cannot be mixed with new "
            f"ones. Rebuild them from the stored text (raw files are not read again, ids are kept): "
            f"{reindex_command(processed_dir, changes)}")
    return bool(changes)


def reindex_command(processed_dir: Path, changes: dict[str, tuple[Any, Any]]) -> str:
    flags = "".join(f" --{k.replace('_', '-')} {new}" for k, (_, new) in sorted(changes.items()))
    return f"newsdedup reindex {processed_dir}{flags}"


def rebind_raw_dir(processed_dir: Path, raw_dir: Path) -> None:
    """Bind a processed dir to a raw dir that moved (``newsdedup run --rebind-raw-dir``)."""
    conn = connect(Path(processed_dir))
    try:
        with transaction(conn):
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         (META_RAW_DIR, json.dumps(raw_dir_binding(raw_dir, processed_dir))))
    finally:
        conn.close()


def preflight(processed_dir: Path, settings: DedupSettings, raw_dir: Path | None) -> bool:
    """``check_compatible`` read-only, before a run starts Prefect: False when there is no state yet."""
    if not state_exists(Path(processed_dir)):
        return False
    conn = connect(Path(processed_dir), readonly=True)
    try:
        if not has_schema(conn):  # a first run killed before creating its tables: nothing stored yet
            return False
        meta = read_meta(conn)
    finally:
        conn.close()
    return check_compatible(meta, Path(processed_dir), settings, raw_dir)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on a connection opened by ``connect`` (autocommit mode)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def build_bloom(conn: sqlite3.Connection, generation: int) -> BloomFilter:
    """The Bloom filter of every stored LSH key, from the database."""
    total = conn.execute("SELECT (SELECT COUNT(*) FROM keys) + (SELECT COUNT(*) FROM keys_recent)").fetchone()[0]

    def chunks() -> Iterator[np.ndarray]:
        for table in ("keys", "keys_recent"):
            cursor = conn.execute(f"SELECT key FROM {table}")
            while rows := cursor.fetchmany(1_000_000):
                yield np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    return BloomFilter.build(chunks(), int(total), generation)


def has_schema(conn: sqlite3.Connection) -> bool:
    """Whether the database holds newsdedup's tables; without them (a first run killed before
    creating them) no run has committed anything yet. Older versions created the tables one by
    one, ``runs`` last but for ``outputs``."""
    if not isinstance(conn, sqlite3.Connection):
        return True  # a server database creates its schema in one transaction
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone() is not None


class Store:
    """Read and write access to the state database of one processed/ directory.

    ``raw_dir``: the raw dir this run reads (None: not checked, e.g. ``reindex``). A processed
    dir belongs to the raw dir of its first run; ``rebuild``: accept other signature settings
    (``newsdedup reindex`` is about to rebuild every sketch).
    """

    def __init__(self, processed_dir: Path, settings: DedupSettings, raw_dir: Path | None = None,
                 rebuild: bool = False) -> None:
        self.processed_dir = Path(processed_dir)
        self.settings = settings
        self.raw_dir = Path(raw_dir) if raw_dir is not None else None
        self.conn = connect(self.processed_dir)
        self.conn.executescript(f"BEGIN;{_SCHEMA}COMMIT;")  # all or nothing: a kill here leaves no half schema
        self.bloom: BloomFilter | None = None  # opened by the first commit that needs it
        meta = read_meta(self.conn)
        # Stored decision settings differ: this run decides every stored article again.
        self.redecide_all = check_compatible(meta, self.processed_dir, settings, self.raw_dir, rebuild)
        if "schema_version" not in meta:
            with self.transaction():
                self.save_meta()

    def close(self) -> None:
        self.conn.close()

    def save_meta(self) -> None:
        """The settings (and raw dir) the state is now built with; inside the run's transaction."""
        rows = [("schema_version", str(SCHEMA_VERSION)), (META_SETTINGS, settings_json(self.settings))]
        if self.raw_dir is not None:
            rows.append((META_RAW_DIR, json.dumps(raw_dir_binding(self.raw_dir, self.processed_dir))))
        self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.conn)

    # --- the Bloom filter over bucket keys ---------------------------------------------

    def open_bloom(self) -> BloomFilter:
        """The filter that matches the committed buckets; rebuilt when it does not."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'bloom_generation'").fetchone()
        generation = int(row[0]) if row is not None else 0
        for candidate in (BloomFilter.load(self.processed_dir), self._saved_bloom(generation)):
            if candidate is not None and candidate.generation == generation and not candidate.crowded():
                return candidate
        return self._rebuild_bloom(generation)

    def _saved_bloom(self, generation: int) -> BloomFilter | None:
        """A filter saved by a run that died after its commit, before moving it into place.

        Only the one whose number matches the committed state is installed; one left by a
        run that never committed is deleted, never trusted.
        """
        tmp = self.processed_dir / f".tmp-{bloom_file.BLOOM_FILE}"
        if not tmp.exists():
            return None
        bloom = BloomFilter.load_path(tmp)
        if bloom is None or bloom.generation != generation:
            tmp.unlink(missing_ok=True)
            return None
        bloom_file.install(self.processed_dir)
        return bloom

    def _rebuild_bloom(self, generation: int) -> BloomFilter:
        return build_bloom(self.conn, generation)

    def save_bloom(self, bloom: BloomFilter, generation: int) -> None:
        """Inside the run's transaction: the filter to a temporary file, its number to the database."""
        bloom.generation = generation
        bloom.save_tmp(self.processed_dir)
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('bloom_generation', ?)", (str(generation),))

    def install_bloom(self) -> None:
        """After the commit: move the saved filter into place."""
        bloom_file.install(self.processed_dir)

    # --- files ---------------------------------------------------------------------

    def known_files(self) -> dict[str, sqlite3.Row]:
        return {row["path"]: row for row in self.conn.execute("SELECT * FROM files")}

    # --- runs ----------------------------------------------------------------------

    def next_run_seq(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM runs").fetchone()
        return int(row["seq"])

    def record_run(self, seq: int, run_id: str, started_at: str, outcome: str, summary: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
            (seq, run_id, started_at, utc_now(), outcome, json.dumps(summary, sort_keys=True)),
        )

    # --- deletions (tombstones) ------------------------------------------------------

    def note_deletions(self, tombstones: list[tuple[str, str, str]], returned: Iterable[str], run_seq: int,
                       written_at: str) -> None:
        """Inside the run's transaction: ``tombstones`` (record id, path, tombstone JSON) of
        records that left; ``returned``: ids written again, current once more."""
        self.conn.executemany("DELETE FROM deletions WHERE record_id = ?", [(r,) for r in returned])
        self.conn.executemany("INSERT OR REPLACE INTO deletions VALUES (?, ?, ?, ?, ?)",
                              [(rid, path, run_seq, written_at, text) for rid, path, text in tombstones])


def to_blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


def shingles_from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint32)


def signature_from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint32)


class SqliteUnits:
    """The stored units, keys and house lines, as ``pipeline.repeats.UnitSource`` reads them
    and the commit writes them (always inside the run's transaction)."""

    chunk = 500  # bound parameters per IN (...) query
    write_slice = 200_000  # rows per executemany of a large write (key rows: two ints each)
    unit_write_slice = 20_000  # unit rows per executemany: ~0.7 KB each with their sketches
    FIRST_LOAD_GROWTH = 4  # a first load's filter holds this many times its keys before a rebuild

    def __init__(self, conn: sqlite3.Connection, settings: DedupSettings, bloom: BloomFilter | None = None) -> None:
        self.conn = conn
        self.settings = settings
        self.bloom = bloom
        self.merged_rows = 0

    # --- reads (UnitSource) ------------------------------------------------------------

    def holders(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``keys``: distinct keys (the engine passes each key once)."""
        if self.bloom is not None and keys.size:
            # An empty filter (a first load) holds nothing: no key need be tested, nor looked up.
            keys = keys[self.bloom.might_contain(keys)] if self.bloom.keys else keys[:0]
        found: list[tuple[int, int, str]] = []
        key_list = keys.tolist()
        for i in range(0, len(key_list), self.chunk):
            part = key_list[i : i + self.chunk]
            marks = ",".join("?" * len(part))
            found += self.conn.execute(
                f"SELECT k.key, k.uid, u.record_id FROM (SELECT key, uid FROM keys WHERE key IN ({marks}) "
                f"UNION ALL SELECT key, uid FROM keys_recent WHERE key IN ({marks})) k "
                f"JOIN units u ON u.uid = k.uid", part + part).fetchall()
        found = [tuple(f) for f in found]
        found.sort()
        return (np.array([f[0] for f in found], dtype=np.int64), np.array([f[1] for f in found], dtype=np.int64),
                [f[2] for f in found])

    _UNIT_SQL = (
        "SELECT u.uid, u.record_id, u.seq, u.para, u.shingles, u.signature, u.root_uid, u.numbers, "
        "a.sort_key, a.path, a.item FROM units u JOIN articles a ON a.record_id = u.record_id ")

    def units_by_uid(self, uids: Iterable[int]) -> dict[int, StoredUnit]:
        uid_list = sorted(set(uids))
        out = {}
        for i in range(0, len(uid_list), self.chunk):
            part = uid_list[i : i + self.chunk]
            rows = self.conn.execute(self._UNIT_SQL + f"WHERE u.uid IN ({','.join('?' * len(part))})", part)
            out.update((row["uid"], _stored_unit(row)) for row in rows)
        return out

    def units_of_record(self, record_id: str) -> list[StoredUnit]:
        rows = self.conn.execute(self._UNIT_SQL + "WHERE u.record_id = ? ORDER BY u.seq", (record_id,))
        return [_stored_unit(row) for row in rows]

    def house_line_occurrences(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], list[Any]]:
        out: dict[tuple[str, int], list[Any]] = {}
        by_group: dict[str, list[int]] = {}
        for group, h in keys:
            out[(group, h)] = []
            by_group.setdefault(group, []).append(h)
        # A query per group and chunk of hashes, not per line (a run asks for thousands).
        for group, hashes in by_group.items():
            for i in range(0, len(hashes), self.chunk):
                part = hashes[i : i + self.chunk]
                rows = self.conn.execute(
                    "SELECT h.hash, h.record_id, h.para, a.sort_key, a.path, a.item FROM house_lines h "
                    f"JOIN articles a ON a.record_id = h.record_id WHERE h.grp = ? AND h.hash IN "
                    f"({','.join('?' * len(part))})", [group, *part])  # the engine sorts them itself
                for r in rows:
                    out[(group, r["hash"])].append(((r["sort_key"], r["path"], r["item"]), r["record_id"], r["para"]))
        return out

    def article_units(self, record_id: str) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM units WHERE record_id = ? ORDER BY seq", (record_id,)).fetchall()

    # --- writes ------------------------------------------------------------------------

    def delete_records(self, record_ids: list[str]) -> None:
        for table in ("units", "spans", "house_lines"):
            self.conn.executemany(f"DELETE FROM {table} WHERE record_id = ?", [(r,) for r in record_ids])

    def insert_units(self, rows: list[tuple[Any, ...]]) -> None:
        insert_rows(self.conn, "INSERT INTO units (uid, record_id, seq, para, start_char, end_char, words, eligible, "
                    "shingles, signature, match_uid, root_uid, similarity, estimated, passage, numbers)", 16, rows)

    def insert_spans(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def insert_house_lines(self, rows: list[tuple[str, int, str, int]]) -> None:
        self.conn.executemany("INSERT INTO house_lines VALUES (?, ?, ?, ?)", rows)

    def next_uid(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(uid), 0) + 1 FROM units").fetchone()[0])

    def set_holders(self, keys: np.ndarray, uids: np.ndarray, dropped: np.ndarray) -> None:
        """Keys whose holder is now a unit of the run; ``dropped``: stored keys whose holder was
        decided again or left (in key order: local B-tree changes)."""
        if dropped.size:
            rows = [(k,) for k in np.sort(dropped).tolist()]
            self.conn.executemany("DELETE FROM keys WHERE key = ?", rows)
            self.conn.executemany("DELETE FROM keys_recent WHERE key = ?", rows)
        recent = self.conn.execute("SELECT COUNT(*) FROM keys_recent").fetchone()[0]
        # The filter counts every key added to it: the stored keys, without a COUNT(*) over them.
        limit = max(RECENT_KEYS_MAX_ROWS, (self.bloom.keys if self.bloom is not None else 0) // RECENT_KEYS_MAX_SHARE)
        if keys.size:
            order = np.argsort(keys)
            # A run with more new keys than keys_recent may hold (a first load) writes them to the
            # big table in one sorted pass: through keys_recent they would be written twice.
            table = "keys" if keys.size > limit else "keys_recent"
            # In slices, each gathered in key order only when written: Python lists of every key
            # at once would cost ~70 bytes per key, sorted copies of both arrays 16.
            for first in range(0, order.size, self.write_slice):
                part = order[first : first + self.write_slice]
                _insert_key_rows(self.conn, table, keys[part], uids[part])
            del order
            if table == "keys_recent":
                recent += int(keys.size)
            if self.bloom is not None:
                if not self.bloom.keys and BloomFilter.for_keys(self.FIRST_LOAD_GROWTH * int(keys.size)).bits \
                        > self.bloom.bits:
                    # A first load, likely the first of a backlog's runs: a filter sized for a few such
                    # runs now spares the rebuild (reading every stored key back) a crowded one needs.
                    self.bloom = BloomFilter.for_keys(self.FIRST_LOAD_GROWTH * int(keys.size), self.bloom.generation)
                self.bloom.add(keys)
        if recent > limit:
            # One pass in key order over the big table, every few runs, instead of
            # scattered inserts into it on every run.
            self.conn.execute("INSERT OR REPLACE INTO keys SELECT key, uid FROM keys_recent ORDER BY key")
            self.conn.execute("DELETE FROM keys_recent")
            self.merged_rows = int(recent)


PARAMETERS_PER_STATEMENT = 960


def insert_rows(conn: sqlite3.Connection, head: str, width: int, rows: Sequence[tuple[Any, ...]]) -> None:
    """``head`` ("INSERT INTO t (a, b)") with ``rows`` of ``width`` values, many rows to a
    statement (see ``_insert_key_rows``)."""
    one = "(" + ", ".join("?" * width) + ")"
    if not isinstance(conn, sqlite3.Connection):  # PostgreSQL sends one-row batches through COPY
        conn.executemany(f"{head} VALUES {one}", rows)
        return
    per = max(1, PARAMETERS_PER_STATEMENT // width)
    full = len(rows) // per * per
    many = f"{head} VALUES " + ", ".join([one] * per)
    conn.executemany(many, (list(itertools.chain.from_iterable(rows[i : i + per])) for i in range(0, full, per)))
    conn.executemany(f"{head} VALUES {one}", rows[full:])


KEY_ROWS_PER_STATEMENT = 250  # 500 bound parameters, far under SQLite's limit


def _insert_key_rows(conn: sqlite3.Connection, table: str, keys: np.ndarray, uids: np.ndarray) -> None:
    """(key, uid) rows, many to a statement: per row, Python's sqlite3 spends more in stepping a
    one-row statement than SQLite in the B-tree; 250 rows a statement halved a first load's key
    writes (0.9 -> 0.4 us a row)."""
    if not isinstance(conn, sqlite3.Connection):  # PostgreSQL sends one-row batches through COPY
        conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)",
                         zip(keys.tolist(), uids.tolist(), strict=True))
        return
    flat = np.empty(2 * keys.size, dtype=np.int64)
    flat[0::2], flat[1::2] = keys, uids
    values = flat.tolist()
    per = KEY_ROWS_PER_STATEMENT
    full = keys.size // per * per
    many = f"INSERT OR REPLACE INTO {table} VALUES " + ", ".join(["(?, ?)"] * per)
    conn.executemany(many, (values[i : i + 2 * per] for i in range(0, 2 * full, 2 * per)))
    conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)",
                     zip(values[2 * full :: 2], values[2 * full + 1 :: 2], strict=True))


def _stored_unit(row: sqlite3.Row) -> StoredUnit:
    from pipeline.repeats import StoredUnit

    return StoredUnit(
        uid=row["uid"], record_id=row["record_id"], order=(row["sort_key"], row["path"], row["item"]),
        seq=row["seq"], para=row["para"], shingles=shingles_from_blob(row["shingles"]),
        signature=signature_from_blob(row["signature"]), root=row["root_uid"], numbers=row["numbers"])
