"""pipeline.state with plain data: the writer lock, settings guard, the stored units and LSH key holders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import state
from pipeline.bloom import BloomFilter
from pipeline.dedup import DedupSettings
from pipeline.state import ProcessedDirLocked, SqliteUnits, StateError, Store, connect, writer_lock


def test_lock_is_exclusive_and_released_on_exit(tmp_path: Path) -> None:
    with writer_lock(tmp_path):
        with pytest.raises(ProcessedDirLocked, match="pid"):
            with writer_lock(tmp_path):
                pass
    with writer_lock(tmp_path):  # released
        pass


def test_other_signature_settings_are_refused_with_the_command_that_rebuilds(tmp_path: Path) -> None:
    Store(tmp_path, DedupSettings()).close()
    with pytest.raises(StateError) as refused:
        Store(tmp_path, DedupSettings(shingle_size=4, threshold=0.5))
    assert str(refused.value).endswith(f"newsdedup reindex {tmp_path} --shingle-size 4 --threshold 0.5")
    assert "shingle_size 3 -> 4" in str(refused.value)


def test_other_decision_settings_mean_every_stored_article_is_decided_again(tmp_path: Path) -> None:
    Store(tmp_path, DedupSettings()).close()
    same = Store(tmp_path, DedupSettings())
    assert not same.redecide_all
    same.close()
    other = Store(tmp_path, DedupSettings(threshold=0.8))
    assert other.redecide_all
    other.close()


def test_a_processed_dir_belongs_to_the_raw_dir_of_its_first_run(tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    processed.mkdir()
    Store(processed, DedupSettings(), tmp_path / "raw").close()
    Store(processed, DedupSettings(), tmp_path / "raw").close()
    with pytest.raises(StateError) as refused:
        Store(processed, DedupSettings(), tmp_path / "extra-raw")
    message = str(refused.value)
    assert str(tmp_path / "raw") in message and str(tmp_path / "extra-raw") in message
    assert "--processed-dir" in message
    # A project moved as a whole (raw/ and processed/ side by side) keeps its binding.
    moved = tmp_path / "moved"
    moved.mkdir()
    processed.rename(moved / "processed")
    Store(moved / "processed", DedupSettings(), moved / "raw").close()


def test_readers_need_existing_state(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no newsdedup state"):
        connect(tmp_path, readonly=True)


def _units(tmp_path: Path, bloom: BloomFilter | None) -> tuple[Store, SqliteUnits]:
    store = Store(tmp_path, DedupSettings())
    return store, SqliteUnits(store.conn, store.settings, bloom)


def _unit_row(uid: int, record: str, seq: int, root: int, shingles: np.ndarray, num_perm: int) -> tuple:
    signature = np.arange(num_perm, dtype=np.uint32) + uid
    return (uid, record, seq, seq, 0, 10, 9, 1, shingles.tobytes(), signature.tobytes(), None if root == uid else root,
            root, None, None, None, 0)


@pytest.mark.parametrize("with_bloom", [False, True])
def test_holders_from_recent_and_merged_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            with_bloom: bool) -> None:
    monkeypatch.setattr(state, "RECENT_KEYS_MAX_ROWS", 5)
    bloom = BloomFilter.for_keys(100) if with_bloom else None
    store, units = _units(tmp_path, bloom)
    perms = store.settings.num_perm
    try:
        store.conn.execute("BEGIN")
        store.conn.execute("INSERT INTO articles VALUES ('r1', 'a.txt', -1, 'sha', '2020-01-01', 'p', 1, 't', '{}')")
        units.insert_units([_unit_row(1, "r1", 0, 1, np.array([5], np.uint32), perms),
                            _unit_row(2, "r1", 1, 2, np.array([6], np.uint32), perms)])
        units.set_holders(np.array([13, 11, 12], np.int64), np.array([1, 1, 1], np.int64), np.empty(0, np.int64))
        keys, uids, records = units.holders(np.array([13, 99], dtype=np.int64))
        assert keys.tolist() == [13] and uids.tolist() == [1] and records == ["r1"]
        units.set_holders(np.array([21, 22, 23], np.int64), np.array([2, 2, 2], np.int64), np.empty(0, np.int64))
        assert units.merged_rows == 6  # 6 rows > 5: merged into the big table in key order
        assert store.conn.execute("SELECT COUNT(*) FROM keys_recent").fetchone()[0] == 0
        keys, uids, _ = units.holders(np.array([12, 22, 404], dtype=np.int64))
        assert dict(zip(keys.tolist(), uids.tolist(), strict=True)) == {12: 1, 22: 2}
        # a holder that moves, and a key whose holder left
        units.set_holders(np.array([12], np.int64), np.array([2], np.int64), np.array([12, 13], np.int64))
        keys, uids, _ = units.holders(np.array([12, 13], dtype=np.int64))
        assert keys.tolist() == [12] and uids.tolist() == [2]
        store.conn.execute("ROLLBACK")
    finally:
        store.close()


def test_the_recent_keys_may_grow_to_a_quarter_of_the_stored_ones_before_a_merge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge rewrites the whole big table: with 100 keys stored, keys_recent may hold 25
    (RECENT_KEYS_MAX_SHARE), not the fixed minimum (5 here), so merges come rarer as it grows."""
    monkeypatch.setattr(state, "RECENT_KEYS_MAX_ROWS", 5)
    bloom = BloomFilter.for_keys(1000)
    bloom.keys = 100  # as if 100 keys were stored
    store, units = _units(tmp_path, bloom)
    try:
        store.conn.execute("BEGIN")
        merged_at = []
        for run in range(1, 5):
            new = np.arange(run * 100, run * 100 + 10, dtype=np.int64)
            units.set_holders(new, np.ones(10, np.int64), np.empty(0, np.int64))
            if units.merged_rows:
                merged_at.append((run, units.merged_rows))
                break
        # limits 25, 27, 30, 32 (the filter counts each run's keys): 40 rows > 32 in the 4th run
        assert merged_at == [(4, 40)]
        assert store.conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 40
        store.conn.execute("ROLLBACK")
    finally:
        store.close()


def test_a_first_load_goes_straight_to_the_big_table_with_a_filter_sized_for_more(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "RECENT_KEYS_MAX_ROWS", 5)
    empty = BloomFilter.for_keys(0)
    store, units = _units(tmp_path, empty)
    perms = store.settings.num_perm
    # Enough keys that the empty filter would be crowded by them: it is replaced, not overfilled.
    first_load = np.arange(1, 200_001, dtype=np.int64) * 7919
    try:
        store.conn.execute("BEGIN")
        store.conn.execute("INSERT INTO articles VALUES ('r1', 'a.txt', -1, 'sha', '2020-01-01', 'p', 1, 't', '{}')")
        units.insert_units([_unit_row(1, "r1", 0, 1, np.array([5], np.uint32), perms)])
        units.set_holders(first_load, np.ones(first_load.size, np.int64), np.empty(0, np.int64))
        assert store.conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == first_load.size
        assert store.conn.execute("SELECT COUNT(*) FROM keys_recent").fetchone()[0] == 0
        assert units.merged_rows == 0  # written once, not through keys_recent and merged again
        assert units.bloom is not None and units.bloom is not empty and units.bloom.bits > empty.bits
        assert units.bloom.might_contain(first_load).all()
        # Room for more runs like it before the next run would have to rebuild it.
        units.bloom.keys += 2 * first_load.size
        assert not units.bloom.crowded()
        keys, uids, _ = units.holders(first_load[[0, -1]])
        assert keys.tolist() == sorted(first_load[[0, -1]].tolist()) and uids.tolist() == [1, 1]
        store.conn.execute("ROLLBACK")
    finally:
        store.close()


def test_stored_units_come_with_their_place_and_root(tmp_path: Path) -> None:
    store, units = _units(tmp_path, None)
    perms = store.settings.num_perm
    try:
        conn = store.conn
        conn.execute("INSERT INTO articles VALUES ('r1', 'a.txt', -1, 'sha', '2020-01-01T00:00:00', 'p', 1, 't', '{}')")
        conn.execute("INSERT INTO articles VALUES ('r2', 'b.txt', -1, 'sha', '2020-01-02T00:00:00', 'p', 1, 't', '{}')")
        shingles = np.array([5, 7, 9], dtype=np.uint32)
        units.insert_units([_unit_row(7, "r1", 3, 7, shingles, perms), _unit_row(8, "r2", 0, 7, shingles, perms)])
        got = units.units_by_uid([7, 8, 9])
        assert set(got) == {7, 8}
        assert got[8].order == ("2020-01-02T00:00:00", "b.txt", -1) and got[8].root == 7
        assert got[7].root == 7 and np.array_equal(got[7].shingles, shingles)
        assert [u.uid for u in units.units_of_record("r1")] == [7]
    finally:
        store.close()
