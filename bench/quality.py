"""Benchmark: how well repeated background is found, per case, on two labelled sources.

    .venv/bin/python bench/quality.py [--articles 2000] [--seed 7] [--devset bench/devset]

1. A synthetic corpus with ground truth from ``../shared/tools/gencorpus.py`` (edited, merged,
   split background, syndicated copies; its ``truth.jsonl`` says which paragraph carries
   which template).
2. The labelled development set in ``bench/devset/`` (real-shaped articles written for this
   project, labels in ``labels.json``; see its README).

Both are run through ``pipeline.ingest.run_ingest`` (the library a flow run calls) into a
temporary processed dir. Printed per case: how many paragraphs, how many flagged
(``repeat_of`` set), and for partly repeated paragraphs how many carry spans. The headline is
paragraph-level recall and precision for "this paragraph repeats earlier background", the
figure the issue measured (0.56 / 1.00 at paragraph level before sentence-level detection).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.dedup import DedupSettings  # noqa: E402
from pipeline.ingest import IngestSettings, run_ingest  # noqa: E402
from pipeline.records import read_records  # noqa: E402

GENCORPUS = ROOT.parent / "shared" / "tools" / "gencorpus.py"


class Tally:
    """Counts per case: paragraphs, flagged as a whole, carrying spans."""

    def __init__(self) -> None:
        self.cases: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)

    def add(self, label: str, case: str, flagged: bool, spans: bool, removed: bool = False) -> None:
        c = self.cases[(label, case)]
        c["n"] += 1
        c["flagged"] += flagged
        c["spans"] += spans and not flagged
        c["removed"] += removed

    def report(self, title: str) -> dict[str, float]:
        print(f"\n## {title}\n")
        print("| expected | case | paragraphs | flagged as repeat | spans only | set apart by cleaning | neither |")
        print("|---|---|---|---|---|---|---|")
        for (label, case), c in sorted(self.cases.items()):
            neither = c["n"] - c["flagged"] - c["spans"] - c["removed"]
            print(f"| {label} | {case} | {c['n']} | {c['flagged']} | {c['spans']} | {c['removed']} | {neither} |")
        print("\n(set apart by cleaning: page furniture such as follow-us lines, never in the record body)")
        tp = sum(c["flagged"] + c["removed"] for (label, _), c in self.cases.items() if label == "repeat")
        pos = sum(c["n"] for (label, _), c in self.cases.items() if label == "repeat")
        part_n = sum(c["n"] for (label, _), c in self.cases.items() if label == "partial")
        part_found = sum(c["spans"] + c["flagged"] for (label, _), c in self.cases.items() if label == "partial")
        part_whole = sum(c["flagged"] for (label, _), c in self.cases.items() if label == "partial")
        orig_n = sum(c["n"] for (label, _), c in self.cases.items() if label == "original")
        orig_touched = sum(c["spans"] + c["flagged"] for (label, _), c in self.cases.items() if label == "original")
        tp_flagged = sum(c["flagged"] for (label, _), c in self.cases.items() if label == "repeat")
        wrong = sum(c["flagged"] for (label, _), c in self.cases.items() if label == "original")
        recall = tp / pos if pos else float("nan")
        precision = tp_flagged / (tp_flagged + wrong) if tp_flagged + wrong else float("nan")
        print(f"\nparagraph level: recall {recall:.3f} ({tp}/{pos}; set apart by cleaning counts as found), "
              f"precision {precision:.3f} ({wrong} original paragraphs flagged; partial paragraphs not counted)")
        if part_n:
            print(f"partly repeated paragraphs: {part_found}/{part_n} carry spans or a flag "
                  f"({part_whole} flagged whole)")
        print(f"original paragraphs touched by a span or flag: {orig_touched}/{orig_n}")
        return {"recall": recall, "precision": precision}


def _flags(record: dict[str, Any]) -> list[tuple[str, bool, bool]]:
    return [(p["text"], p["repeat_of"] is not None, bool(p["repeated_spans"]))
            for p in record["paragraphs"] if p["kind"] == "body"]


def synthetic(articles: int, seed: int, work: Path, settings: IngestSettings) -> None:
    raw = work / "gen"
    started = time.perf_counter()
    subprocess.run([sys.executable, str(GENCORPUS), "--articles", str(articles), "--seed", str(seed),
                    "--out", str(raw)], check=True, stdout=subprocess.DEVNULL)
    truth = [json.loads(line) for line in (raw / "truth.jsonl").read_text().splitlines()]
    (raw / "truth.jsonl").rename(work / "truth.jsonl")  # not an article
    processed = work / "gen-processed"
    t0 = time.perf_counter()
    summary = run_ingest(raw, processed, settings)
    took = time.perf_counter() - t0
    records = {r["source"]["path"]: r for r in read_records(processed)}
    tally = Tally()
    dup = Counter()
    seen: set[int] = set()  # templates printed by an earlier article
    skipped = 0
    for t in truth:
        record = records.get(t["file"])
        flags = _flags(record) if record else []
        templates = t["templates"]
        if record is None or len(flags) != len(templates):
            skipped += 1
            continue
        ops = {b["par"]: b["op"] for b in t["bg"]}
        mine: set[int] = set()
        for i, (_, flagged, spans) in enumerate(flags):
            ts = templates[i]
            ts = [] if ts is None else ts if isinstance(ts, list) else [ts]
            if t["copy_of"] is not None:
                copied = t["src_par"][i] is not None
                label, case = ("repeat", "syndicated") if copied else ("original", "copy lead")
            elif not ts:
                label, case = "original", "news"
            else:
                earlier = [x in seen for x in ts]
                op = ops.get(i, "edit")
                case = {"edit": "edited", "merge": "two-in-one", "split0": "split", "split1": "split"}.get(op, op)
                label = "repeat" if all(earlier) else "partial" if any(earlier) else "original"
                if label == "original":
                    case = "first"
            tally.add(label, case, flagged, spans)
            mine.update(ts)
        seen |= mine
        expected_dup = t["copy_of"]
        got = record["duplicate_of"]
        if expected_dup is not None:
            dup["copies"] += 1
            source = records[f"{expected_dup:0{len(t['file']) - 4}d}.txt"]
            dup["found"] += got is not None and got["record"] == source["id"]
        elif got is not None:
            dup["false"] += 1
    print(f"# Synthetic corpus: {articles} articles (seed {seed}), {summary.paragraphs} paragraphs, "
          f"run {took:.1f} s ({summary.paragraphs / took:.0f} paragraphs/s), generated in "
          f"{t0 - started:.1f} s; {skipped} articles skipped (paragraphs did not align)")
    tally.report("Synthetic corpus, per paragraph")
    print(f"syndicated copies: duplicate_of found for {dup['found']}/{dup['copies']}, "
          f"{dup['false']} articles wrongly marked as copies")


def devset(folder: Path, work: Path, settings: IngestSettings) -> None:
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))["articles"]
    processed = work / "dev-processed"
    run_ingest(folder / "articles", processed, settings)
    records = {r["source"]["path"]: r for r in read_records(processed)}
    by_id = {r["id"]: name for name, r in records.items()}
    tally = Tally()
    dup = Counter()
    unaligned = 0
    for name, expected in labels.items():
        record = records.get(name)
        if record is None:
            print(f"note: {name} gave no record")
            continue
        flags = {text[:40]: (flagged, spans) for text, flagged, spans in _flags(record)}
        for para in expected["paragraphs"]:
            got = flags.get(para["start"][:40])
            if got is None:
                if not any(para["start"][:40] in p["text"] for p in record["paragraphs"]):
                    tally.add(para["label"], para["case"], False, False, removed=True)
                else:
                    unaligned += 1
                continue
            tally.add(para["label"], para["case"], *got)
        want = expected.get("duplicate_of")
        have = by_id.get(record["duplicate_of"]["record"]) if record["duplicate_of"] else None
        if want:
            dup["copies"] += 1
            dup["found"] += have == want
        elif have:
            dup["false"] += 1
    print(f"\n# Development set: {len(labels)} articles ({folder}); {unaligned} labelled paragraphs not found "
          "as paragraphs")
    tally.report("Development set, per paragraph")
    print(f"syndicated copies: duplicate_of found for {dup['found']}/{dup['copies']}, "
          f"{dup['false']} articles wrongly marked as copies")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=2000, help="synthetic corpus size (0: skip it)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--devset", type=Path, default=ROOT / "bench" / "devset")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a detection setting other than the default (DedupSettings), e.g. threshold=0.45")
    args = parser.parse_args()
    fields = DedupSettings.__dataclass_fields__
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            parser.error(f"unknown setting {name!r}; settings: {', '.join(fields)}")
        overrides[name] = float(value) if "." in value else int(value)
    settings = IngestSettings(dedup=DedupSettings(**overrides))
    if overrides:
        print(f"settings: {settings.dedup}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.articles:
            synthetic(args.articles, args.seed, work, settings)
        if (args.devset / "labels.json").exists():
            devset(args.devset, work, settings)
        else:
            print(f"\n(no labelled development set at {args.devset})")


if __name__ == "__main__":
    main()
