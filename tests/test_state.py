"""pipeline.state with plain data: the writer lock, settings guard, the SQLite LSH index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from pipeline import state
from pipeline.bloom import BloomFilter
from pipeline.dedup import DedupSettings, ParagraphRef
from pipeline.state import ProcessedDirLocked, SqliteIndex, StateError, Store, connect, writer_lock


def test_lock_is_exclusive_and_released_on_exit(tmp_path: Path) -> None:
    with writer_lock(tmp_path):
        with pytest.raises(ProcessedDirLocked, match="pid"):
            with writer_lock(tmp_path):
                pass
    with writer_lock(tmp_path):  # released
        pass


def test_other_dedup_settings_are_refused(tmp_path: Path) -> None:
    Store(tmp_path, DedupSettings()).close()
    with pytest.raises(StateError, match="other dedup settings"):
        Store(tmp_path, DedupSettings(threshold=0.8))


def test_readers_need_existing_state(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no newsdedup state"):
        connect(tmp_path, readonly=True)


def _index(tmp_path: Path, bloom: BloomFilter | None) -> tuple[Store, SqliteIndex]:
    store = Store(tmp_path, DedupSettings())
    return store, SqliteIndex(store.conn, store.settings, bloom)


@pytest.mark.parametrize("with_bloom", [False, True])
def test_candidates_come_from_pending_recent_and_merged_buckets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                with_bloom: bool) -> None:
    monkeypatch.setattr(state, "RECENT_BUCKETS_MAX_ROWS", 5)
    bloom = BloomFilter.for_keys(100) if with_bloom else None
    store, index = _index(tmp_path, bloom)
    try:
        store.conn.execute("BEGIN")
        a = np.array([11, 12, 13], dtype=np.int64)
        b = np.array([21, 22, 13], dtype=np.int64)
        index.add(1, a)
        assert set(index.candidates(np.array([13, 99], dtype=np.int64))) == {1}  # pending, before any write
        index.flush()
        index.add(2, b)
        assert set(index.candidates(np.array([13], dtype=np.int64))) == {1, 2}
        index.flush()  # 6 rows > 5: merged into the big table in key order
        assert index.merged_rows == 6
        assert store.conn.execute("SELECT COUNT(*) FROM buckets_recent").fetchone()[0] == 0
        assert set(index.candidates(np.array([12, 22], dtype=np.int64))) == {1, 2}
        index.remove(1, a)
        assert set(index.candidates(np.array([11, 12, 13], dtype=np.int64))) == {2}
        assert set(index.candidates(np.array([404], dtype=np.int64))) == set()
        store.conn.execute("ROLLBACK")
    finally:
        store.close()


def test_lookup_reads_place_and_sketch_from_the_database(tmp_path: Path) -> None:
    store, index = _index(tmp_path, None)
    try:
        shingles = np.array([5, 7, 9], dtype=np.uint32)
        signature = np.arange(128, dtype=np.uint32)
        conn = store.conn
        conn.execute("INSERT INTO articles VALUES ('r1', 'a.txt', -1, 'sha', '2020-01-01T00:00:00', 'p', 1, 't', '{}')")
        row = (7, "r1", 3, sqlite3.Binary(shingles.tobytes()), sqlite3.Binary(signature.tobytes()))
        conn.execute("INSERT INTO paragraphs (pid, record_id, idx, shingles, signature, role) "
                     "VALUES (?, ?, ?, ?, ?, 1)", row)
        ref, got_shingles, got_signature = index.lookup(7)
        assert ref == ParagraphRef("r1", 3, ("2020-01-01T00:00:00", "a.txt", -1, 3))
        assert np.array_equal(got_shingles, shingles) and np.array_equal(got_signature, signature)
        with pytest.raises(StateError, match="not in the state database"):
            index.lookup(8)
    finally:
        store.close()
