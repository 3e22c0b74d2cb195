"""Soak (issue 10): hostile arrivals, SIGKILLs at random moments and damage, for as long as asked.

Each round builds a raw dir in several arrivals of generated hostile input (tests/hostile.py:
every class of bad input of issue 10, from the round's seed) with the sample articles spread
over them. A reference processed dir takes the arrivals in uninterrupted runs. The subject takes
each arrival in a forked run that is SIGKILLed at a random moment of it (or not, one time in
four), then suffers a random damage (part truncated, deleted, appended to, replaced by a
symlink, stray part, Bloom filter zeroed or deleted, reports garbled), then runs again as
`newsdedup run` does (the cheap check and repair, then the run). At the end of the round the
subject must hold exactly the reference's records and quarantine, and `check` must find
nothing. Prints the figures; exits 1 if any round differed.

    python bench/soak.py --minutes 10
    python bench/soak.py --measure /path/to/processed [--repeat 20]   # time the checks on a big dir

``--measure`` times the cheap check every run starts with (median of --repeat, after a first
call that notes any file not noted yet) and the full ``newsdedup check``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.check import check_processed, repair_on_start  # noqa: E402
from pipeline.ingest import IngestSettings, run_ingest  # noqa: E402
from pipeline.lock import writer_lock  # noqa: E402
from pipeline.records import RECORDS_DIR, iter_record_lines, read_records  # noqa: E402
from tests.hostile import MAX_FILE_BYTES, deny_reading, make_hostile_raw, random_damage  # noqa: E402

SETTINGS = IngestSettings(max_file_bytes=MAX_FILE_BYTES)
SAMPLES = sorted((ROOT / "raw").glob("*.txt"))


def outcome(processed: Path) -> tuple[list[str], dict[str, str]]:
    records = []
    for record in read_records(processed):
        record.pop("pipeline")
        records.append(json.dumps(record, sort_keys=True))
    rows = [json.loads(line) for line in (processed / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted(records), {f"{r['path']}#{r['item']}": r["reason"] for r in rows}


def consistent(processed: Path) -> list[str]:
    problems = [str(f) for f in check_processed(processed)]
    lines = sorted(line for part in (processed / RECORDS_DIR).glob("part-*.jsonl")
                   for line in part.read_text(encoding="utf-8").splitlines())
    if lines != sorted(iter_record_lines(processed)):
        problems.append("part lines differ from the current records")
    return problems


def killed_run(raw: Path, processed: Path, after_seconds: float | None) -> bool:
    """A forked run, SIGKILLed after ``after_seconds`` (None: left alone); True if the kill landed."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            run_ingest(raw, processed, SETTINGS)
        except BaseException:  # noqa: BLE001  (reported by the exit code; the parent compares outcomes)
            code = 1
        os._exit(code)
    if after_seconds is not None:
        time.sleep(after_seconds)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status not in (0, -signal.SIGKILL):
        raise RuntimeError(f"the forked run failed with exit code {status}")
    return status == -signal.SIGKILL


def soak_round(work: Path, seed: int, figures: dict[str, float]) -> list[str]:
    rng = random.Random(seed)
    raw = work / "raw"
    reference, subject = work / "reference", work / "subject"
    arrivals = rng.randint(2, 4)
    samples = SAMPLES[:]
    rng.shuffle(samples)
    unreadable: set[str] = set()
    problems: list[str] = []
    for number in range(arrivals):
        folder = raw / f"arrival-{number}"
        made = make_hostile_raw(folder, seed * 10 + number, good=rng.randint(4, 12))
        unreadable |= {f"arrival-{number}/{d}" for d in made.unreadable_dirs}
        for sample in samples[number::arrivals]:
            shutil.copy2(sample, folder / sample.name)
        with deny_reading(raw, unreadable):
            started = time.perf_counter()
            run_ingest(raw, reference, SETTINGS)
            seconds = time.perf_counter() - started
            kill_after = None if rng.random() < 0.25 else rng.uniform(0.0, 1.2 * seconds)
            figures["kills landed"] += killed_run(raw, subject, kill_after)
            figures["runs"] += 1
            if (subject / "state.sqlite").exists() and rng.random() < 0.7:
                random_damage(subject, rng)
                figures["damages"] += 1
            started = time.perf_counter()
            with writer_lock(subject):
                figures["repairs at start"] += len(repair_on_start(subject))
            figures["cheap check seconds"] += time.perf_counter() - started
            run_ingest(raw, subject, SETTINGS)
    if outcome(subject) != outcome(reference):
        problems.append(f"seed {seed}: records or quarantine differ from the uninterrupted runs")
    problems += [f"seed {seed}: {p}" for p in consistent(subject)]
    return problems


def soak(minutes: float, seed: int) -> int:
    figures = dict.fromkeys(["rounds", "runs", "kills landed", "damages", "repairs at start",
                             "cheap check seconds"], 0.0)
    problems: list[str] = []
    deadline = time.monotonic() + minutes * 60
    started = time.perf_counter()
    round_seed = seed
    while time.monotonic() < deadline:
        with tempfile.TemporaryDirectory(prefix="newsdedup-soak-") as work:
            found = soak_round(Path(work), round_seed, figures)
        figures["rounds"] += 1
        for line in found:
            print(line, flush=True)
        problems += found
        round_seed += 1
    elapsed = time.perf_counter() - started
    print(f"{int(figures['rounds'])} rounds (seeds {seed}-{round_seed - 1}) in {elapsed:.0f} s: "
          f"{int(figures['runs'])} killable runs, {int(figures['kills landed'])} SIGKILLs landed mid-run, "
          f"{int(figures['damages'])} damages, {int(figures['repairs at start'])} repairs by the check at the start "
          f"of a run (mean {1000 * figures['cheap check seconds'] / max(figures['runs'], 1):.1f} ms each)")
    print(f"rounds that differed from the uninterrupted runs or failed the check: {len(problems)}")
    return 1 if problems else 0


def measure(processed: Path, repeat: int) -> None:
    with writer_lock(processed):
        started = time.perf_counter()
        first = repair_on_start(processed)
        first_seconds = time.perf_counter() - started
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            found = repair_on_start(processed)
            times.append(time.perf_counter() - started)
            assert not found, found
        started = time.perf_counter()
        full = check_processed(processed)
        full_seconds = time.perf_counter() - started
    parts = list((processed / RECORDS_DIR).glob("part-*.jsonl"))
    size = sum(p.stat().st_size for p in parts) / 1e6
    state = (processed / "state.sqlite").stat().st_size / 1e6
    records = sum(1 for _ in iter_record_lines(processed))
    print(f"{processed}: {records:,} records in {len(parts)} parts ({size:.0f} MB), state {state:.0f} MB")
    print(f"  cheap check at the start of a run: median {1000 * statistics.median(times):.1f} ms, "
          f"max {1000 * max(times):.1f} ms ({repeat} runs)")
    print(f"  first cheap check (reads the files no run had noted yet): {first_seconds:.2f} s, {len(first)} repairs")
    print(f"  full check (newsdedup check): {full_seconds:.1f} s, {len(full)} problems")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--measure", type=Path, default=None, metavar="PROCESSED_DIR",
                        help="time the cheap and the full check on this processed dir instead of soaking")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure, args.repeat)
        return
    sys.exit(soak(args.minutes, args.seed))


if __name__ == "__main__":
    main()
