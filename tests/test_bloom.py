"""pipeline.bloom: no false negatives, few false positives, crash-safe persistence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pipeline.bloom import BLOOM_FILE, BloomFilter
from pipeline.dedup import DedupSettings
from pipeline.ingest import run_ingest
from pipeline.records import read_records
from pipeline.state import Store


def random_keys(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)


def test_no_false_negatives_and_few_false_positives() -> None:
    present = random_keys(200_000, 1)
    bloom = BloomFilter.for_keys(len(present))
    bloom.add(present)
    assert bloom.might_contain(present).all()
    absent = random_keys(200_000, 2)
    assert bloom.might_contain(absent).mean() < 0.01
    assert bloom.might_contain(present.reshape(-1, 8)).shape == (25_000, 8)


def test_save_load_roundtrip_and_truncated_file(tmp_path: Path) -> None:
    bloom = BloomFilter.for_keys(1000, generation=7)
    keys = random_keys(1000, 3)
    bloom.add(keys)
    tmp = bloom.save_tmp(tmp_path)
    tmp.rename(tmp_path / BLOOM_FILE)
    loaded = BloomFilter.load(tmp_path)
    assert loaded is not None and loaded.generation == 7 and loaded.might_contain(keys).all()
    data = (tmp_path / BLOOM_FILE).read_bytes()
    (tmp_path / BLOOM_FILE).write_bytes(data[: len(data) // 2])
    assert BloomFilter.load(tmp_path) is None


def test_stale_or_missing_filter_is_rebuilt_and_results_do_not_change(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    first = sorted(seed_raw.iterdir())[:3]
    raw = tmp_path / "arriving"
    raw.mkdir()
    for path in first:
        shutil.copy2(path, raw / path.name)
    run_ingest(raw, processed)
    # A filter from an older generation (as after a crash before its rename) must not be used.
    stale = BloomFilter.for_keys(10, generation=0)
    stale.save_tmp(processed).rename(processed / BLOOM_FILE)
    store = Store(processed, DedupSettings())
    try:
        rebuilt = store.open_bloom()
        assert rebuilt is not stale and rebuilt.generation == 1
        keys = np.array([row[0] for row in store.conn.execute("SELECT key FROM keys_recent")], dtype=np.int64)
        assert keys.size and rebuilt.might_contain(keys).all()
    finally:
        store.close()
    for path in sorted(seed_raw.iterdir())[3:]:
        shutil.copy2(path, raw / path.name)
    run_ingest(raw, processed)
    reference = tmp_path / "reference"
    run_ingest(seed_raw, reference)

    def strip(records: list[dict]) -> list[dict]:
        return sorted(({k: v for k, v in r.items() if k != "pipeline"} for r in records), key=lambda r: r["id"])

    assert strip(list(read_records(processed))) == strip(list(read_records(reference)))


def test_a_filter_left_by_a_run_that_never_committed_is_not_installed(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    (processed / BLOOM_FILE).unlink()
    orphan = BloomFilter.for_keys(10, generation=99)  # no run 99 ever committed
    orphan.save_tmp(processed)
    store = Store(processed, DedupSettings())
    try:
        bloom = store.open_bloom()
        assert bloom.generation == 1 and bloom is not orphan
        assert not (processed / f".tmp-{BLOOM_FILE}").exists()
    finally:
        store.close()
