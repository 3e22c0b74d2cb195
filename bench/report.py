"""Benchmark: how long `newsdedup report` takes on a processed dir of 100,000 records.

Builds the processed dir once with the real pipeline (generated articles: 12 outlets, four
years of dates, agency background passages lightly edited, a few syndicated copies; JSON
Lines in raw/, ingested in several runs) and reuses it on later calls, then times the report
over it in a fresh process and prints the time, the phases and the file's size.

    python bench/report.py                                # 100,000 records in /tmp/newsdedup-bench-report
    python bench/report.py --records 5000 --workdir /tmp/small
    python bench/report.py --repeat 3                     # median of three reports

Building 100,000 records takes a while (about 10-20 minutes on 2 shared cores); it is done once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTICLES_PER_FILE = 2000
FILES_PER_RUN = 10
OUTLETS = ["Caspian Wire", "Northline", "Meridian Post", "Vestnik Dnya", "Gundem Haber", "Rhein Kurier",
           "Agence Horizon", "Al Ufuq", "Baku Herald", "Steppe Daily", "Harbour Times", "Valley Courier"]
SYLLABLES = ["ka", "ro", "mi", "ta", "ne", "lu", "sa", "vo", "de", "ri", "po", "zu", "ha", "be", "gi", "lo"]


class Corpus:
    """Deterministic synthetic news: distinct sentences, agency background, syndicated copies."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = sorted({"".join(self.rng.choices(SYLLABLES, k=self.rng.randint(2, 4))) for _ in range(40000)})
        # 60 background passages of two or three sentences; each outlet draws from its own six
        # (its agency's) and from a common pool, so passages spread across outlets.
        self.passages = [[self.sentence() for _ in range(self.rng.randint(2, 3))] for _ in range(60)]
        self.sent: list[dict[str, str]] = []

    def sentence(self) -> str:
        return " ".join(self.rng.choices(self.words, k=self.rng.randint(12, 22))).capitalize() + "."

    def background(self, outlet: int) -> str:
        pool = list(range(outlet * 4, outlet * 4 + 4)) + list(range(48, 60))
        sentences = [s.split() for s in self.passages[self.rng.choice(pool)]]
        if self.rng.random() < 0.4:  # a light edit: one word changed
            words = self.rng.choice(sentences)
            words[self.rng.randrange(len(words))] = self.rng.choice(self.words)
        return " ".join(" ".join(w) for w in sentences)

    def article(self, number: int, total: int) -> dict[str, str]:
        day = number * (4 * 365) // total  # publication order follows the article number
        year, day_of_year = 2019 + day // 365, day % 365
        published = f"{year:04d}-{day_of_year // 31 % 12 + 1:02d}-{day_of_year % 28 + 1:02d}"
        outlet = self.rng.randrange(len(OUTLETS))
        if self.sent and self.rng.random() < 0.02:  # a syndicated copy of a recent article
            source = self.rng.choice(self.sent[-200:])
            return {**source, "published": published, "outlet": OUTLETS[outlet]}
        paragraphs = [" ".join(self.sentence() for _ in range(self.rng.randint(1, 3)))
                      for _ in range(self.rng.randint(3, 5))]
        if self.rng.random() < 0.45:
            paragraphs += [self.background(outlet) for _ in range(self.rng.randint(1, 2))]
        article = {"title": self.sentence()[:70], "published": published, "outlet": OUTLETS[outlet],
                   "text": "\n\n".join(paragraphs)}
        self.sent.append(article)
        return article


def build(raw: Path, processed: Path, records: int) -> None:
    sys.path.insert(0, str(ROOT))
    from pipeline.ingest import run_ingest

    raw.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(seed=15)
    files = (records + ARTICLES_PER_FILE - 1) // ARTICLES_PER_FILE
    started = time.perf_counter()
    for f in range(files):
        count = min(ARTICLES_PER_FILE, records - f * ARTICLES_PER_FILE)
        with open(raw / f"articles-{f:04d}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(count):
                fh.write(json.dumps(corpus.article(f * ARTICLES_PER_FILE + i, records)) + "\n")
        if (f + 1) % FILES_PER_RUN == 0 or f == files - 1:
            summary = run_ingest(raw, processed)
            print(f"  build run: {f + 1}/{files} files, {summary.records_written} records, "
                  f"{summary.repeats_flagged} repeats, {time.perf_counter() - started:.0f} s so far", flush=True)


_MEASURE = """
import json, sys, time
t0 = time.perf_counter()
from pipeline.report import write_report
stats = write_report(sys.argv[1], sys.argv[2], progress=sys.stderr)
print(json.dumps({"seconds": time.perf_counter() - t0, **stats}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/newsdedup-bench-report"))
    parser.add_argument("--repeat", type=int, default=1, help="reports to time; the median is shown")
    parser.add_argument("--build-only", action="store_true", help="build (or find) the processed dir, time nothing")
    args = parser.parse_args()
    raw, processed = args.workdir / "raw", args.workdir / "processed"
    if not (processed / "state.sqlite").exists():
        print(f"building a processed dir of {args.records:,} records in {args.workdir} (once) ...", flush=True)
        build(raw, processed, args.records)
    else:
        print(f"reusing {processed}", flush=True)
    if args.build_only:
        return
    out = args.workdir / "report.html"
    results = []
    for _ in range(args.repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run([sys.executable, "-c", _MEASURE, str(processed), str(out)], cwd=ROOT, check=True,
                             capture_output=True, text=True)
        sys.stderr.write(run.stderr)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        results.append({**json.loads(run.stdout.strip().splitlines()[-1]), "cpu": cpu})
    seconds = statistics.median(r["seconds"] for r in results)
    last = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]  # the median run
    print(f"records: {last['records']:,}  passages: {last['passages']:,}")
    cpu = statistics.median(r["cpu"] for r in results)
    print(f"report: {seconds:.2f} s (median of {len(results)}, whole process including imports; target < 10 s); "
          f"CPU {cpu:.2f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("phases of the median run (records and passages overlap, in two threads): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in last["timings"].items()))
    print(f"file: {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
