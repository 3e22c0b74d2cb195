"""`newsdedup check`, the cheap check every run starts with, and issue 10's promises kept honest.

Three kinds of test: hostile raw dirs generated from a seed (every class of bad input the issue
found); SIGKILL at named and at random moments of real runs (and of a repair), each compared
with the uninterrupted run; and each damage to processed/ followed by `check`, `run` and a
reader. Bounded to about 20 s: small corpora, and the killed runs' interpreters start side by
side. The long version is bench/soak.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from pipeline import bloom as bloom_file
from pipeline.check import CRASH_POINT, check_processed, quick_repair
from pipeline.ingest import CRASH_ENV, IngestSettings, run_ingest
from pipeline.records import RECORDS_DIR, iter_record_lines, read_records
from pipeline.state import LOCK_FILE, connect
from tests.conftest import ROOT, SEED_FILES, make_raw
from tests.hostile import MAX_FILE_BYTES, append_half, deny_reading, make_hostile_raw, truncate, words, zero_bloom
from tests.test_reliability import cli, one_line_error, parts_in_three_runs, stable

SETTINGS = IngestSettings(max_file_bytes=MAX_FILE_BYTES)
SCHEMA = json.loads((ROOT / "schema" / "record.schema.json").read_text(encoding="utf-8"))
CRASH_POINTS = ["before-commit", "parts-written", "committed", "parts-renamed"]
KILL_SEED = 10


def key(path: str, item: int | None) -> str:
    return path if item is None else f"{path}#{item}"


def outcome(processed: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The records (without run ids and times) and the quarantine list, path -> reason."""
    rows = [json.loads(line) for line in (processed / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    return stable(list(read_records(processed))), {key(r["path"], r["item"]): r["reason"] for r in rows}


def part_lines(processed: Path) -> list[str]:
    return sorted(line for part in (processed / RECORDS_DIR).glob("part-*.jsonl")
                  for line in part.read_text(encoding="utf-8").splitlines())


def assert_consistent(processed: Path) -> None:
    assert [str(f) for f in check_processed(processed)] == []
    assert part_lines(processed) == sorted(iter_record_lines(processed))


def library_flow(unreadable: set[str] = frozenset()) -> Callable[..., dict[str, Any]]:  # type: ignore[assignment]
    """Stands in for the Prefect flow under `newsdedup run`: the same library run, no Prefect."""
    def ingest(raw_dir: str, processed_dir: str, **_: Any) -> dict[str, Any]:
        return run_ingest(Path(raw_dir), Path(processed_dir), SETTINGS).as_dict()
    return ingest


# --- hostile inputs, generated from a seed -------------------------------------------------------


@pytest.mark.parametrize("seed", [3, 17])
def test_hostile_inputs_from_a_seed_give_a_record_a_quarantine_entry_or_nothing(tmp_path: Path, seed: int) -> None:
    raw = tmp_path / "raw"
    expected = make_hostile_raw(raw, seed)
    processed = tmp_path / "processed"
    with deny_reading(raw, expected.unreadable_dirs):
        run_ingest(raw, processed, SETTINGS)
        records = {key(r["source"]["path"], r["source"].get("item")): r for r in read_records(processed)}
        _, quarantined = outcome(processed)
        assert set(records) == set(expected.records)
        assert set(quarantined) == expected.quarantined  # hidden names: neither, on purpose
        validator = jsonschema.Draft202012Validator(SCHEMA)
        for name, record in records.items():
            validator.validate(record)
            texts = [p["text"] for p in record["paragraphs"]]
            assert words(" ".join(texts)) == words(expected.records[name]), name  # decoded as written
            assert not any(unicodedata.category(ch) == "Cc" for text in texts for ch in text), name
        assert all(reason.strip() and "\n" not in reason for reason in quarantined.values())
        assert_consistent(processed)
        again = run_ingest(raw, processed, SETTINGS)
    assert (again.records_written, again.files_quarantined, again.items_quarantined) == (0, 0, 0)


# --- SIGKILL at random points of real runs -------------------------------------------------------


@dataclass
class Arrivals:
    raw: Path
    after_first: Path  # state after the first arrival, copied by each killed run
    reference: Path  # after both arrivals, uninterrupted
    unreadable: set[str]
    seconds: float  # how long the uninterrupted second run took


@pytest.fixture(scope="module")
def arrivals(tmp_path_factory: pytest.TempPathFactory) -> Arrivals:
    base = tmp_path_factory.mktemp("arrivals")
    raw = make_raw(base, *SEED_FILES[:3])
    unreadable = set(make_hostile_raw(raw, KILL_SEED, good=6).unreadable_dirs)
    reference = base / "reference"
    with deny_reading(raw, unreadable):
        run_ingest(raw, reference, SETTINGS)
    after_first = base / "after-first"
    shutil.copytree(reference, after_first)
    make_raw(base, *SEED_FILES[3:])  # published earlier than the first arrival's undated articles
    unreadable |= {f"later/{d}" for d in make_hostile_raw(raw / "later", KILL_SEED + 1, good=6).unreadable_dirs}
    started = time.perf_counter()
    with deny_reading(raw, unreadable):
        run_ingest(raw, reference, SETTINGS)
    return Arrivals(raw, after_first, reference, unreadable, time.perf_counter() - started)


# Imports and warms up once (a whole second-arrival run on a scratch copy, which also times it),
# then forks one run per request: each killed run costs only its own work.
_FORKER = """
import json, os, shutil, sys, time
from pathlib import Path
from pipeline.ingest import CRASH_ENV, IngestSettings, run_ingest
from tests.hostile import MAX_FILE_BYTES, deny_reading
raw, after_first, scratch = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
settings = IngestSettings(max_file_bytes=MAX_FILE_BYTES)
with deny_reading(raw, set(json.loads(sys.argv[4]))):
    shutil.copytree(after_first, scratch)
    started = time.perf_counter()
    run_ingest(raw, scratch, settings)
    print(time.perf_counter() - started, flush=True)
    for line in sys.stdin:
        processed, point = line.split()
        pid = os.fork()
        if pid == 0:
            os.environ.pop(CRASH_ENV, None)
            if point != "-":
                os.environ[CRASH_ENV] = point
            run_ingest(raw, Path(processed), settings)
            os._exit(0)
        print(pid, flush=True)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def test_sigkill_at_named_and_random_points_of_real_runs_ends_as_the_uninterrupted_run(
        tmp_path: Path, arrivals: Arrivals, capsys: pytest.CaptureFixture[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    forker = subprocess.Popen([sys.executable, "-c", _FORKER, str(arrivals.raw), str(arrivals.after_first),
                               str(tmp_path / "scratch"), json.dumps(sorted(arrivals.unreadable))],
                              cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert forker.stdout is not None and forker.stdin is not None
    try:
        forker.stdout.readline()  # warmed up
        rng = random.Random(KILL_SEED)
        # First an uninterrupted run (it times a forked run), then the crash points, then random moments.
        cases: list[tuple[str, float | None]] = [("-", None)] + [(point, None) for point in CRASH_POINTS]
        cases += [("-", rng.random()) for _ in range(4)]  # a share of the uninterrupted run's time
        reference = outcome(arrivals.reference)
        run_seconds = 0.0
        for number, (point, share) in enumerate(cases):
            processed = tmp_path / f"killed-{number}"
            shutil.copytree(arrivals.after_first, processed)
            started = time.perf_counter()
            forker.stdin.write(f"{processed} {point}\n")
            forker.stdin.flush()
            pid = int(forker.stdout.readline())
            if share is not None:
                time.sleep(share * run_seconds)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # finished before its moment: an uninterrupted run, also fine
            code = int(forker.stdout.readline())
            if number == 0:
                run_seconds = time.perf_counter() - started
                assert code == 0
            assert code in ((-signal.SIGKILL,) if point != "-" else (0, -signal.SIGKILL)), (point, code)
            check_processed(processed)  # whatever the kill left, the check reports it without failing
            with deny_reading(arrivals.raw, arrivals.unreadable):
                done = cli("run", "--raw-dir", str(arrivals.raw), "--processed-dir", str(processed), capsys=capsys,
                           flow=library_flow())
            assert done.returncode == 0, (point, share, done.stderr)
            assert outcome(processed) == reference, (point, share)
            assert_consistent(processed)
    finally:
        forker.stdin.close()
        forker.wait(timeout=60)


def test_a_repair_killed_midway_leaves_each_file_old_or_new_and_the_next_run_finishes_it(
        tmp_path: Path, arrivals: Arrivals, capsys: pytest.CaptureFixture[str]) -> None:
    processed = tmp_path / "processed"
    shutil.copytree(arrivals.reference, processed)
    parts = sorted((processed / RECORDS_DIR).glob("part-*.jsonl"))
    assert len(parts) >= 2
    good = {p.name: sorted(p.read_text(encoding="utf-8").splitlines()) for p in parts}
    damaged = {}
    for part in parts:
        damaged[part.name] = part.read_bytes()[: part.stat().st_size // 2]
        part.write_bytes(damaged[part.name])
    env = dict(os.environ, **{CRASH_ENV: CRASH_POINT})
    killed = subprocess.run([sys.executable, "-m", "flows.cli", "check", "--repair", str(processed)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rewritten = []
    for part in parts:  # each part is its old bytes or whole new ones, never half-written
        data = part.read_bytes()
        if data != damaged[part.name]:
            assert data.endswith(b"\n") and sorted(data.decode().splitlines()) == good[part.name]
            rewritten.append(part.name)
    assert len(rewritten) == 1  # killed after its first rewritten file
    still = cli("check", str(processed), capsys=capsys)
    assert still.returncode == 1 and len(still.stdout.splitlines()) == len(parts) - 1
    with deny_reading(arrivals.raw, arrivals.unreadable):
        done = cli("run", "--raw-dir", str(arrivals.raw), "--processed-dir", str(processed), capsys=capsys)
    assert done.returncode == 0 and "repaired before the run" in done.stderr
    assert_consistent(processed)


# --- each damage, then `check`, `run` and a reader ---------------------------------------------------


@pytest.fixture(scope="module")
def three_parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    raw, processed = parts_in_three_runs(tmp_path_factory.mktemp("three-parts"))
    assert len(list((processed / RECORDS_DIR).glob("part-*.jsonl"))) == 3
    return raw, processed


def _part(processed: Path, seq: int) -> Path:
    return processed / RECORDS_DIR / f"part-{seq:08d}.jsonl"


def _item_9(processed: Path) -> None:
    truncate(_part(processed, 1))
    _part(processed, 2).unlink()
    append_half(_part(processed, 3))


def _symlinked_part(processed: Path) -> None:
    _part(processed, 2).unlink()
    os.symlink(_part(processed, 1), _part(processed, 2))


def _not_in_place(processed: Path) -> None:
    """As a run killed after its commit leaves it: its part committed under the temporary name."""
    part = _part(processed, 3)
    os.replace(part, part.with_name(".tmp-" + part.name))
    conn = sqlite3.connect(processed / "state.sqlite")
    conn.execute("UPDATE parts SET pending = 1 WHERE name = ?", (part.name,))
    conn.commit()
    conn.close()


def _overwrite_pages(processed: Path) -> None:
    db = processed / "state.sqlite"
    data = db.read_bytes()
    db.write_bytes(data[:4096] + bytes([0xA5]) * (len(data) - 8192) + data[-4096:])


def _no_tables(processed: Path) -> None:
    """As a first run killed before it created its tables leaves the database."""
    (processed / "state.sqlite").unlink()
    conn = sqlite3.connect(processed / "state.sqlite")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda processed: (processed / name).write_bytes(data)


# name: (damage, exit code of `check`, of `run`, a file `check` names (None: nothing wrong))
DAMAGES: dict[str, tuple[Callable[[Path], None], int, int, str | None]] = {
    "part truncated mid-line": (lambda p: truncate(_part(p, 1)), 1, 0, "part-00000001.jsonl"),
    "part deleted": (lambda p: _part(p, 2).unlink(), 1, 0, "part-00000002.jsonl"),
    "half a record appended": (lambda p: append_half(_part(p, 3)), 1, 0, "part-00000003.jsonl"),
    "all three (item 9)": (_item_9, 1, 0, "part-00000002.jsonl"),
    "part replaced by a symlink": (_symlinked_part, 1, 0, "part-00000002.jsonl"),
    "stray part file": (lambda p: shutil.copy(_part(p, 1), _part(p, 9)), 1, 0, "part-00000009.jsonl"),
    "records dir deleted": (lambda p: shutil.rmtree(p / RECORDS_DIR), 1, 0, "part-00000001.jsonl"),
    "parts of a run killed after its commit": (_not_in_place, 1, 0, "part-00000003.jsonl"),
    "Bloom filter bits zeroed": (zero_bloom, 1, 0, "index.bloom"),
    "Bloom filter deleted": (lambda p: (p / bloom_file.BLOOM_FILE).unlink(), 1, 0, "index.bloom"),
    "Bloom filter truncated": (lambda p: truncate(p / bloom_file.BLOOM_FILE), 1, 0, "index.bloom"),
    "quarantine list garbage": (_write("quarantine.jsonl", b"\x00garbage\n"), 1, 0, "quarantine.jsonl"),
    "last_run.json deleted": (lambda p: (p / "last_run.json").unlink(), 1, 0, "last_run.json"),
    "last_run.md of an earlier run": (_write("last_run.md", b"# newsdedup ingest run `x` (#1): completed\n"), 1, 0,
                                      "last_run.md"),
    "garbage in the lock file": (_write(LOCK_FILE, b"\xff\x00 pid 99999999 since never"), 0, 0, None),
    "garbage in the WAL": (_write("state.sqlite-wal", bytes(range(256)) * 64), 0, 0, None),
    "state database truncated": (lambda p: truncate(p / "state.sqlite"), 2, 2, "state database"),
    "state database pages overwritten": (_overwrite_pages, 2, 2, "state database"),
    "state database deleted": (lambda p: (p / "state.sqlite").unlink(), 2, 0, "no newsdedup state"),
    "state database without tables": (_no_tables, 2, 0, "no run has committed"),
    "lock replaced by a directory": (lambda p: (p / LOCK_FILE).mkdir(), 2, 2, "not the regular lock file"),
    "lock replaced by a symlink": (lambda p: os.symlink(p / "last_run.md", p / LOCK_FILE), 2, 2,
                                   "not the regular lock file"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_each_damage_then_check_run_and_a_reader(tmp_path: Path, damage: str, three_parts: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    raw, seeded = three_parts
    processed = tmp_path / "processed"
    shutil.copytree(seeded, processed)
    expected_records = sorted(iter_record_lines(seeded))
    if damage.startswith("lock replaced"):
        (processed / LOCK_FILE).unlink()
    report = (processed / "last_run.md").read_bytes()
    apply, check_code, run_code, named = DAMAGES[damage]
    apply(processed)

    checked = cli("check", str(processed), capsys=capsys)
    assert checked.returncode == check_code, (checked.stdout, checked.stderr)
    if check_code == 1:
        assert named is not None and named in checked.stdout and "Traceback" not in checked.stderr
        assert all(": " in line for line in checked.stdout.splitlines())  # one line per problem: file: what
    elif check_code == 2:
        assert named is not None and named in one_line_error(checked)
    else:
        assert "is consistent" in checked.stdout

    ran = cli("run", "--raw-dir", str(raw), "--processed-dir", str(processed), capsys=capsys, flow=library_flow())
    assert ran.returncode == run_code, ran.stderr
    if run_code == 2:
        one_line_error(ran)
        if damage.startswith("lock"):  # the reader needs no lock: every record, as before
            assert (processed / "last_run.md").read_bytes() == report  # nothing written through the symlink
            assert cli("records", str(processed), capsys=capsys).stdout.splitlines() == list(
                iter_record_lines(seeded))
        else:
            assert cli("records", str(processed), capsys=capsys).returncode == 2
        return
    if check_code == 1:
        assert "repaired before the run" in ran.stderr and named in ran.stderr
    read = cli("records", str(processed), capsys=capsys)
    assert read.returncode == 0
    assert stable([json.loads(line) for line in read.stdout.splitlines()]) == stable(
        [json.loads(line) for line in expected_records])
    assert part_lines(processed) == sorted(read.stdout.splitlines())
    assert cli("check", str(processed), capsys=capsys).returncode == 0


def test_check_repair_rewrites_what_is_wrong_and_reports_each_thing_once(
        tmp_path: Path, three_parts: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    processed = tmp_path / "processed"
    shutil.copytree(three_parts[1], processed)
    _item_9(processed)
    zero_bloom(processed)
    (processed / "quarantine.jsonl").write_text("[")
    repaired = cli("check", "--repair", "--processed-dir", str(processed), capsys=capsys)
    assert repaired.returncode == 0, repaired.stdout
    lines = repaired.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "records/part-00000001.jsonl", "records/part-00000002.jsonl", "records/part-00000003.jsonl",
        "index.bloom", "quarantine.jsonl"]
    assert all(" -> " in line for line in lines)
    assert cli("check", str(processed), capsys=capsys).stdout.startswith("newsdedup: ")
    assert_consistent(processed)


def test_the_cheap_check_reads_only_files_whose_stat_moved(tmp_path: Path, three_parts: tuple[Path, Path]) -> None:
    processed = tmp_path / "processed"
    shutil.copytree(three_parts[1], processed, copy_function=shutil.copy2)  # mtimes kept: still trusted
    part = _part(processed, 2)
    stat = part.stat()
    data = bytearray(part.read_bytes())
    data[10:14] = b"XXXX"  # same size, mtime put back: passes the cheap check (by design)...
    part.write_bytes(bytes(data))
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    conn = connect(processed)
    try:
        assert quick_repair(conn, processed) == []
        os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # ...a moved mtime makes it read
        assert [f.name for f in quick_repair(conn, processed)] == ["records/part-00000002.jsonl"]
    finally:
        conn.close()
    assert_consistent(processed)


def test_a_check_waits_for_or_refuses_a_run_holding_the_lock(
        tmp_path: Path, three_parts: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.lock import writer_lock

    processed = tmp_path / "processed"
    shutil.copytree(three_parts[1], processed)
    with writer_lock(processed):
        done = subprocess.run([sys.executable, "-m", "flows.cli", "check", str(processed)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "another newsdedup run" in one_line_error(done)


def test_a_bloom_filter_left_by_a_run_killed_after_its_commit_is_installed_not_rebuilt(
        tmp_path: Path, three_parts: tuple[Path, Path]) -> None:
    processed = tmp_path / "processed"
    shutil.copytree(three_parts[1], processed)
    path = processed / bloom_file.BLOOM_FILE
    os.replace(path, processed / f".tmp-{bloom_file.BLOOM_FILE}")
    conn = connect(processed)
    try:
        found = quick_repair(conn, processed)
    finally:
        conn.close()
    assert [(f.name, f.action) for f in found] == [("index.bloom", "replaced by the filter the last run saved")]
    loaded = bloom_file.BloomFilter.load(processed)
    assert loaded is not None and np.count_nonzero(loaded.array)
