"""The persistent state under ``processed/``: one SQLite database, one writer at a time.

Everything a run decides (files seen, records, paragraph sketches, LSH buckets, runs,
quarantine) is committed in one transaction, so a run killed at any moment leaves either
the previous state or the new one. SQLite's write-ahead log lets readers
(``records.read_records``, ``newsdedup status``) read a consistent snapshot while a run
writes, without blocking it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import bloom as bloom_file
from pipeline.bloom import BloomFilter

if TYPE_CHECKING:  # imported where used: readers of the state need neither datasketch nor scipy
    from pipeline.dedup import DedupSettings, ParagraphRef

STATE_FILE = "state.sqlite"
# buckets_recent is merged into buckets (in key order) once it holds this many rows.
RECENT_BUCKETS_MAX_ROWS = 2_000_000
SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS paragraphs (
    pid INTEGER PRIMARY KEY, record_id TEXT NOT NULL, idx INTEGER NOT NULL,
    shingles BLOB NOT NULL, signature BLOB NOT NULL,
    role INTEGER NOT NULL,  -- 1 first occurrence (indexed), 0 repeat, -1 too short or a heading
    repeat_record TEXT, repeat_idx INTEGER, similarity REAL, estimated REAL);
CREATE INDEX IF NOT EXISTS paragraphs_record ON paragraphs (record_id, idx);
CREATE INDEX IF NOT EXISTS paragraphs_repeat ON paragraphs (repeat_record, repeat_idx) WHERE repeat_record IS NOT NULL;
CREATE TABLE IF NOT EXISTS buckets (key INTEGER NOT NULL, pid INTEGER NOT NULL, PRIMARY KEY (key, pid)) WITHOUT ROWID;
-- New buckets land here first: inserts into a small table touch few pages, while random
-- keys inserted into the big one would dirty nearly every page of it on each run.
CREATE TABLE IF NOT EXISTS buckets_recent (key INTEGER NOT NULL, pid INTEGER NOT NULL, PRIMARY KEY (key, pid))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (name TEXT PRIMARY KEY, records INTEGER NOT NULL, pending INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    outcome TEXT NOT NULL, summary TEXT);
"""


class StateError(Exception):
    """The state under processed/ cannot be used as asked; the message says why."""


class ProcessedDirLocked(StateError):
    """Another run holds processed/."""


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


from pipeline.lock import LOCK_FILE, writer_lock  # noqa: E402,F401  (moved to pipeline/lock.py; importable here)


def connect(processed_dir: Path, readonly: bool = False) -> sqlite3.Connection:
    path = Path(processed_dir) / STATE_FILE
    if readonly:
        if not path.exists():
            raise StateError(f"no newsdedup state in {processed_dir} (run `newsdedup run` first)")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-131072")  # 128 MB page cache
    conn.row_factory = sqlite3.Row
    return conn


class Store:
    """Read and write access to the state database of one processed/ directory."""

    def __init__(self, processed_dir: Path, settings: DedupSettings) -> None:
        self.processed_dir = Path(processed_dir)
        self.settings = settings
        self.conn = connect(self.processed_dir)
        self.conn.executescript(_SCHEMA)
        self.bloom: BloomFilter | None = None  # opened by the first commit that needs it
        self._check_settings()

    def close(self) -> None:
        self.conn.close()

    def _check_settings(self) -> None:
        wanted = json.dumps(self.settings.as_dict(), sort_keys=True)
        row = self.conn.execute("SELECT value FROM meta WHERE key='dedup_settings'").fetchone()
        if row is None:
            with self.transaction():
                self.conn.execute("INSERT INTO meta VALUES ('dedup_settings', ?)", (wanted,))
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif row["value"] != wanted:
            raise StateError(
                f"{self.processed_dir} was built with other dedup settings ({row['value']}); "
                "signatures cannot be mixed. Use a new processed dir to change settings."
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

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
        total = self.conn.execute(
            "SELECT (SELECT COUNT(*) FROM buckets) + (SELECT COUNT(*) FROM buckets_recent)").fetchone()[0]

        def chunks() -> Iterator[np.ndarray]:
            for table in ("buckets", "buckets_recent"):
                cursor = self.conn.execute(f"SELECT key FROM {table}")
                while rows := cursor.fetchmany(1_000_000):
                    yield np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

        return BloomFilter.build(chunks(), int(total), generation)

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


def to_blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


def shingles_from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint32)


def signature_from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint32)


class SqliteIndex:
    """LSH buckets and first-occurrence sketches in the state database (a ``CandidateIndex``).

    Lookups of the paragraphs a run touches are cached for the run; the database holds
    the rest, so memory stays flat however large the archive grows. Buckets added during a
    run are held in memory and written by ``flush`` in key order, which keeps the B-tree
    inserts local instead of scattering them over the whole table.
    """

    def __init__(self, conn: sqlite3.Connection, settings: DedupSettings, bloom: BloomFilter | None = None) -> None:
        self.conn = conn
        self.settings = settings
        self.bloom = bloom
        self._cache: dict[int, tuple[ParagraphRef, np.ndarray, np.ndarray]] = {}
        self._pending: dict[int, list[int]] = {}  # in-run buckets, for keys that several paragraphs share
        self._added: list[tuple[int, np.ndarray]] = []  # every (pid, keys) added in the run, for flush
        self._masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # pid -> (may be stored, shared in run)
        self.merged_rows = 0

    def precompute(self, pids: list[int], keys: np.ndarray) -> None:
        """For the run's paragraphs at once (``keys``: one row per pid): which keys may be in
        the stored buckets (Bloom filter) and which other paragraphs of the run share. A key
        no other paragraph of the run has needs no in-run lookup; one the filter rules out,
        no database lookup. Vectorised, so per-key Python work stays off the hot path."""
        if not pids:
            return
        stored = self.bloom.might_contain(keys) if self.bloom is not None else np.ones(keys.shape, dtype=bool)
        _, inverse, counts = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
        shared = (counts[inverse] > 1).reshape(keys.shape)
        for i, pid in enumerate(pids):
            self._masks[pid] = (stored[i], shared[i])

    def candidates(self, keys: np.ndarray, pid: int | None = None) -> Iterable[int]:
        masks = self._masks.get(pid) if pid is not None else None
        if masks is not None:
            stored_mask, shared_mask = masks
        else:
            stored_mask = self.bloom.might_contain(keys) if self.bloom is not None else np.ones(keys.shape, bool)
            shared_mask = np.ones(keys.shape, dtype=bool)
        found: set[int] = set()
        if stored_mask.any():
            key_list = keys[stored_mask].tolist()
            marks = ",".join("?" * len(key_list))
            found.update(row[0] for row in self.conn.execute(
                f"SELECT pid FROM buckets WHERE key IN ({marks}) "
                f"UNION ALL SELECT pid FROM buckets_recent WHERE key IN ({marks})", key_list + key_list))
        if self._pending and shared_mask.any():
            for key in keys[shared_mask].tolist():
                found.update(self._pending.get(key, ()))
        return found

    def add(self, pid: int, keys: np.ndarray) -> None:
        self._added.append((pid, keys))
        masks = self._masks.get(pid)
        for key in (keys[masks[1]] if masks is not None else keys).tolist():
            self._pending.setdefault(key, []).append(pid)

    def flush(self) -> None:
        """Write the buckets added during the run (inside the run's transaction)."""
        if self._added:
            keys = np.concatenate([k for _, k in self._added])
            pids = np.repeat(np.array([p for p, _ in self._added], dtype=np.int64),
                             [k.size for _, k in self._added])
            order = np.lexsort((pids, keys))
            self.conn.executemany("INSERT OR IGNORE INTO buckets_recent VALUES (?, ?)",
                                  zip(keys[order].tolist(), pids[order].tolist(), strict=True))
            if self.bloom is not None:
                self.bloom.add(keys)
        self._pending.clear()
        self._added.clear()
        recent = self.conn.execute("SELECT COUNT(*) FROM buckets_recent").fetchone()[0]
        if recent > RECENT_BUCKETS_MAX_ROWS:
            # One pass in key order over the big table, every few runs, instead of
            # scattered inserts into it on every run.
            self.conn.execute("INSERT OR IGNORE INTO buckets SELECT key, pid FROM buckets_recent ORDER BY key")
            self.conn.execute("DELETE FROM buckets_recent")
            self.merged_rows = int(recent)

    def remove(self, pid: int, keys: np.ndarray) -> None:
        rows = [(k, pid) for k in keys.tolist()]
        self.conn.executemany("DELETE FROM buckets WHERE key = ? AND pid = ?", rows)
        self.conn.executemany("DELETE FROM buckets_recent WHERE key = ? AND pid = ?", rows)

    def put(self, pid: int, ref: ParagraphRef, shingles: np.ndarray, signature: np.ndarray) -> None:
        self._cache[pid] = (ref, shingles, signature)

    def lookup(self, pid: int) -> tuple[ParagraphRef, np.ndarray, np.ndarray]:
        hit = self._cache.get(pid)
        if hit is not None:
            return hit
        from pipeline.dedup import ParagraphRef
        row = self.conn.execute(
            "SELECT p.record_id, p.idx, p.shingles, p.signature, a.sort_key, a.path, a.item "
            "FROM paragraphs p JOIN articles a ON a.record_id = p.record_id WHERE p.pid = ?",
            (pid,),
        ).fetchone()
        if row is None:
            raise StateError(f"index refers to paragraph {pid}, which is not in the state database")
        ref = ParagraphRef(row["record_id"], row["idx"], (row["sort_key"], row["path"], row["item"], row["idx"]))
        hit = (ref, shingles_from_blob(row["shingles"]), signature_from_blob(row["signature"]))
        self._cache[pid] = hit
        return hit
