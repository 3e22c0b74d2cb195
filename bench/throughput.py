"""Benchmark: newsdedup end to end against the datasketch script a user would write (issue 12).

Generates a corpus with ``/work/shared/tools/gencorpus.py`` (its truth.jsonl is moved out of
the raw dir), then times, alternating in one run (a, b, c per round), each as its own
process as a user would start it:

- (a) ``bench/datasketch_bulk.py RAW``: ``MinHash.bulk`` + ``MinHashLSH``, exact Jaccard;
- (b) ``bench/datasketch_update.py RAW``: the same with ``update()`` per shingle (slow;
  ``--skip-update`` leaves it out);
- (c) ``newsdedup run --raw-dir RAW --processed-dir FRESH`` (as many runs as the backlog takes) with a fresh
  ``PREFECT_HOME`` (embedded Prefect server, as a first-time user gets it; with
  ``--warm-prefect-home`` one home migrated beforehand, as on a user's later runs);
- (pN) the same with ``--processes N`` (``--processes 0``: preparation in the run's own
  process only; by default worker processes prepare beside it);
- (dN) the same with ``--dask-workers N``: a Dask LocalCluster of N worker processes prepares
  the batches (``--dask-workers 2`` by default; ``--dask-workers 1,2,4`` for a scaling table,
  ``--dask-workers 0`` adds in-process preparation forced, whatever the default chooses).

For each: wall seconds; CPU seconds (user + sys of this process's children, so every worker
is counted: this process makes itself the child subreaper, orphaned grandchildren such as
a forkserver are reaped here too); paragraphs/s and MB/s of raw bytes over the wall time;
the largest process's own peak RSS (``ru_maxrss`` from ``wait4``); and the peak of the whole
process tree's RSS, sampled every 0.2 s from /proc (a sum of RSS: pages shared between
forked workers count once per process, so it is an upper bound). Then the ratios c/a and
c/b in paragraphs/s, and newsdedup's own stage timings from ``<processed>/last_run.json``
with a timeline of its log (Prefect start-up, tasks, hand-offs). MB and GB are 10^6 and 10^9
bytes. The machine is shared: each row shows the load average just before it started.

    .venv/bin/python bench/throughput.py --articles 2000
    .venv/bin/python bench/throughput.py --articles 10000 --skip-update --keep /tmp/corpus10k
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GENCORPUS = Path("/work/shared/tools/gencorpus.py")
SAMPLE_SECONDS = 0.2
REAP_GRACE_SECONDS = 60.0  # how long leftover grandchildren get to exit after the command itself
PR_SET_CHILD_SUBREAPER = 36
BLANK_LINE = re.compile(r"\n\s*\n")
PAGE = os.sysconf("SC_PAGE_SIZE")
PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def run_summaries(processed: Path) -> list[dict[str, Any]]:
    """Every run's summary, in order, from the state database (a backlog takes several runs)."""
    import sqlite3

    path = processed / "state.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in conn.execute("SELECT summary FROM runs ORDER BY seq") if row[0]]
    finally:
        conn.close()


@dataclass
class Measured:
    name: str
    round: int
    wall: float
    cpu: float
    max_rss: int  # bytes, largest single process (ru_maxrss)
    tree_rss: int  # bytes, peak sum over the process tree (sampled)
    returncode: int
    processes: int  # distinct processes seen in the tree
    started: float  # epoch seconds at launch
    load: float  # 1-minute load average just before launch (this machine is shared)
    output: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)


def set_subreaper() -> bool:
    """Orphaned descendants (a forkserver outliving its parent) are re-parented to us, so we reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, rss bytes) for every process readable in /proc."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2 :].split()
        table[int(entry.name)] = (int(rest[1]), int(rest[21]) * PAGE)
    return table


def descendants(table: dict[int, tuple[int, int]], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def measure(name: str, round_no: int, cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> Measured:
    """Run ``cmd`` as a child; wall, children's CPU, largest ru_maxrss, sampled tree RSS."""
    me = os.getpid()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seen: set[int] = set()
    tree_peak = 0
    max_rss = 0
    load = os.getloadavg()[0]
    with open(log, "wb") as out:
        started = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        status = None
        while status is None:
            pid, st, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = st
                max_rss = max(max_rss, usage.ru_maxrss * 1024)
                break
            table = process_table()
            tree = descendants(table, me)
            seen.update(tree)
            tree_peak = max(tree_peak, sum(table[p][1] for p in tree if p in table))
            time.sleep(SAMPLE_SECONDS)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
        # Orphaned grandchildren (re-parented to us as subreaper): let them finish, reap them.
        deadline = time.monotonic() + REAP_GRACE_SECONDS
        while True:
            try:
                pid, _, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                max_rss = max(max_rss, usage.ru_maxrss * 1024)
                continue
            if time.monotonic() > deadline:
                for left in descendants(process_table(), me):
                    print(f"  {name}: pid {left} still running after {REAP_GRACE_SECONDS:.0f} s, terminating it")
                    os.kill(left, signal.SIGTERM)
                deadline = time.monotonic() + REAP_GRACE_SECONDS
            time.sleep(0.05)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output: dict[str, Any] = {}
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                output = json.loads(line)
            except ValueError:
                continue
            break
    return Measured(name, round_no, wall, cpu, max_rss, max(tree_peak, max_rss), proc.returncode,
                    len(seen), started, load, output)


LOG_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) \| (\w+) +\| (.*)$")
KEY_EVENTS = ("Starting temporary server", "Beginning flow run", "Finished in state", "Stopping temporary server",
              "plan:", "prepare:", "commit:", "report:")


def timeline(log: Path, started: float, wall: float) -> list[tuple[float, str]]:
    """Prefect's log lines (local HH:MM:SS.mmm) as seconds since launch: where the wall time went."""
    day = datetime.fromtimestamp(started).replace(hour=0, minute=0, second=0, microsecond=0)
    events = [(0.0, "launched")]
    for line in log.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match or not any(k in match.group(5) for k in KEY_EVENTS):
            continue
        h, m, sec = int(match.group(1)), int(match.group(2)), float(match.group(3))
        at = (day + timedelta(hours=h, minutes=m, seconds=sec)).timestamp()
        if at < started - 3600:  # past midnight
            at += 86400
        events.append((at - started, match.group(5)))
    events.append((wall, "exited"))
    return events


def generate(out: Path, articles: int, seed: int) -> Path:
    """The corpus in out/raw (truth.jsonl moved to out/); reused when out/corpus.json matches."""
    raw = out / "raw"
    wanted = {"articles": articles, "seed": seed}
    stamp = out / "corpus.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("args") == wanted and raw.is_dir():
        print(f"reusing corpus in {raw}")
        return raw
    shutil.rmtree(raw, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, str(GENCORPUS), "--articles", str(articles), "--seed", str(seed),
                             "--out", str(raw)], check=True, capture_output=True, text=True)
    shutil.move(str(raw / "truth.jsonl"), str(out / "truth.jsonl"))
    lines = [x for x in (result.stdout + result.stderr).splitlines() if x.startswith("{")]
    info = json.loads(lines[-1]) if lines else {}
    stamp.write_text(json.dumps({"args": wanted, "gencorpus": info}) + "\n")
    print(f"generated {articles} articles in {time.perf_counter() - t0:.1f} s: {raw}")
    return raw


def corpus_size(raw: Path) -> tuple[int, int, int]:
    """(files, paragraphs split on blank lines, bytes): the same paragraphs the baseline scripts count."""
    files = paragraphs = size = 0
    for path in sorted(raw.rglob("*.txt")):
        data = path.read_bytes()
        files += 1
        size += len(data)
        paragraphs += sum(1 for t in BLANK_LINE.split(data.decode("utf-8")) if t.strip())
    return files, paragraphs, size


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                   if x.startswith("MemTotal")) / 2**20
    except (OSError, StopIteration):
        mem = float("nan")
    versions = []
    for pkg in ("datasketch", "prefect", "numpy"):
        try:
            versions.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return (f"{model}, {os.cpu_count()} CPUs, {mem:.0f} GB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, " + ", ".join(versions))


def fmt_bytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


LABELS = {
    "a": "datasketch script, `MinHash.bulk` + `MinHashLSH`",
    "b": "datasketch script, `update()` per shingle",
    "c": "`newsdedup run` (default settings, embedded Prefect)",
}


def label(name: str) -> str:
    if name.startswith("d"):
        return f"`newsdedup run --dask-workers {name[1:]}`"
    if name.startswith("p"):
        return f"`newsdedup run --processes {name[1:]}`"
    return LABELS[name]


def is_newsdedup(name: str) -> bool:
    return name == "c" or name.startswith(("d", "p"))


def report(results: list[Measured], paragraphs: int, size: int) -> None:
    print()
    print("| pipeline | round | wall | CPU | paragraphs/s | MB/s | peak RSS, largest process | "
          "peak RSS, process tree | processes | repeats found | load before |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in results:
        repeats = m.output.get("repeats", "?")
        if is_newsdedup(m.name):
            repeats = f"{m.output.get('repeats_flagged', '?')} (+{m.output.get('spans_flagged', '?')} spans)"
        failed = "" if m.returncode == 0 else f" **exit {m.returncode}**"
        print(f"| {label(m.name)}{failed} | {m.round} | {m.wall:.1f} s | {m.cpu:.1f} s | "
              f"{paragraphs / m.wall:,.0f} | {size / 1e6 / m.wall:.2f} | {fmt_bytes(m.max_rss)} | "
              f"{fmt_bytes(m.tree_rss)} | {m.processes} | {repeats} | {m.load:.1f} |")
    names = list(dict.fromkeys(m.name for m in results))
    walls = {n: [m.wall for m in results if m.name == n] for n in names}
    med = {n: statistics.median(w) for n, w in walls.items() if w}
    print()
    rounds = max(m.round for m in results)
    how = "median wall of" if rounds > 1 else "wall of"
    for ours in (n for n in names if is_newsdedup(n)):
        for base in ("a", "b"):
            if base in med:
                print(f"{ours}/{base} in paragraphs/s ({how} {rounds} round(s)): {med[base] / med[ours]:.2f}x "
                      f"(newsdedup {paragraphs / med[ours]:,.0f}/s, {base} {paragraphs / med[base]:,.0f}/s)")
    for m in results:
        if not is_newsdedup(m.name) or not m.timings:
            continue
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in m.timings.items())
        prepare = m.timings.get("prepare", 0.0)
        rate = f", prepare {paragraphs / prepare:,.0f} paragraphs/s" if prepare else ""
        commit = m.timings.get("commit", 0.0)  # decide, write, index and parts are parts of it
        rate += f", commit (decisions included) {paragraphs / commit:,.0f} paragraphs/s" if commit else ""
        print(f"newsdedup ({m.name}) round {m.round} stage timings (wall, summed over its runs): {stages}{rate}")
        at = {key: next((t for t, what in m.events if key in what), None)
              for key in ("Beginning flow run", "plan:", "prepare:", "commit:")}
        if None not in at.values():
            commit = m.timings.get("commit", 0.0)
            handoff = at["commit:"] - at["prepare:"] - commit
            print(f"  wall by phase (from the log): start-up to flow run (interpreter, imports, Prefect server) "
                  f"{at['Beginning flow run']:.1f} s, plan {at['plan:'] - at['Beginning flow run']:.1f} s, "
                  f"prepare {at['prepare:'] - at['plan:']:.1f} s, commit {commit:.1f} s "
                  f"+ hand-off to it {handoff:.1f} s, after the commit (report, server stop, exit) "
                  f"{m.wall - at['commit:']:.1f} s")
        print("  timeline (s since launch, from its log):")
        batches = [i for i, (_, what) in enumerate(m.events) if what.startswith("Task run 'prepare-batch")]
        shown = [e for i, e in enumerate(m.events) if i not in batches[1:-1]]  # first and last batch only
        previous = 0.0
        for at, what in shown:
            if batches and what.startswith("Task run 'prepare-batch"):
                what = f"{what} (batch {'1' if at == m.events[batches[0]][0] else len(batches)} of {len(batches)})"
            print(f"    {at:7.1f}  (+{at - previous:5.1f})  {what[:110]}")
            previous = at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-update", action="store_true", help="leave out (b), the slow update() script")
    parser.add_argument("--skip-datasketch", action="store_true", help="leave out (a) and (b)")
    parser.add_argument("--dask-workers", default="2", metavar="N[,N...]",
                        help="a (dN) row per worker count: newsdedup run --dask-workers N ('' for none)")
    parser.add_argument("--processes", default="", metavar="N[,N...]",
                        help="a (pN) row per count: newsdedup run --processes N (0: the run's own process only)")
    parser.add_argument("--warm-prefect-home", action="store_true",
                        help="one PREFECT_HOME for every (c) run, migrated by an untimed run first: a user's second "
                             "run, without the first start's database migrations (default: a fresh one per run)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="generate the corpus into DIR and keep it (and the run logs); reused if it matches")
    args = parser.parse_args()

    subreaper = set_subreaper()
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="newsdedup-throughput-"))
    try:
        raw = generate(work, args.articles, args.seed)
        files, paragraphs, size = corpus_size(raw)
        print(f"corpus: {args.articles} articles, {files} files, {paragraphs:,} paragraphs, "
              f"{size / 1e6:.1f} MB (seed {args.seed})")
        print(f"machine: {machine()}")
        if not subreaper:
            print("warning: could not become child subreaper; CPU of orphaned grandchildren may be missed")
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        bin_dir = Path(sys.executable).parent
        newsdedup = bin_dir / "newsdedup" if (bin_dir / "newsdedup").exists() else ROOT / ".venv/bin/newsdedup"
        base_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # embedded server, as a user
        names = ([] if args.skip_datasketch else ["a"] + ([] if args.skip_update else ["b"])) + ["c"]
        names += [f"d{int(n)}" for n in args.dask_workers.split(",") if n.strip()]
        names += [f"p{int(n)}" for n in args.processes.split(",") if n.strip()]
        warm_home = None
        if args.warm_prefect_home:
            warm_home = work / "prefect-home"
            empty = Path(tempfile.mkdtemp(prefix="empty-", dir=work))
            (empty / "raw").mkdir()
            print("warming PREFECT_HOME (untimed): newsdedup run --force on an empty raw dir", flush=True)
            subprocess.run([str(newsdedup), "run", "--raw-dir", str(empty / "raw"), "--processed-dir",
                            str(empty / "processed"), "--once", "--force"], cwd=work, check=False,
                           env=dict(base_env, PREFECT_HOME=str(warm_home), **PREFECT_ENV), capture_output=True)
            shutil.rmtree(empty, ignore_errors=True)
        results: list[Measured] = []
        for round_no in range(1, args.rounds + 1):
            for name in names:
                log = logs / f"{name}-round{round_no}.log"
                if is_newsdedup(name):
                    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
                    processed = run_dir / "processed"
                    home = warm_home or run_dir / "prefect-home"
                    env = dict(base_env, PREFECT_HOME=str(home), **PREFECT_ENV)
                    # No --once: as a user's first load, runs follow one another until the backlog is
                    # read (each run reads at most max_run_bytes, which bounds its memory).
                    cmd = [str(newsdedup), "run", "--raw-dir", str(raw), "--processed-dir", str(processed)]
                    if name.startswith("d"):
                        cmd += ["--dask-workers", name[1:]]
                    elif name.startswith("p"):
                        cmd += ["--processes", name[1:]]
                else:
                    run_dir, env = None, base_env
                    script = "datasketch_bulk.py" if name == "a" else "datasketch_update.py"
                    cmd = [sys.executable, str(ROOT / "bench" / script), str(raw)]
                print(f"round {round_no} ({name}): {' '.join(cmd)}", flush=True)
                m = measure(name, round_no, cmd, env, work, log)
                if run_dir is not None:
                    summaries = run_summaries(processed)
                    if summaries:
                        m.timings = {k: round(sum(x.get("timings", {}).get(k, 0.0) for x in summaries), 3)
                                     for k in summaries[-1].get("timings", {})}
                        m.output = {k: sum(x.get(k) or 0 for x in summaries)
                                    for k in ("paragraphs", "repeats_flagged", "spans_flagged", "duplicates",
                                              "records_written")}
                        m.output["runs"] = len(summaries)
                        m.output["outcome"] = summaries[-1].get("outcome")
                    m.events = timeline(log, m.started, m.wall)
                    shutil.rmtree(run_dir, ignore_errors=True)
                print(f"  {m.wall:.1f} s wall, {m.cpu:.1f} s CPU, exit {m.returncode}, {m.output}", flush=True)
                if m.returncode != 0:
                    print(f"  see {log}" + ("" if args.keep else " (use --keep to keep it)"))
                    print("\n".join("    " + x for x in log.read_text(errors="replace").splitlines()[-15:]))
                results.append(m)
        report(results, paragraphs, size)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
