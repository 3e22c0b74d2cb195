"""Benchmark: does a run cost what is new, not what the archive holds?

Generates a corpus on the fly (nothing large is committed), builds an index of
``--paragraphs`` paragraphs (default 1M) in several runs, then times one run that adds
``--new-articles`` articles (default 1,000) against that index and against an empty one.
Each measured run is a fresh process, so its peak memory (max RSS) is its own.

    python bench/incremental.py                      # the full 1M-paragraph figure
    python bench/incremental.py --paragraphs 100000  # a quicker look
    python bench/incremental.py --state-url postgresql://user@host:5432/bench   # the state in PostgreSQL

With a PostgreSQL URL (of an existing database, used to create the others) the index, the
empty state and each measured copy are databases of that server named after it (``bench_big``,
``bench_empty``, ``bench_measure``: the user needs CREATE DATABASE); a measured copy is
``CREATE DATABASE … TEMPLATE`` of the index.

Prints both timings, their ratio (target <= 1.5) and peak memory (target <= 1 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAGRAPHS_PER_ARTICLE = 20
ARTICLES_PER_FILE = 1000
BOILERPLATE = [
    "The conflict between the two countries began in 1988 when territorial claims were made against the neighbour "
    "and the ensuing war left a fifth of the territory occupied including the region and seven districts around it.",
    "The ceasefire agreement of 1994 was followed by peace negotiations that have not produced a settlement and four "
    "resolutions of the security council on the withdrawal of armed forces have not been implemented to this day.",
    "Subscribe to our newsletter to receive the most important stories of the day in your inbox every morning, "
    "together with analysis from our correspondents in the region and around the world.",
]


class Corpus:
    """Deterministic synthetic news: distinct paragraphs plus lightly edited boilerplate."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        syllables = ["ka", "ro", "mi", "ta", "ne", "lu", "sa", "vo", "de", "ri", "po", "zu", "ha", "be", "gi", "lo"]
        self.words = list({"".join(self.rng.choices(syllables, k=self.rng.randint(2, 4))) for _ in range(40000)})

    def paragraph(self) -> str:
        n = self.rng.randint(30, 70)
        return " ".join(self.rng.choices(self.words, k=n)).capitalize() + "."

    def boilerplate(self) -> str:
        words = self.rng.choice(BOILERPLATE).split()
        if self.rng.random() < 0.5:  # a light edit: one word changed
            words[self.rng.randrange(len(words))] = self.rng.choice(self.words)
        return " ".join(words)

    def article(self, day: int) -> dict[str, str]:
        paragraphs = [self.paragraph() for _ in range(PARAGRAPHS_PER_ARTICLE - 2)]
        paragraphs += [self.boilerplate() for _ in range(2)]
        published = f"{2000 + day // 336:04d}-{day // 28 % 12 + 1:02d}-{day % 28 + 1:02d}"  # valid dates
        return {"title": self.paragraph()[:60], "published": published, "text": "\n\n".join(paragraphs)}


def build_base(raw: Path, processed: Path, paragraphs: int, run_every_files: int) -> float:
    """Write the base corpus as JSONL files and ingest it in several runs."""
    sys.path.insert(0, str(ROOT))
    from pipeline.ingest import run_ingest

    corpus = Corpus(seed=1)
    articles = paragraphs // PARAGRAPHS_PER_ARTICLE
    files = (articles + ARTICLES_PER_FILE - 1) // ARTICLES_PER_FILE
    started = time.perf_counter()
    for f in range(files):
        count = min(ARTICLES_PER_FILE, articles - f * ARTICLES_PER_FILE)
        day0 = f * 3
        with open(raw / f"base-{f:05d}.jsonl", "w") as fh:
            for i in range(count):
                fh.write(json.dumps(corpus.article(day0 + i * 3 // count)) + "\n")
        if (f + 1) % run_every_files == 0 or f == files - 1:
            summary = run_ingest(raw, processed)
            while summary.files_deferred:  # more than one run's bound (max_run_bytes) was written
                summary = run_ingest(raw, processed)
            print(f"  base run: {f + 1}/{files} files, {summary.paragraphs} paragraphs, "
                  f"{time.perf_counter() - started:.0f} s so far", flush=True)
    return time.perf_counter() - started


def write_new_articles(raw: Path, count: int) -> None:
    corpus = Corpus(seed=2)
    for i in range(count):
        article = corpus.article(day=100000)  # published after the whole base corpus
        text = f" date {article['published']} {article['title']}\n\n{article['text']}\n"
        (raw / f"new-{i:05d}.txt").write_text(text)


_MEASURE = """
import json, sys, time
from pipeline.ingest import run_ingest
t0 = time.perf_counter()
s = run_ingest(sys.argv[1], sys.argv[2])
elapsed = time.perf_counter() - t0
# VmHWM is this process's own peak (ru_maxrss can report the parent's peak after fork+exec).
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": elapsed, "max_rss_mb": hwm_kb / 1024, "records": s.records_written,
                  "repeats": s.repeats_flagged, "timings": s.timings}))
"""


class States:
    """Where the index, the empty state and a measured copy keep their state: the SQLite file
    under each processed dir, or one PostgreSQL database each."""

    def __init__(self, state_url: str | None) -> None:
        self.server = state_url if state_url and state_url.startswith(("postgresql://", "postgres://")) else None

    def url(self, kind: str) -> str | None:
        if self.server is None:
            return None
        base, name = self.server.rsplit("/", 1)
        return f"{base}/{name.split('?')[0]}_{kind}"

    def use(self, kind: str) -> None:
        """This process's state for ``kind`` (the measured runs get it through their environment)."""
        sys.path.insert(0, str(ROOT))
        from pipeline.state_backend import STATE_URL_ENV

        url = self.url(kind)
        if url is None:
            os.environ.pop(STATE_URL_ENV, None)
        else:
            os.environ[STATE_URL_ENV] = url

    def _admin(self, sql: str) -> None:
        import psycopg

        assert self.server is not None
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def reset(self, kind: str, template: str | None = None) -> None:
        """An empty state for ``kind`` (or a copy of ``template``'s)."""
        if self.server is None:
            return
        name = self.url(kind).rsplit("/", 1)[1]  # type: ignore[union-attr]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        copy = f' TEMPLATE "{self.url(template).rsplit("/", 1)[1]}"' if template else ""  # type: ignore[union-attr]
        self._admin(f'CREATE DATABASE "{name}"{copy}')

    def exists(self, kind: str, processed: Path) -> bool:
        if self.server is None:
            return (processed / "state.sqlite").exists()
        import psycopg

        try:
            with psycopg.connect(self.url(kind)) as conn:  # type: ignore[arg-type]
                return bool(conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()[0])  # type: ignore[index]
        except psycopg.OperationalError:
            return False

    def size_mb(self, kind: str, processed: Path) -> float:
        if self.server is None:
            return (processed / "state.sqlite").stat().st_size / 1e6
        import psycopg

        with psycopg.connect(self.url(kind)) as conn:  # type: ignore[arg-type]
            return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6  # type: ignore[index]


def measured_run(raw: Path, processed: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(raw), str(processed)], cwd=ROOT, check=True,
                         capture_output=True, text=True)  # the state URL from the environment (States.use)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=1_000_000, help="size of the existing index")
    parser.add_argument("--new-articles", type=int, default=1000)
    parser.add_argument("--run-every-files", type=int, default=5, help="base JSONL files per build run")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpus and state here")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs of each kind; medians are shown")
    parser.add_argument("--state-url", default=None,
                        help="postgresql://user@host:port/NAME: keep the states in databases NAME_big, NAME_empty, "
                             "NAME_measure of that server (default: SQLite files under the work dir)")
    args = parser.parse_args()
    states = States(args.state_url)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="newsdedup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    big_raw, big_processed = work / "big" / "raw", work / "big" / "processed"
    empty_raw, empty_processed = work / "empty" / "raw", work / "empty" / "processed"
    for d in (big_raw, empty_raw):
        d.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(empty_processed, ignore_errors=True)

    print(f"building an index of {args.paragraphs:,} paragraphs in {work} "
          f"(state: {'PostgreSQL' if states.server else 'SQLite'}) ...", flush=True)
    states.use("big")
    if not states.exists("big", big_processed):
        shutil.rmtree(big_processed, ignore_errors=True)
        states.reset("big")
        build_seconds = build_base(big_raw, big_processed, args.paragraphs, args.run_every_files)
        print(f"built in {build_seconds:.0f} s")
    # A run with nothing new: brings an index built by an older version up to date (its
    # Bloom filter), so that the measured run pays only for its own work.
    sys.path.insert(0, str(ROOT))
    from pipeline.ingest import run_ingest

    run_ingest(big_raw, big_processed)
    db_mb = states.size_mb("big", big_processed)

    write_new_articles(empty_raw, args.new_articles)
    empties, bigs = [], []
    for _ in range(args.repeat):  # alternate, so machine noise hits both kinds alike
        shutil.rmtree(empty_processed, ignore_errors=True)
        states.reset("empty")
        states.use("empty")
        os.sync()  # start each measured run with no dirty pages of earlier work to write back
        empties.append(measured_run(empty_raw, empty_processed))
        # Measure on a copy, so the base index can be reused (and by the next invocation).
        measure_raw, measure_processed = work / "measure" / "raw", work / "measure" / "processed"
        shutil.rmtree(work / "measure", ignore_errors=True)
        measure_raw.mkdir(parents=True)
        for base_file in big_raw.iterdir():
            os.link(base_file, measure_raw / base_file.name)  # the scan sees the whole archive, unchanged
        shutil.copytree(big_processed, measure_processed)
        states.reset("measure", template="big")
        states.use("measure")
        write_new_articles(measure_raw, args.new_articles)
        os.sync()  # the 2 GB copy above must not be written back during the measured run
        bigs.append(measured_run(measure_raw, measure_processed))
    empty = sorted(empties, key=lambda r: r["seconds"])[len(empties) // 2]
    big = sorted(bigs, key=lambda r: r["seconds"])[len(bigs) // 2]
    empty["max_rss_mb"] = max(r["max_rss_mb"] for r in empties)
    big["max_rss_mb"] = max(r["max_rss_mb"] for r in bigs)
    print("  all runs (s): empty " + ", ".join(f"{r['seconds']:.2f}" for r in empties)
          + "; big " + ", ".join(f"{r['seconds']:.2f}" for r in bigs))
    ratio = big["seconds"] / empty["seconds"]
    print()
    print(f"run adding {args.new_articles:,} articles "
          f"({args.new_articles * PARAGRAPHS_PER_ARTICLE:,} paragraphs, median of {args.repeat})")
    print(f"  against an empty index:            {empty['seconds']:8.2f} s   peak RSS {empty['max_rss_mb']:7.0f} MB"
          f"   {empty['timings']}")
    print(f"  against {args.paragraphs:>9,} paragraphs:      {big['seconds']:8.2f} s   "
          f"peak RSS {big['max_rss_mb']:7.0f} MB   {big['timings']}")
    print(f"  ratio: {ratio:.2f} (target <= 1.5)   peak memory: {max(empty['max_rss_mb'], big['max_rss_mb']):.0f} MB "
          f"(target <= 1024)   state database: {db_mb:.0f} MB ({'PostgreSQL' if states.server else 'SQLite'})")
    print(f"  repeats flagged: empty {empty['repeats']}, big {big['repeats']}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
