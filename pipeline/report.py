"""The HTML report: what repeats, where and since when, as one self-contained static page.

``write_report(processed_dir, out)`` reads the processed dir (the state behind the records
and the passage catalog, the quarantine list, the runs) and writes one HTML file that opens
from disk in any browser with no network at all: the styles are inlined, the charts are SVG
written here, there is no script, and a Content-Security-Policy forbids the page to load anything.

Why hand-written SVG and no plotting library (measured, 12 charts like the report's): the
SVG is 46 KiB and built in 1 ms, the page renders in 60-115 ms in Chromium; matplotlib's SVG
is 218 KiB, 1.6 s to import and 1.6 s to draw; Vega-Altair's self-contained page is 882 KiB
(the Vega bundle inlined), 2.3 s to import and 3.4 s to save, and renders in 730 ms through
JavaScript. The charts are bars and dated counts, which need no library, and no dependency
is added.

The figures come from the state database in one snapshot (see ``_RECORDS`` for why SQL and
not the Python readers); memory is a few fields per record, the top passages' copies and
the handful of records shown.
"""

from __future__ import annotations

import difflib
import html
import json
import re
import sqlite3
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

from pipeline.catalog import UNDATED as CATALOG_UNDATED
from pipeline.records import write_text_atomic
from pipeline.state_backend import connect, state_url_for

TOP_PASSAGES = 10
SHOWN_ARTICLES = 6
SHOWN_COPIES = 50  # syndicated copies listed (all are counted)
SHOWN_QUARANTINE = 200
SHOWN_RUNS = 10
NO_OUTLET = "(no outlet stated)"
UNDATED = "undated"
PROGRESS_EVERY = 20_000  # records between progress lines (only dirs this large print any)

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_WORD = re.compile(r"\w+")


def _day(published: str | None) -> date | None:
    match = _DATE.match(published or "")
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


@dataclass
class Tally:
    """Body text of a group of articles, and how much of it repeats earlier text (characters)."""

    articles: int = 0
    paragraphs: int = 0
    body_chars: int = 0
    repeated_chars: int = 0

    @property
    def share(self) -> float:
        return self.repeated_chars / self.body_chars if self.body_chars else 0.0


@dataclass
class ReportData:
    repeated_paragraphs: int = 0  # paragraphs flagged repeat_of
    spans: int = 0  # repeated spans inside paragraphs that stay body text
    total: Tally = field(default_factory=Tally)
    by_outlet: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_month: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    passages: list[dict[str, Any]] = field(default_factory=list)  # all, most copied first
    passage_count: int = 0
    articles: list[dict[str, Any]] = field(default_factory=list)  # shown with their spans highlighted
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # first occurrences they link to
    copies: list[dict[str, Any]] = field(default_factory=list)  # syndicated copies (duplicate_of)
    copy_count: int = 0
    titles: dict[str, tuple[str | None, str | None, str | None, str]] = field(default_factory=dict)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    quarantine_count: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


# Read in one snapshot of the state database, like the readers. Why SQL here rather than
# catalog.read_passages and records.read_records (measured on 100,000 records, 2,104 passages):
# read_passages took 558 s (each passage's first-occurrence sentences are found by a scan of
# every unit) and parsing every record in Python 7-10 s; these queries take about 4 s in all.
# The test checks that they agree with both readers on the seeds.
# Per record, the characters the deduplicated text drops: paragraphs flagged whole (their
# length), and spans inside the others; in the same row, so each record is parsed once.
_RECORDS = """
SELECT a.record_id, a.path, a.sort_key, json_extract(a.record, '$.title'), json_extract(a.record, '$.outlet'),
       json_extract(a.record, '$.published'), json_extract(a.record, '$.duplicate_of.record'),
       json_extract(a.record, '$.duplicate_of.share'),
       {paragraph_count}, length(json_extract(a.record, '$.text')),
       (SELECT COALESCE(SUM(length(json_extract(a.record, '$.paragraphs[' || w.para || '].text'))), 0)
        FROM (SELECT DISTINCT para FROM spans s WHERE s.record_id = a.record_id AND s.whole = 1) w),
       (SELECT COALESCE(SUM(end_char - start_char), 0) FROM spans s WHERE s.record_id = a.record_id AND s.whole = 0)
FROM articles a ORDER BY a.sort_key, a.path, a.item
"""
# Passages, most copied first, ties in the order of their first occurrence (as the catalog orders them).
_PASSAGES = """
SELECT c.passage FROM (SELECT passage, COUNT(*) AS copies FROM spans GROUP BY passage) c
JOIN articles f ON f.record_id = substr(c.passage, 1, instr(c.passage, ':') - 1)
ORDER BY c.copies DESC, f.sort_key, f.path, f.item, CAST(substr(c.passage, instr(c.passage, ':') + 1) AS INTEGER)
"""
_SNAPSHOT = "SELECT COALESCE(MAX(seq), 0) FROM runs"
_OCCURRENCES = """
SELECT s.passage, s.record_id, s.para, s.start_char, s.end_char, s.similarity, s.whole,
       substr(json_extract(a.record, '$.paragraphs[' || s.para || '].text'), s.start_char + 1,
              s.end_char - s.start_char) AS text
FROM spans s JOIN articles a ON a.record_id = s.record_id
WHERE s.passage = ? ORDER BY a.sort_key, a.path, a.item, s.para, s.start_char
"""
# The first-occurrence sentences a passage's copies repeat (as the catalog defines its text),
# found through the copies' own units (indexed by record) rather than a scan of all units.
_ROOTS = """
SELECT DISTINCT r.seq, r.para, r.start_char, r.end_char
FROM (SELECT DISTINCT record_id FROM spans WHERE passage = ?) c
JOIN units u ON u.record_id = c.record_id JOIN units r ON r.uid = u.root_uid
WHERE u.passage = ? AND u.match_uid IS NOT NULL AND r.record_id = ? ORDER BY r.seq
"""
_PER_RECORD = "SELECT record_id, COUNT(DISTINCT passage), COUNT(*) FROM spans GROUP BY record_id"
# status.collect_status would count every unit (2.3 s on 100,000 records); the page needs these.
_COUNTS = """
SELECT (SELECT COUNT(*) FROM (SELECT DISTINCT record_id, para FROM spans WHERE whole = 1) w),
       (SELECT COUNT(*) FROM spans WHERE whole = 0)
"""


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.casefold()))


def collect(processed_dir: str | Path, progress: IO[str] | None = None) -> ReportData:
    """Everything the page shows, from one snapshot of processed/."""
    processed_dir = Path(processed_dir)
    started = time.perf_counter()
    data = ReportData()
    loud = False

    def note(message: str) -> None:
        if loud and progress is not None:
            progress.write(f"report: {message} ({time.perf_counter() - started:.1f} s)\n")
            progress.flush()

    # The passages are read on a second connection in a thread while this one counts the
    # records: SQLite works without the GIL, so the two take the time of the longer one.
    pool = ThreadPoolExecutor(max_workers=1)
    passages_read = pool.submit(_read_passage_rows_alone, processed_dir)
    conn = connect(processed_dir, readonly=True)
    try:
        conn.execute("BEGIN")  # one snapshot: a run committing meanwhile is not seen
        snapshot = conn.execute(_SNAPSHOT).fetchone()[0]
        t0 = time.perf_counter()
        records = conn.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
        loud = progress is not None and records >= PROGRESS_EVERY
        data.repeated_paragraphs, data.spans = conn.execute(_COUNTS).fetchone()
        order: dict[str, int] = {}
        sort_keys: dict[str, str] = {}
        # The one JSON function PostgreSQL's state has no SQLite-named stand-in for (pipeline/state_pg.py).
        paragraph_count = ("json_array_length(a.record, '$.paragraphs')" if state_url_for(processed_dir).is_sqlite
                           else "jsonb_array_length(a.record::jsonb -> 'paragraphs')")
        for number, row in enumerate(conn.execute(_RECORDS.format(paragraph_count=paragraph_count)), 1):
            record_id, path, sort_key, title, outlet, published, original, share, paragraphs, kept, whole, part = row
            order[record_id] = number
            sort_keys[record_id] = sort_key
            data.titles[record_id] = (title, outlet, published, path)
            day = _day(published)
            month = f"{day.year:04d}-{day.month:02d}" if day else UNDATED
            repeated = int(whole + part)
            for tally in (data.total, data.by_outlet[outlet or NO_OUTLET], data.by_month[month]):
                tally.articles += 1
                tally.paragraphs += paragraphs or 0
                tally.body_chars += (kept or 0) + repeated
                tally.repeated_chars += repeated
            if original is not None:
                data.copy_count += 1
                if len(data.copies) < SHOWN_COPIES:
                    # float(): a state in PostgreSQL gives JSON values back as text
                    data.copies.append({"record": record_id, "original": original,
                                        "share": None if share is None else float(share)})
            if number % PROGRESS_EVERY == 0:
                note(f"{number:,} of {records:,} records counted")
        data.timings["records"] = round(time.perf_counter() - t0, 3)

        t0 = time.perf_counter()
        rows = passages_read.result()
        if rows.snapshot != snapshot:  # a run committed between the two snapshots: read them again on this one
            rows = _read_passage_rows(conn)
        data.timings["passages"] = round(rows.seconds, 3)
        data.passage_count = rows.count
        data.passages = [_passage(top, data, sort_keys) for top in rows.top]
        note(f"{data.passage_count:,} passages, the top {len(data.passages)} read")

        t0 = time.perf_counter()
        # Shown: the records repeating the most passages, then the most spans, then the earliest.
        ranked = sorted(rows.per_record, key=lambda row: (-row[1], -row[2], order.get(row[0], 0)))
        shown = [row[0] for row in ranked[:SHOWN_ARTICLES]]
        data.articles = [json.loads(text) for text in _records_by_id(conn, shown)]
        sources = sorted({span["record"] for record in data.articles for p in record["paragraphs"]
                          for span in p["repeated_spans"]})
        data.sources = {r["id"]: r for r in map(json.loads, _records_by_id(conn, sources))}
        data.runs = read_runs(conn, SHOWN_RUNS)
        conn.execute("COMMIT")
    finally:
        conn.close()
        pool.shutdown(wait=True)

    quarantine_file = processed_dir / "quarantine.jsonl"
    if quarantine_file.exists():
        with open(quarantine_file, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    data.quarantine_count += 1
                    if len(data.quarantine) < SHOWN_QUARANTINE:
                        data.quarantine.append(json.loads(line))
    data.timings["other"] = round(time.perf_counter() - t0, 3)
    return data


def _records_by_id(conn: sqlite3.Connection, record_ids: list[str]) -> list[str]:
    """Record texts in the order of ``record_ids`` (those that exist)."""
    texts = []
    for record_id in record_ids:
        row = conn.execute("SELECT record FROM articles WHERE record_id = ?", (record_id,)).fetchone()
        if row is not None:
            texts.append(row[0])
    return texts


@dataclass
class _PassageRows:
    """What the passages need from the database, read in one snapshot."""

    snapshot: int
    count: int  # passages in all
    top: list[tuple[str, list[tuple[Any, ...]], list[tuple[Any, ...]], str]]  # id, copies, roots, first record
    per_record: list[tuple[str, int, int]]  # record, passages it repeats, its spans
    seconds: float


def _read_passage_rows_alone(processed_dir: Path) -> _PassageRows:
    conn = connect(processed_dir, readonly=True)
    try:
        conn.execute("BEGIN")
        rows = _read_passage_rows(conn)
        conn.execute("COMMIT")
        return rows
    finally:
        conn.close()


def _read_passage_rows(conn: sqlite3.Connection) -> _PassageRows:
    started = time.perf_counter()
    snapshot = conn.execute(_SNAPSHOT).fetchone()[0]
    passages = [row[0] for row in conn.execute(_PASSAGES)]
    top = []
    for passage_id in passages[:TOP_PASSAGES]:
        first_record = passage_id.rsplit(":", 1)[0]
        copies = [tuple(row) for row in conn.execute(_OCCURRENCES, (passage_id,))]
        roots = [tuple(row) for row in conn.execute(_ROOTS, (passage_id, passage_id, first_record))]
        [first_text] = _records_by_id(conn, [first_record]) or ["{}"]
        top.append((passage_id, copies, roots, first_text))
    per_record = [tuple(row) for row in conn.execute(_PER_RECORD)]
    return _PassageRows(snapshot, len(passages), top, per_record, time.perf_counter() - started)


def _passage(top: tuple[str, list[tuple[Any, ...]], list[tuple[Any, ...]], str], data: ReportData,
             sort_keys: dict[str, str]) -> dict[str, Any]:
    """One passage with the catalog's fields (pipeline.catalog.PASSAGE_FIELDS), its occurrences and their texts."""
    passage_id, rows, roots, first_text = top
    first_record, index = passage_id.rsplit(":", 1)
    paragraphs = json.loads(first_text).get("paragraphs", [])
    if roots:
        text = " ".join(paragraphs[r[1]]["text"][r[2]:r[3]] for r in roots)
    else:  # a house line: the whole first paragraph
        text = paragraphs[int(index)]["text"] if int(index) < len(paragraphs) else ""
    involved = [first_record, *(row[1] for row in rows)]
    meta = {record: data.titles.get(record, (None, None, None, "")) for record in involved}
    dated = sorted((sort_keys.get(r, CATALOG_UNDATED), meta[r][2]) for r in set(involved)
                   if sort_keys.get(r, CATALOG_UNDATED) != CATALOG_UNDATED and meta[r][2])
    occurrences = [{"record": r[1], "paragraph": r[2], "start": r[3], "end": r[4], "whole_paragraph": bool(r[6]),
                    "published": meta[r[1]][2], "outlet": meta[r[1]][1], "similarity": r[5]} for r in rows]
    return {
        "passage": passage_id, "text": text, "first_record": first_record, "first_paragraph": int(index),
        "first_published": meta[first_record][2], "copies": len(rows),
        "variants": len({_words(text) for text in {r[7] or "" for r in rows}}), "articles": len(set(involved)),
        "outlets": sorted({meta[r][1] for r in involved if meta[r][1]}),
        "first_seen": dated[0][1] if dated else None, "last_seen": dated[-1][1] if dated else None,
        "occurrences": occurrences, "copy_texts": [(o, r[7] or "") for o, r in zip(occurrences, rows, strict=True)],
    }


def read_runs(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The last runs, newest first, with their summaries (no other reader lists them)."""
    rows = conn.execute("SELECT seq, run_id, started_at, finished_at, outcome, summary FROM runs "
                        "ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
    return [{"seq": r["seq"], "run_id": r["run_id"], "started_at": r["started_at"], "finished_at": r["finished_at"],
             "outcome": r["outcome"], "summary": json.loads(r["summary"] or "{}")} for r in rows]


# --- charts: inline SVG -------------------------------------------------------------------

_REPEATED = "#d9534f"
_ORIGINAL = "#c9d3de"
_ACCENT = "#2c6fbb"


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _svg(width: int, height: int, label: str, body: str) -> str:
    return (f'<svg class="chart" role="img" aria-label="{_esc(label)}" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">{body}</svg>')


def outlet_chart(by_outlet: dict[str, Tally], limit: int = 15) -> str:
    """Horizontal bars, one per outlet (most articles first): body text, the repeated share in red."""
    rows = sorted(by_outlet.items(), key=lambda item: (-item[1].articles, item[0]))[:limit]
    label_w, bar_w, row_h = 140, 250, 22
    height = row_h * len(rows) + 24
    parts = [f'<text x="{label_w}" y="12" class="axis">share of body text repeated (red); bar: 100 %</text>']
    for i, (name, tally) in enumerate(rows):
        y = 20 + i * row_h
        repeated_w = bar_w * tally.share
        tip = (f"{name}: {tally.articles:,} articles, {tally.paragraphs:,} paragraphs, "
               f"{tally.share:.1%} of body text repeated")
        parts.append(
            f'<g><title>{_esc(tip)}</title>'
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" class="label">{_esc(name[:22])}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{bar_w}" height="{row_h - 6}" fill="{_ORIGINAL}"/>'
            f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{repeated_w:.1f}" height="{row_h - 6}" '
            f'fill="{_REPEATED}"/>'
            f'<text x="{label_w + bar_w + 6}" y="{y + 14}" class="label">{tally.share:.0%} · {tally.articles:,}</text>'
            f'</g>')
    return _svg(label_w + bar_w + 90, height, "share of body text repeated, by outlet", "".join(parts))


def month_chart(by_month: dict[str, Tally]) -> str:
    """Columns per month (every month from the first to the last, gaps included): body text, repeated part red."""
    months = sorted(m for m in by_month if m != UNDATED)
    if not months:
        return '<p class="empty">No article states its publication date.</p>'
    first, last = (int(months[0][:4]), int(months[0][5:])), (int(months[-1][:4]), int(months[-1][5:]))
    every = []
    year, month = first
    while (year, month) <= last:
        every.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    width, height, left, bottom = 440, 194, 24, 30
    plot_w, plot_h = width - left - 10, height - bottom - 18
    step = plot_w / len(every)
    peak = max(by_month[m].body_chars for m in months) or 1
    parts = [f'<line x1="{left}" y1="{18 + plot_h}" x2="{width - 10}" y2="{18 + plot_h}" class="axis-line"/>',
             f'<text x="{left}" y="10" class="axis">{_kilo(peak)} of body text at most in a month</text>',
             f'<text x="{left - 4}" y="{18 + plot_h}" text-anchor="end" class="axis">0</text>']
    label_every = max(1, len(every) // 5)
    for i, name in enumerate(every):
        tally = by_month.get(name, Tally())
        x = left + i * step
        full = plot_h * tally.body_chars / peak
        red = plot_h * tally.repeated_chars / peak
        tip = (f"{name}: {tally.articles:,} articles, {tally.paragraphs:,} paragraphs, "
               f"{tally.share:.1%} of body text repeated")
        parts.append(
            f'<g><title>{_esc(tip)}</title>'
            f'<rect x="{x + step * 0.1:.1f}" y="{18 + plot_h - full:.1f}" width="{max(step * 0.8, 1):.1f}" '
            f'height="{full:.1f}" fill="{_ORIGINAL}"/>'
            f'<rect class="bar" x="{x + step * 0.1:.1f}" y="{18 + plot_h - red:.1f}" '
            f'width="{max(step * 0.8, 1):.1f}" height="{red:.1f}" fill="{_REPEATED}"/></g>')
        if i % label_every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 12}" text-anchor="middle" '
                         f'class="axis">{name}</text>')
    return _svg(width, height, "body text by month, repeated part in red", "".join(parts))


def _kilo(chars: int) -> str:
    return f"{chars / 1e6:.1f}M chars" if chars >= 1e6 else f"{chars / 1e3:.0f}k chars" if chars >= 1e3 else f"{chars}"


def timeline_chart(passage: dict[str, Any]) -> str:
    """The copies of a passage over time: counts per day (per week or month over long ranges),
    the first occurrence marked by a blue diamond."""
    first = _day(passage.get("first_published"))
    days = [d for d in (_day(o.get("published")) for o in passage["occurrences"]) if d is not None]
    undated = len(passage["occurrences"]) - len(days)
    if not days:
        return '<p class="empty">None of its copies is dated.</p>'
    start = min([*days, *([first] if first else [])])
    end = max([*days, *([first] if first else [])])
    span_days = (end - start).days + 1
    bin_days = 1 if span_days <= 90 else 7 if span_days <= 700 else 30
    bins = span_days // bin_days + 1
    counts = Counter((d - start).days // bin_days for d in days)
    width, height, left, bottom = 420, 90, 34, 22
    plot_w, plot_h = width - left - 8, height - bottom - 8
    step = plot_w / bins
    peak = max(counts.values())
    parts = [f'<line x1="{left}" y1="{8 + plot_h}" x2="{width - 8}" y2="{8 + plot_h}" class="axis-line"/>',
             f'<text x="{left - 4}" y="16" text-anchor="end" class="axis">{peak}</text>',
             f'<text x="{left}" y="{height - 6}" class="axis">{start.isoformat()}</text>',
             f'<text x="{width - 8}" y="{height - 6}" text-anchor="end" class="axis">{end.isoformat()}</text>']
    unit = {1: "day", 7: "week", 30: "30 days"}[bin_days]
    for index, count in sorted(counts.items()):
        h = max(plot_h * count / peak, 2)
        tip = f"{count} cop{'y' if count == 1 else 'ies'} in the {unit} from {_bin_start(start, index, bin_days)}"
        parts.append(f'<rect class="bar" x="{left + index * step:.1f}" y="{8 + plot_h - h:.1f}" '
                     f'width="{max(step * 0.85, 2):.1f}" height="{h:.1f}" fill="{_REPEATED}">'
                     f'<title>{_esc(tip)}</title></rect>')
    if first is not None:
        x = left + ((first - start).days // bin_days + 0.5) * step
        y = 8 + plot_h
        parts.append(f'<path class="first" d="M{x:.1f} {y - 7} l5 7 l-5 7 l-5 -7 z" fill="{_ACCENT}">'
                     f'<title>first occurrence {first.isoformat()}</title></path>')
    label = f"copies over time, per {unit}" + (f" ({undated} undated not shown)" if undated else "")
    return _svg(width, height, label, "".join(parts))


def _bin_start(start: date, index: int, bin_days: int) -> str:
    return date.fromordinal(start.toordinal() + index * bin_days).isoformat()


# --- text: differences and highlighted spans ------------------------------------------------


def _word_set(text: str) -> set[str]:
    return set(_WORD.findall(text.casefold()))


def most_different_copy(passage: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The most edited copy: the lowest similarity of its matched sentences (the engine's exact Jaccard); among
    those, the one sharing the fewest words with the canonical text, then the earliest. A copy of a few of the
    passage's sentences is not a variant for being shorter, so similarity decides first."""
    copies = passage.get("copy_texts") or []
    if not copies:
        return None
    lowest = min(1.0 if o["similarity"] is None else o["similarity"] for o, _ in copies)
    candidates = [(o, t) for o, t in copies if (1.0 if o["similarity"] is None else o["similarity"]) <= lowest]
    canonical = _word_set(passage["text"])

    def overlap(copy: tuple[dict[str, Any], str]) -> float:
        words = _word_set(copy[1])
        return len(words & canonical) / len(words | canonical) if words | canonical else 1.0

    return min(candidates, key=overlap)


def marked_diff(original: str, copy: str) -> tuple[str, str]:
    """Both texts as HTML, words only one of them has marked (<del> in the original, <ins> in the copy)."""
    a, b = original.split(), copy.split()
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=[w.casefold() for w in a], b=[w.casefold() for w in b],
                                                      autojunk=False).get_opcodes():
        old, new = _esc(" ".join(a[i1:i2])), _esc(" ".join(b[j1:j2]))
        if op == "equal":
            left.append(old)
            right.append(new)
        else:
            if old:
                left.append(f"<del>{old}</del>")
            if new:
                right.append(f"<ins>{new}</ins>")
    return " ".join(left), " ".join(right)


def _anchor(record: str, paragraph: int) -> str:
    return f"src-{record}-{paragraph}"


def highlighted_paragraph(paragraph: dict[str, Any], linkable: set[tuple[str, int]]) -> str:
    """A paragraph's text with its repeated spans marked, each linking to its first occurrence."""
    text = paragraph["text"]
    pieces, position = [], 0
    for span in sorted(paragraph.get("repeated_spans") or (), key=lambda s: s["start"]):
        start, end = max(span["start"], position), span["end"]
        if end <= start:
            continue
        pieces.append(_esc(text[position:start]))
        target = (span["record"], span["paragraph"])
        tip = f"repeats passage {span['passage']} (similarity {span['similarity']:.2f})"
        inner = _esc(text[start:end])
        if target in linkable:
            inner = f'<a href="#{_anchor(*target)}">{inner}</a>'
        pieces.append(f'<mark class="repeat" data-passage="{_esc(span["passage"])}" title="{_esc(tip)}">{inner}</mark>')
        position = end
    pieces.append(_esc(text[position:]))
    kind = paragraph["kind"]
    classes = [kind] + (["repeat-paragraph"] if paragraph.get("repeat_of") else [])
    tag = "h4" if kind == "heading" else "p"
    flag = ""
    if paragraph.get("repeat_of"):
        flag = f'<span class="flag">repeat of {_esc(paragraph["repeat_of"]["passage"])}</span> '
    return f'<{tag} class="{" ".join(classes)}">{flag}{"".join(pieces)}</{tag}>'


# --- the page ------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;margin:0;background:#f5f7fa}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d5dce4}
h3{font-size:15px;margin:12px 0 4px}section.card,article{background:#fff;border:1px solid #dde3ea;border-radius:6px;
padding:12px 16px;margin:10px 0}
.figures{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}.figure{background:#fff;border:1px solid #dde3ea;
border-radius:6px;padding:6px 12px;min-width:90px}.figure b{display:block;font-size:19px}
.charts{display:flex;flex-wrap:wrap;gap:16px}.axis,.label{font-size:11px;fill:#4a5868}.axis-line{stroke:#8795a5}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}th,td{border:1px solid #dde3ea;
padding:4px 6px;text-align:left;vertical-align:top}th{background:#eef2f6}
.canonical{font-size:13px;color:#1d2733}.meta{color:#5b6877;font-size:12px}.variants{display:grid;
grid-template-columns:1fr 1fr;gap:12px;font-size:13px}.variants>div{background:#fafbfc;border:1px solid #e4e9ee;
padding:6px 8px}del{background:#fbd5d5;text-decoration:line-through}ins{background:#d4f1d9;text-decoration:none}
mark.repeat{background:#ffe08a;padding:0 1px}mark.repeat a{color:inherit}p.repeat-paragraph{border-left:3px solid
#d9534f;padding-left:8px}.flag{font-size:11px;color:#fff;background:#d9534f;border-radius:3px;padding:0 4px}
.source p.target{background:#eaf2fb;outline:1px solid #b7cfea}.empty{color:#5b6877}
code{font-size:12px}
"""


def _figure(label: str, value: str) -> str:
    return f'<div class="figure"><b>{_esc(value)}</b>{_esc(label)}</div>'


def _title_of(data: ReportData, record: str) -> str:
    title, outlet, published, path = data.titles.get(record, (None, None, None, record))
    bits = [title or path, outlet or "", (published or "undated")[:10]]
    return " · ".join(b for b in bits if b)


def render(data: ReportData, processed_dir: str | Path) -> str:
    total = data.total
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        # Nothing may be loaded: the report is one file and works offline.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>newsdedup report: {_esc(Path(processed_dir).name)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>newsdedup report</h1><p class=\"meta\" title=\"{_esc(Path(processed_dir).resolve())}\">"
        f"{_esc(Path(processed_dir).name)} · generated {generated}</p>",
        '<section id="corpus"><h2>The corpus at a glance</h2><div class="figures">',
        _figure("articles", f"{total.articles:,}"),
        _figure("paragraphs", f"{total.paragraphs:,}"),
        _figure("of body text repeated", f"{total.share:.1%}"),
        _figure("repeated paragraphs", f"{data.repeated_paragraphs:,}"),
        _figure("spans inside paragraphs", f"{data.spans:,}"),
        _figure("repeated passages", f"{data.passage_count:,}"),
        _figure("syndicated copies", f"{data.copy_count:,}"),
        _figure("quarantined", f"{data.quarantine_count:,}"),
        "</div><div class=\"charts\">",
        f'<div><h3>By outlet</h3>{outlet_chart(data.by_outlet)}</div>',
        f'<div><h3>By month</h3>{month_chart(data.by_month)}</div>',
        "</div>",
    ]
    undated = data.by_month.get(UNDATED)
    if undated:
        out.append(f'<p class="meta">{undated.articles:,} undated article(s) are counted in the figures and by '
                   f'outlet, not by month ({undated.share:.0%} of their body text repeated).</p>')
    out.append("</section>")
    out.append(_passages_section(data))
    out.append(_copies_section(data))
    out.append(_articles_section(data))
    out.append(_quarantine_section(data))
    out.append(_runs_section(data))
    out.append("</main></body></html>\n")
    return "".join(out)


def _passages_section(data: ReportData) -> str:
    top = data.passages[:TOP_PASSAGES]
    out = [f'<section id="passages"><h2>Top passages</h2><p class="meta">{len(top)} of {data.passage_count:,} '
           "repeated passages, most copied first. A passage is a run of sentences of its first occurrence that "
           "later articles repeat, however they break it into paragraphs.</p>"]
    if not top:
        out.append('<p class="empty">No passage is repeated.</p>')
    for rank, passage in enumerate(top, 1):
        outlets = ", ".join(passage["outlets"]) or "no outlet stated"
        out.append(
            f'<section class="card passage" id="passage-{_esc(passage["passage"])}">'
            f'<h3>#{rank} · {passage["copies"]:,} copies in {passage["articles"]:,} articles · '
            f'{passage["variants"]:,} variant(s)</h3>'
            f'<p class="canonical">{_esc(passage["text"])}</p>'
            f'<p class="meta">passage <code>{_esc(passage["passage"])}</code> · first occurrence: '
            f'{_esc(_title_of(data, passage["first_record"]))} · outlets: {_esc(outlets)} · first seen '
            f'{_esc(passage["first_seen"] or "undated")} · last seen {_esc(passage["last_seen"] or "undated")}</p>'
            f'{timeline_chart(passage)}')
        different = most_different_copy(passage)
        if different is not None:
            occurrence, text = different
            left, right = marked_diff(passage["text"], text)
            out.append(
                '<div class="variants"><div><div class="meta">first occurrence</div>'
                f'{left}</div><div><div class="meta">most different copy: '
                f'{_esc(_title_of(data, occurrence["record"]))}, paragraph {occurrence["paragraph"]}, '
                f'similarity {occurrence["similarity"]:.2f}</div>{right}</div></div>')
        out.append("</section>")
    out.append("</section>")
    return "".join(out)


def _empty_section(section_id: str, title: str, message: str) -> str:
    return f'<section id="{section_id}"><h2>{title}</h2><p class="empty">{message}</p></section>'


def _copies_section(data: ReportData) -> str:
    if not data.copies:
        return _empty_section("copies", "Syndicated copies", "No article is a whole copy of an earlier one.")
    out = ['<section id="copies"><h2>Syndicated copies</h2>']
    more = f"; the first {len(data.copies)} listed" if data.copy_count > len(data.copies) else ""
    out.append(f'<p class="meta">{data.copy_count:,} article(s) are whole copies of an earlier article '
               f"(<code>duplicate_of</code>){more}.</p>")
    out.append("<table><tr><th>copy</th><th>copy of</th><th>share of words matched</th></tr>")
    for copy in data.copies:
        out.append(f"<tr><td>{_esc(_title_of(data, copy['record']))}</td>"
                   f"<td>{_esc(_title_of(data, copy['original']))}</td><td>{copy['share'] or 0:.0%}</td></tr>")
    out.append("</table></section>")
    return "".join(out)


def _articles_section(data: ReportData) -> str:
    out = ['<section id="articles"><h2>Articles with repeated text highlighted</h2>'
           '<p class="meta">Highlighted: text that repeats an earlier article; each highlight links to the '
           "paragraph it repeats, shown below. A red bar marks a paragraph that is background nearly throughout "
           "(flagged <code>repeat_of</code>).</p>"]
    if not data.articles:
        out.append('<p class="empty">No article repeats earlier text.</p>')
    targets: dict[str, set[int]] = defaultdict(set)
    for record in data.articles:
        for paragraph in record["paragraphs"]:
            for span in paragraph.get("repeated_spans") or ():
                if span["record"] in data.sources:
                    targets[span["record"]].add(span["paragraph"])
    linkable = {(record, index) for record, indexes in targets.items() for index in indexes}
    for record in data.articles:
        out.append(f'<article class="shown" id="article-{_esc(record["id"])}" '
                   f'data-path="{_esc(record["source"]["path"])}"><h3>{_esc(_title_of(data, record["id"]))}</h3>'
                   f'<p class="meta"><code>{_esc(record["source"]["path"])}</code> · {record["repeats"]} repeated '
                   "paragraph(s)</p>")
        out += [highlighted_paragraph(p, linkable) for p in record["paragraphs"]]
        out.append("</article>")
    if targets:
        out.append("<h3>First occurrences</h3>")
    for source_id in sorted(targets, key=lambda r: data.titles[r][2] or "~"):
        source = data.sources[source_id]
        out.append(f'<article class="source" id="article-{_esc(source_id)}"><h3>'
                   f'{_esc(_title_of(data, source_id))}</h3><p class="meta"><code>'
                   f'{_esc(source["source"]["path"])}</code>: the paragraphs repeated by the articles above</p>')
        for index in sorted(targets[source_id]):
            paragraph = source["paragraphs"][index]
            out.append(f'<p class="target" id="{_anchor(source_id, index)}"><span class="meta">¶ {index}</span> '
                       f'{_esc(paragraph["text"])}</p>')
        out.append("</article>")
    out.append("</section>")
    return "".join(out)


def _quarantine_section(data: ReportData) -> str:
    if not data.quarantine:
        return _empty_section("quarantine", "Quarantine", "Nothing is quarantined.")
    out = ['<section id="quarantine"><h2>Quarantine</h2>']
    more = f" (the first {len(data.quarantine)} listed)" if data.quarantine_count > len(data.quarantine) else ""
    out.append(f'<p class="meta">{data.quarantine_count:,} entries{more}: raw files or items that were not '
               "read, and why. Fix the file (new bytes) and the next run picks it up.</p>")
    out.append("<table><tr><th>file</th><th>item</th><th>reason</th><th>detected</th></tr>")
    for entry in data.quarantine:
        item = entry.get("item")
        out.append(f"<tr><td><code>{_esc(entry.get('path'))}</code></td><td>{'' if item is None else item}</td>"
                   f"<td>{_esc(entry.get('reason'))}</td><td>{_esc(entry.get('detected_at'))}</td></tr>")
    out.append("</table></section>")
    return "".join(out)


def _runs_section(data: ReportData) -> str:
    if not data.runs:
        return _empty_section("runs", "Last runs", "No run yet.")
    out = ['<section id="runs"><h2>Last runs</h2>']
    out.append("<table><tr><th>run</th><th>finished</th><th>outcome</th><th>files new / changed / quarantined</th>"
               "<th>records written / rewritten</th><th>repeats flagged</th><th>timings (s)</th></tr>")
    for run in data.runs:
        s = run["summary"]
        timings = ", ".join(f"{k} {v:.2f}" for k, v in (s.get("timings") or {}).items())
        total = sum((s.get("timings") or {}).values())
        out.append(f"<tr><td>#{run['seq']} <code>{_esc(run['run_id'])}</code></td>"
                   f"<td>{_esc(run['finished_at'])}</td><td>{_esc(run['outcome'])}</td>"
                   f"<td>{s.get('files_new', 0)} / {s.get('files_changed', 0)} / "
                   f"{s.get('files_quarantined', 0) + s.get('items_quarantined', 0)}</td>"
                   f"<td>{s.get('records_written', 0)} / {s.get('records_rewritten', 0)}</td>"
                   f"<td>{s.get('repeats_flagged', 0)}</td><td>{_esc(timings)} (total {total:.2f})</td></tr>")
    out.append("</table></section>")
    return "".join(out)


def top_passage_rows(data: ReportData, limit: int = TOP_PASSAGES) -> list[dict[str, Any]]:
    """The top passages as table rows (the Prefect table artifact)."""
    return [{"passage": p["passage"], "copies": p["copies"], "articles": p["articles"], "variants": p["variants"],
             "outlets": ", ".join(p["outlets"]), "first_seen": p["first_seen"], "last_seen": p["last_seen"],
             "text": p["text"][:160]} for p in data.passages[:limit]]


def write_report(processed_dir: str | Path, out: str | Path, progress: IO[str] | None = None) -> dict[str, Any]:
    """Write the HTML report of ``processed_dir`` to ``out`` (atomically); returns what it holds and timings."""
    started = time.perf_counter()
    data = collect(processed_dir, progress)
    t0 = time.perf_counter()
    page = render(data, processed_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, page)
    data.timings["render"] = round(time.perf_counter() - t0, 3)
    data.timings["total"] = round(time.perf_counter() - started, 3)
    if progress is not None and data.total.articles >= PROGRESS_EVERY:
        progress.write(f"report: written {out} ({len(page) / 1024:.0f} KiB, {data.timings['total']:.1f} s)\n")
    return {"path": str(out), "records": data.total.articles, "passages": data.passage_count, "bytes": len(page),
            "timings": data.timings, "top_passages": top_passage_rows(data)}

