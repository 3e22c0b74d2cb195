"""One ingest run as three library steps: plan, prepare (per batch), commit.

``flows/ingest.py`` wraps each step in a Prefect task; ``run_ingest`` chains them without
Prefect for tests and scripts. The result depends only on which files have arrived:
articles are decided in publication order, and an article that arrives late but was
published earlier is decided before the ones after it, which are decided again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.bloom import BLOOM_FILE
from pipeline.check import quick_repair
from pipeline.clean import Paragraph, clean_document
from pipeline.dedup import DedupSettings, band_keys
from pipeline.metadata import Metadata, body_text, extract_metadata, settle_languages
from pipeline.read import DEFAULT_MAX_BYTES, BadInput, Problem, RawEntry, parse, read_bytes, scan_raw, sha256_bytes
from pipeline.records import (
    RECORDS_DIR,
    RunContext,
    build_record,
    build_tombstone,
    dumps,
    finish_parts,
    note_outputs,
    part_name,
    write_json_atomic,
    write_part_tmp,
    write_text_atomic,
)
from pipeline.repeats import ArticleDecision, RepeatEngine, RunArticle
from pipeline.state import (
    SqliteUnits,
    StateError,
    Store,
    connect,
    shingles_from_blob,
    signature_from_blob,
    state_exists,
    utc_now,
    writer_lock,
)
from pipeline.units import Units, UnitSketcher

LAST_RUN_MD = "last_run.md"  # the run report, readable without Prefect
UNDATED = "~"  # sorts after every ISO date: undated articles come last
CRASH_ENV = "NEWSDEDUP_CRASH_AT"


def _crash_point(name: str) -> None:
    """Crash-safety tests SIGKILL a real run here (env NEWSDEDUP_CRASH_AT=name); no-op otherwise."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class IngestSettings:
    max_file_bytes: int = DEFAULT_MAX_BYTES
    batch_size: int = 200  # files per prepare task
    # Raw bytes one run reads at most; the rest waits for the next run. A run holds its
    # prepared articles (text, sentence units, sketches) in memory until its one commit, and
    # the commit's temporaries peak at about as much again, so this bounds its memory on a
    # first load of a large archive: about 30 MB per MB of plain text at the peak, over a base
    # of ~300 MB with Prefect; see README, Benchmarks, for the peaks measured at this bound.
    max_run_bytes: int = 16 * 1024 * 1024
    lock_wait_seconds: float = 0.0
    dedup: DedupSettings = field(default_factory=DedupSettings)


@dataclass
class PlannedFile:
    entry: RawEntry
    mtime_ns: int
    known_sha256: str | None  # None for a file never seen, or never hashed (quarantined unread)
    known: bool = False  # the files table has a row for this path


@dataclass
class Plan:
    to_read: list[PlannedFile]
    unchanged: int
    problems: list[Problem]  # found while scanning (symlinks, unsupported types)
    seen: int
    deferred: int = 0  # files left for the next run (max_run_bytes)
    present: set[str] = field(default_factory=set)  # every path found under the raw dir
    later: list[PlannedFile] = field(default_factory=list)  # the deferred files, in scan order

    def next_run(self, max_run_bytes: int | None) -> list[PlannedFile]:
        """The files the next run will read, if raw/ does not change meanwhile."""
        return within_budget(self.later, max_run_bytes)[0]


@dataclass
class PreparedArticle:
    record_id: str
    path: str
    item: int | None
    sha256: str
    format: str
    meta: Metadata
    paragraphs: list[Paragraph]
    units: Units | None
    extra: dict[str, Any]

    @property
    def order(self) -> tuple[str, str, int]:
        return (sort_key(self.meta.published), self.path, self.item if self.item is not None else -1)

    @property
    def group(self) -> str:
        return house_line_group(self.path, self.meta.outlet, self.meta.url)


def house_line_group(path: str, outlet: str | None, url: str | None) -> str:
    """Whose house lines an article shares: its stated outlet, else its site, else its folder.

    Only used to count evidence for house lines; never written into a record as metadata.
    """
    if outlet:
        return "outlet:" + outlet.casefold()
    if url and "//" in url:
        host = url.split("//", 1)[1].split("/", 1)[0].casefold().removeprefix("www.")
        if host:
            return "site:" + host
    return "dir:" + (path.rsplit("/", 1)[0] if "/" in path else "")


@dataclass
class FileOutcome:
    path: str
    sha256: str | None
    size: int
    mtime_ns: int
    status: str  # "ok" | "quarantined" | "unchanged"
    reason: str | None = None
    changed: bool = False  # bytes differ from what an earlier run processed


@dataclass
class PreparedBatch:
    articles: list[PreparedArticle]
    files: list[FileOutcome]
    problems: list[Problem]


def record_id_for(path: str, key: str | None) -> str:
    """Stable across reruns and rewrites: the file's path, and for an item of a JSON file its
    key (``read.item_key``: its own id, url or content), never its position in the file."""
    name = path if key is None else f"{path}#{key}"
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:20]


def sort_key(published: str | None) -> str:
    """Publication time as sortable text: UTC for datetimes with an offset."""
    if not published:
        return UNDATED
    if "T" not in published:
        return f"{published}T00:00:00"
    parsed = datetime.fromisoformat(published)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed.isoformat(timespec="seconds")


# --- plan ------------------------------------------------------------------------------


def plan_run(raw_dir: Path, store: Store, max_run_bytes: int | None = None) -> Plan:
    """Which files need reading: new ones, and known ones whose size or mtime moved
    (their bytes are hashed in ``prepare_batch`` to tell a real change from a touch).
    Past ``max_run_bytes`` of them, the rest is deferred to the next run."""
    entries, problems = scan_raw(raw_dir)
    wanted = _wanted(entries, store.known_files())
    to_read, later = within_budget(wanted, max_run_bytes)
    present = {e.path for e in entries} | {p.path for p in problems}
    unchanged = len(entries) - len(wanted)
    return Plan(to_read, unchanged, problems, len(entries) + len(problems), len(later), present, later)


def _wanted(entries: list[RawEntry], known: Mapping[str, Any]) -> list[PlannedFile]:
    """The entries to read: new ones, and known ones (rows of the files table by path) whose
    size or mtime moved."""
    wanted: list[PlannedFile] = []
    for entry in entries:
        mtime_ns = entry.modified_ns()
        row = known.get(entry.path)
        if row is not None and row["size"] == entry.size and row["mtime_ns"] == mtime_ns:
            continue
        wanted.append(PlannedFile(entry, mtime_ns, row["sha256"] if row is not None else None, row is not None))
    return wanted


def within_budget(files: list[PlannedFile], max_run_bytes: int | None) -> tuple[list[PlannedFile], list[PlannedFile]]:
    """(the files one run reads, the files deferred): in order, each file that still fits in
    ``max_run_bytes`` (the first always does, however large)."""
    if max_run_bytes is None:
        return files, []
    chosen: list[PlannedFile] = []
    deferred: list[PlannedFile] = []
    budget = 0
    for planned in files:
        if chosen and budget + planned.entry.size > max_run_bytes:
            deferred.append(planned)
            continue
        budget += planned.entry.size
        chosen.append(planned)
    return chosen, deferred


def preview_run(raw_dir: Path, processed_dir: Path, max_run_bytes: int | None = None) -> list[PlannedFile]:
    """The files the next run would read (``plan_run``'s ``to_read``), found without the writer
    lock and without writing: to start preparing them before the run itself starts. A guess:
    the run plans again under the lock, and uses only what still matches."""
    try:
        conn = connect(Path(processed_dir), readonly=True)
    except StateError:
        known: dict[str, Any] = {}  # no state yet: every file is new
    else:
        try:
            known = {row["path"]: row for row in conn.execute("SELECT path, size, mtime_ns, sha256 FROM files")}
        except sqlite3.Error:
            return []
        finally:
            conn.close()
    entries, _ = scan_raw(Path(raw_dir))
    return within_budget(_wanted(entries, known), max_run_bytes)[0]


def pending_files(raw_dir: Path, processed_dir: Path) -> int | None:
    """How many raw files a run would read now (new or changed), read without the writer
    lock and without writing; None when the processed dir holds no state yet."""
    pending = pending_paths(raw_dir, processed_dir)
    return None if pending is None else len(pending)


def pending_paths(raw_dir: Path, processed_dir: Path) -> list[tuple[str, str]] | None:
    """The raw files a run would look at now, as (path, why): "new", "changed" (size or
    mtime differ; a run then compares SHA-256), or the reason it cannot be read and is not
    yet in the quarantine list. Sorted by path; None when the processed dir holds no state."""
    try:
        conn = connect(Path(processed_dir), readonly=True)
    except StateError:
        return None
    try:
        known = {row["path"]: row for row in conn.execute("SELECT path, size, mtime_ns FROM files")}
        reported = {row[0] for row in conn.execute("SELECT DISTINCT path FROM quarantine")}
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    entries, problems = scan_raw(Path(raw_dir))
    pending: list[tuple[str, str]] = []
    for entry in entries:
        row = known.get(entry.path)
        if row is None:
            pending.append((entry.path, "new"))
        elif row["size"] != entry.size or row["mtime_ns"] != entry.modified_ns():
            pending.append((entry.path, "changed"))
    pending += [(p.path, p.reason) for p in problems if p.path not in reported]
    return sorted(pending)


BATCH_BYTES = 2 * 1024 * 1024  # raw bytes per batch at most (a larger file is a batch alone)


def batches(items: list[PlannedFile], size: int, max_bytes: int = BATCH_BYTES) -> Iterator[list[PlannedFile]]:
    """Consecutive batches of at most ``size`` files and ``max_bytes`` raw bytes: 200 HTML pages
    are 30 MB and a minute of work, one task that no second process could share."""
    batch: list[PlannedFile] = []
    held = 0
    for planned in items:
        if batch and (len(batch) >= size or held + planned.entry.size > max_bytes):
            yield batch
            batch, held = [], 0
        batch.append(planned)
        held += planned.entry.size
    if batch:
        yield batch


# --- prepare ---------------------------------------------------------------------------


def prepare_batch(files: Iterable[PlannedFile], settings: IngestSettings) -> PreparedBatch:
    """Read, clean, extract metadata and sketch a batch of files (no state is touched)."""
    batch = PreparedBatch([], [], [])
    known: dict[str, bool] = {}
    for number, planned in enumerate(files):
        if number == 1:
            _crash_point("prepare-batch")  # a worker killed mid-batch (tests/test_flow_dask.py)
        _prepare_file(planned, settings, batch)
        known[planned.entry.path] = planned.known
    _settle_languages(batch, known)
    _sketch(batch.articles, settings.dedup)
    return batch


def prepare_packed(files: list[PlannedFile], settings: IngestSettings) -> bytes:
    """``prepare_batch`` as one bytes value, for a batch prepared on another machine: the
    runners in between (Prefect, Dask) pass it on without walking or copying its articles,
    paragraphs and arrays one by one."""
    return pickle.dumps(prepare_batch(files, settings), protocol=pickle.HIGHEST_PROTOCOL)


def unpack_batch(packed: bytes) -> PreparedBatch:
    """The batch ``prepare_packed`` made (bytes from our own workers, never from outside)."""
    batch = pickle.loads(packed)
    if not isinstance(batch, PreparedBatch):
        raise TypeError(f"expected a packed PreparedBatch, got {type(batch).__name__}")
    return batch


def _prepare_file(planned: PlannedFile, settings: IngestSettings, batch: PreparedBatch) -> None:
    entry = planned.entry
    sha: str | None = None

    def quarantine(reason: str) -> None:
        batch.files.append(FileOutcome(entry.path, sha, entry.size, planned.mtime_ns, "quarantined", reason,
                                       changed=planned.known))

    try:
        data = read_bytes(entry, settings.max_file_bytes)
        sha = sha256_bytes(data)
        if planned.known_sha256 == sha:
            batch.files.append(FileOutcome(entry.path, sha, entry.size, planned.mtime_ns, "unchanged"))
            return
        documents, problems = parse(entry, data)
        file_articles = []
        for doc in documents:
            cleaned = clean_document(doc)
            if not any(p.kind == "body" for p in cleaned.paragraphs):
                problems.append(Problem(doc.path, "no body text left after cleaning", doc.item, doc.sha256))
                continue
            article = PreparedArticle(record_id_for(doc.path, doc.key), doc.path, doc.item, doc.sha256, doc.format,
                                      extract_metadata(doc, cleaned, detect=False), cleaned.paragraphs, None,
                                      doc.extra)
            _check_storable(article)
            file_articles.append(article)
    except BadInput as exc:
        quarantine(str(exc))
        return
    except OSError as exc:
        quarantine(f"unreadable: {exc.strerror or exc}")
        return
    except Exception as exc:  # a parser bug on one odd file must not stop the batch
        quarantine(_failure(exc))
        return
    if not file_articles:
        quarantine("; ".join(sorted({p.reason for p in problems})) or "no articles")
        return
    batch.problems.extend(problems)
    batch.articles.extend(file_articles)
    batch.files.append(FileOutcome(entry.path, sha, entry.size, planned.mtime_ns, "ok",
                                   changed=planned.known and planned.known_sha256 != sha))


def _failure(exc: Exception) -> str:
    return f"failed to process: {type(exc).__name__}: {str(exc)[:300]}"


def _settle_languages(batch: PreparedBatch, known: dict[str, bool]) -> None:
    """The batch's languages in one detection (``_prepare_file`` leaves them to this). Should
    it raise, again file by file: a file whose articles fail is quarantined, as
    ``_prepare_file`` quarantines one, and the rest of the batch goes on."""
    def settle(articles: list[PreparedArticle]) -> None:
        settle_languages([a.meta for a in articles], [body_text(a.paragraphs) for a in articles])

    try:
        settle(batch.articles)
        return
    except Exception:  # which file failed is found below
        pass
    by_file: dict[str, list[PreparedArticle]] = {}
    for article in batch.articles:
        by_file.setdefault(article.path, []).append(article)
    failed: dict[str, str] = {}
    for path, articles in by_file.items():
        try:
            settle(articles)
        except Exception as exc:
            failed[path] = _failure(exc)
    if failed:
        batch.articles[:] = [a for a in batch.articles if a.path not in failed]
        batch.problems[:] = [p for p in batch.problems if p.path not in failed]
        batch.files[:] = [replace(o, status="quarantined", reason=failed[o.path], changed=known[o.path])
                          if o.path in failed else o for o in batch.files]


def _check_storable(article: PreparedArticle) -> None:
    """What the record will hold must encode as UTF-8 JSON; found here, not at commit."""
    # The text is most of the bytes: encoding it is the check (a lone surrogate fails), with no
    # JSON pass over it; the small metadata and extra fields go through the JSON encoder.
    try:
        "\n".join(p.text for p in article.paragraphs).encode("utf-8")
        json.dumps({"m": article.meta.as_dict(), "e": article.extra}, ensure_ascii=False, allow_nan=False
                   ).encode("utf-8")
    except (UnicodeEncodeError, ValueError) as exc:
        raise BadInput(f"text that cannot be stored as UTF-8 JSON: {type(exc).__name__}: {str(exc)[:200]}") from exc


def _sketch(articles: list[PreparedArticle], settings: DedupSettings) -> None:
    """One vectorised segment-and-sketch pass over every body paragraph of the batch."""
    units = UnitSketcher(settings).sketch([[(p.kind, p.text) for p in a.paragraphs] for a in articles])
    for article, article_units in zip(articles, units, strict=True):
        article.units = article_units


# --- commit ----------------------------------------------------------------------------


@dataclass
class _Item:
    """An article taking part in this run's decisions: new, or a stored one decided again."""

    article: RunArticle
    new: PreparedArticle | None = None
    record_text: str | None = None  # stored only: its current record

    @property
    def order(self) -> tuple[str, str, int]:
        return self.article.order


@dataclass
class RunSummary:
    run_id: str
    run_seq: int
    started_at: str
    finished_at: str = ""
    outcome: str = "completed"
    files_seen: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_deferred: int = 0  # left for the next run (max_run_bytes)
    files_quarantined: int = 0
    items_quarantined: int = 0
    records_written: int = 0
    records_rewritten: int = 0
    paragraphs: int = 0
    repeats_flagged: int = 0  # paragraphs of new records that repeat earlier text
    spans_flagged: int = 0  # repeated spans inside paragraphs that stay body text
    duplicates: int = 0  # new records that are whole copies of an earlier article (duplicate_of)
    replayed_articles: int = 0  # existing articles published after this run's earliest change
    top_passages: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)  # found wrong by the check at the start, and repaired

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _record_for(item: _Item, decision: ArticleDecision, run: RunContext) -> dict[str, Any]:
    if item.new is not None:
        a = item.new
        return build_record(record_id=a.record_id, path=a.path, item=a.item, sha256=a.sha256, fmt=a.format,
                            meta=a.meta, paragraphs=a.paragraphs, decision=decision, extra=a.extra, run=run)
    assert item.record_text is not None
    old = json.loads(item.record_text)
    meta = Metadata(**{k: old.get(k) for k in Metadata.__dataclass_fields__})
    paragraphs = [Paragraph(p["kind"], p["text"]) for p in old["paragraphs"]]
    source = old["source"]
    return build_record(record_id=old["id"], path=source["path"], item=source.get("item"), sha256=source["sha256"],
                        fmt=source["format"], meta=meta, paragraphs=paragraphs, decision=decision,
                        extra=old.get("extra", {}), run=run)


def _stored_item(units: SqliteUnits, row: Any) -> _Item:
    """A stored article as the decisions need it: its units (uids kept) and paragraphs."""
    rows = units.article_units(row["record_id"])
    record = json.loads(row["record"])
    sets = [shingles_from_blob(r["shingles"]) for r in rows]
    num_perm = units.settings.num_perm
    article_units = Units(
        para=np.array([r["para"] for r in rows], dtype=np.int32),
        start=np.array([r["start_char"] for r in rows], dtype=np.int32),
        end=np.array([r["end_char"] for r in rows], dtype=np.int32),
        words=np.array([r["words"] for r in rows], dtype=np.int32),
        eligible=np.array([bool(r["eligible"]) for r in rows], dtype=bool),
        shingles=np.concatenate(sets) if sets else np.empty(0, dtype=np.uint32),
        sizes=np.array([x.size for x in sets], dtype=np.int64),
        signatures=np.array([signature_from_blob(r["signature"]) for r in rows], dtype=np.uint32).reshape(
            len(rows), num_perm),
        numbers=np.array([r["numbers"] for r in rows], dtype=np.int64),
    )
    article = RunArticle(
        record_id=row["record_id"], order=(row["sort_key"], row["path"], row["item"]),
        group=house_line_group(record["source"]["path"], record.get("outlet"), record.get("url")),
        paragraphs=[(p["kind"], p["text"]) for p in record["paragraphs"]], units=article_units,
        uids=np.array([r["uid"] for r in rows], dtype=np.int64))
    return _Item(article, record_text=row["record"])


def _superseded(conn: Any, outcomes: list[FileOutcome]) -> list[Any]:
    """Stored articles of files whose new bytes parsed: the new version replaces every one of
    them. Asked of the records themselves, not of the files table: a file quarantined in
    between (its bytes never hashed) still holds the records of its last good version."""
    paths = sorted({o.path for o in outcomes if o.status == "ok" and conn.execute(
        "SELECT 1 FROM articles WHERE path = ? AND sha256 != ? LIMIT 1", (o.path, o.sha256)).fetchone()})
    rows: list[Any] = []
    for path in paths:
        rows += conn.execute("SELECT * FROM articles WHERE path = ?", (path,)).fetchall()
    return rows


def _tail(conn: Any, articles: list[PreparedArticle], removed: list[Any], everything: bool = False) -> list[Any]:
    """Stored articles published at or after the run's earliest change: decided again
    (``everything``: all of them, when the decision settings changed)."""
    orders = [a.order for a in articles] + [(r["sort_key"], r["path"], r["item"]) for r in removed]
    if everything:
        orders.append(("", "", -1))  # before every stored article
    if not orders:
        return []
    removed_ids = {r["record_id"] for r in removed}
    return [r for r in conn.execute(
        "SELECT * FROM articles WHERE (sort_key, path, item) >= (?, ?, ?) ORDER BY sort_key, path, item",
        min(orders)) if r["record_id"] not in removed_ids]


def _removed_keys(units: SqliteUnits, removed: list[Any]) -> np.ndarray:
    """LSH keys held by units that leave with superseded articles: their holders must move.
    (A key of theirs held by an earlier article stays where it is.) Read before they are deleted."""
    settings = units.settings
    rows = [r for row in removed for r in units.article_units(row["record_id"]) if r["eligible"]]
    if not rows:
        return np.empty(0, dtype=np.int64)
    sigs = np.array([signature_from_blob(r["signature"]) for r in rows], dtype=np.uint32)
    keys, holders, _ = units.holders(np.unique(band_keys(sigs, settings.bands, settings.rows)))
    return keys[np.isin(holders, np.array([r["uid"] for r in rows], dtype=np.int64))]


def _new_items(articles: list[PreparedArticle], next_uid: int, num_perm: int) -> list[_Item]:
    items = []
    for a in articles:
        units = a.units if a.units is not None else Units.empty(num_perm)
        uids = np.arange(next_uid, next_uid + len(units), dtype=np.int64)
        next_uid += len(units)
        items.append(_Item(RunArticle(a.record_id, a.order, a.group, [(p.kind, p.text) for p in a.paragraphs],
                                      units, uids), new=a))
    return items


def _unit_rows(item: _Item, decision: ArticleDecision) -> list[tuple[Any, ...]]:
    u = item.article.units
    n = len(u)
    if not n:
        return []
    # One bytes object per array, sliced per unit: no per-unit numpy calls.
    shingle_bytes = np.ascontiguousarray(u.shingles, dtype=np.uint32).tobytes()
    ends = (np.cumsum(u.sizes) * 4).tolist()
    starts = [0, *ends[:-1]]
    sig_bytes = np.ascontiguousarray(u.signatures, dtype=np.uint32).tobytes()
    width = u.signatures.shape[1] * 4
    sims = [None if x != x else x for x in decision.units_similarity.tolist()]  # NaN -> NULL
    ests = [None if x != x else x for x in decision.units_estimated.tolist()]
    matches = [m if m >= 0 else None for m in decision.units_match.tolist()]
    return list(zip(
        item.article.uids.tolist(), [item.article.record_id] * n, range(n), u.para.tolist(), u.start.tolist(),
        u.end.tolist(), u.words.tolist(), u.eligible.astype(int).tolist(),
        [shingle_bytes[a:b] for a, b in zip(starts, ends, strict=True)],
        [sig_bytes[i * width : (i + 1) * width] for i in range(n)],
        matches, decision.units_root.tolist(), sims, ests, decision.units_passage, u.numbers.tolist(), strict=True))


def _span_rows(record_id: str, decision: ArticleDecision) -> list[tuple[Any, ...]]:
    rows = []
    for para, (repeat, spans) in sorted(decision.paragraphs.items()):
        for sp in spans:
            rows.append((record_id, para, sp.start, sp.end, sp.passage, sp.record, sp.paragraph, sp.similarity,
                         sp.words, int(repeat is not None)))
    return rows


def _note_deletions(store: Store, removed: list[Any], articles: list[PreparedArticle], run: RunContext) -> None:
    """Superseded records whose id the new version of their file no longer has: a tombstone
    each, for `since` readers (an item gone from a changed JSON file)."""
    new_ids = {a.record_id for a in articles}
    tombstones = [(r["record_id"], r["path"], dumps(build_tombstone(json.loads(r["record"]), run)))
                  for r in removed if r["record_id"] not in new_ids]
    store.note_deletions(tombstones, new_ids, run.run_seq, run.processed_at)


def _stable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "pipeline"}


@contextlib.contextmanager
def _timed(summary: RunSummary, stage: str) -> Iterator[None]:
    """Adds the wall time of the block to ``summary.timings[stage]`` (the run report shows them)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        summary.timings[stage] = round(summary.timings.get(stage, 0.0) + time.perf_counter() - started, 3)


def commit(store: Store, prepared: list[PreparedBatch], plan: Plan, summary: RunSummary) -> RunSummary:
    """Decide repeats and write records, state and quarantine in one transaction."""
    started = time.perf_counter()
    settings = store.settings
    run = RunContext(summary.run_id, summary.run_seq, utc_now())
    conn = store.conn
    articles = [a for batch in prepared for a in batch.articles]
    outcomes = [o for batch in prepared for o in batch.files]
    problems = plan.problems + [p for batch in prepared for p in batch.problems]

    _crash_point("before-commit")
    with store.transaction():
        if store.bloom is None:
            store.bloom = store.open_bloom()
        units = SqliteUnits(conn, settings, store.bloom)
        removed = _superseded(conn, outcomes)
        tail = [_stored_item(units, row) for row in _tail(conn, articles, removed, store.redecide_all)]
        removed_keys = _removed_keys(units, removed)
        next_uid = units.next_uid()  # taken before deleting: a uid is never reused
        touched_parts = {row["part"] for row in removed}
        units.delete_records([r["record_id"] for r in removed])
        conn.executemany("DELETE FROM articles WHERE record_id = ?", [(r["record_id"],) for r in removed])
        _note_deletions(store, removed, articles, run)

        items = sorted(_new_items(articles, next_uid, settings.num_perm) + tail, key=lambda i: i.order)
        with _timed(summary, "decide"):
            decided = RepeatEngine(settings).decide([i.article for i in items], units, removed_keys)

        with _timed(summary, "write"):
            units.delete_records([i.article.record_id for i in tail])
            written = _write_decisions(conn, units, items, decided.articles, run, summary, touched_parts)
        with _timed(summary, "index"):
            units.set_holders(decided.holder_keys, decided.holder_uids, decided.dropped_keys)
            store.bloom = units.bloom  # set_holders may have replaced it with a larger one
            store.save_bloom(store.bloom, run.run_seq)
        summary.replayed_articles = len(tail)
        with _timed(summary, "parts"):
            _write_parts(conn, store.processed_dir, run, written, touched_parts)

        _record_files_and_quarantine(conn, outcomes, problems, run, summary)
        # A quarantined file that is gone from raw/ needs no more attention. (Records of
        # deleted files are kept: raw/ may be pruned once processed.)
        gone = [row[0] for row in conn.execute("SELECT DISTINCT path FROM quarantine") if row[0] not in plan.present]
        conn.executemany("DELETE FROM quarantine WHERE path = ?", [(p,) for p in gone])
        conn.executemany("DELETE FROM files WHERE path = ? AND status = 'quarantined'", [(p,) for p in gone])
        store.save_meta()  # the settings (and raw dir) every record is now decided with
        summary.files_seen = plan.seen
        summary.files_deferred = plan.deferred
        summary.files_unchanged += plan.unchanged
        summary.top_passages = _top_passages(conn, run.run_seq)
        summary.timings["commit"] = round(time.perf_counter() - started, 3)
        summary.finished_at = utc_now()
        store.record_run(run.run_seq, run.run_id, summary.started_at, summary.outcome, summary.as_dict())
        _crash_point("parts-written")

    # After the commit: move parts into place (repeated by the next run if we die here).
    store.redecide_all = False
    _crash_point("committed")
    store.install_bloom()
    with store.transaction():
        finish_parts(conn, store.processed_dir)
        note_outputs(conn, store.processed_dir, [BLOOM_FILE])  # for the next run's check
    _crash_point("parts-renamed")
    write_reports(store, summary)
    return summary


def reindex(processed_dir: Path, dedup: DedupSettings, lock_wait_seconds: float = 0.0,
            run_id: str | None = None) -> RunSummary:
    """Sketch every stored article again from its stored (cleaned) text with ``dedup``, and
    decide them all again: ids are kept, raw files are not read. Like a run: under the writer
    lock, one transaction, then the parts protocol (a kill leaves the old state or the new one)."""
    processed_dir = Path(processed_dir)
    if not state_exists(processed_dir):
        raise StateError(f"no newsdedup state in {processed_dir}: nothing to reindex (`newsdedup run` builds it)")
    with writer_lock(processed_dir, lock_wait_seconds):
        store = Store(processed_dir, dedup, rebuild=True)
        try:
            quick_repair(store.conn, processed_dir)  # as a run starts: parts of a run killed after its commit
            summary = RunSummary(run_id or new_run_id(), store.next_run_seq(), utc_now(), outcome="reindexed")
            _reindex_commit(store, summary)
        finally:
            store.close()
    return summary


def _reindex_commit(store: Store, summary: RunSummary, chunk: int = 500) -> None:
    started = time.perf_counter()
    settings = store.settings
    conn = store.conn
    run = RunContext(summary.run_id, summary.run_seq, utc_now())
    _crash_point("before-commit")
    with store.transaction():
        rows = conn.execute("SELECT * FROM articles ORDER BY sort_key, path, item").fetchall()
        units = SqliteUnits(conn, settings)
        next_uid = units.next_uid()  # taken before deleting: a uid is never reused
        sketcher = UnitSketcher(settings)
        items: list[_Item] = []
        for start in range(0, len(rows), chunk):  # bounds the sketcher's temporaries
            part = rows[start : start + chunk]
            records = [json.loads(row["record"]) for row in part]
            paragraphs = [[(p["kind"], p["text"]) for p in record["paragraphs"]] for record in records]
            for row, record, paras, article_units in zip(part, records, paragraphs, sketcher.sketch(paragraphs),
                                                         strict=True):
                uids = np.arange(next_uid, next_uid + len(article_units), dtype=np.int64)
                next_uid += len(article_units)
                group = house_line_group(record["source"]["path"], record.get("outlet"), record.get("url"))
                items.append(_Item(RunArticle(row["record_id"], (row["sort_key"], row["path"], row["item"]), group,
                                              paras, article_units, uids), record_text=row["record"]))
        for table in ("units", "spans", "house_lines", "keys", "keys_recent"):
            conn.execute(f"DELETE FROM {table}")
        t0 = time.perf_counter()
        decided = RepeatEngine(settings).decide([i.article for i in items], units)
        summary.timings["decide"] = round(time.perf_counter() - t0, 3)
        touched_parts: set[str] = set()
        written = _write_decisions(conn, units, items, decided.articles, run, summary, touched_parts)
        units.set_holders(decided.holder_keys, decided.holder_uids, decided.dropped_keys)
        store.bloom = store._rebuild_bloom(run.run_seq)  # the old keys are gone: a filter of the new ones
        store.save_bloom(store.bloom, run.run_seq)
        _write_parts(conn, store.processed_dir, run, written, touched_parts)
        store.save_meta()
        summary.replayed_articles = len(items)
        summary.timings["reindex"] = round(time.perf_counter() - started, 3)
        summary.finished_at = utc_now()
        store.record_run(run.run_seq, run.run_id, summary.started_at, summary.outcome, summary.as_dict())
        _crash_point("parts-written")
    _crash_point("committed")
    store.install_bloom()
    with store.transaction():
        finish_parts(conn, store.processed_dir)
    write_reports(store, summary)


def _write_decisions(conn: Any, units: SqliteUnits, items: list[_Item], decisions: list[ArticleDecision],
                     run: RunContext, summary: RunSummary, touched_parts: set[str]) -> list[str]:
    """Units, spans, house lines and records of every article of the run; returns the record
    lines to write (new ones, and stored ones whose record changed)."""
    new_part = part_name(run.run_seq)
    written: list[str] = []
    unit_rows: list[tuple[Any, ...]] = []
    span_rows: list[tuple[Any, ...]] = []
    house_rows: list[tuple[str, int, str, int]] = []
    article_rows: list[tuple[Any, ...]] = []
    for item, decision in zip(items, decisions, strict=True):
        record_id = item.article.record_id
        unit_rows += _unit_rows(item, decision)
        if len(unit_rows) >= units.unit_write_slice:  # written as they come: a whole run's would be ~150 MB
            units.insert_units(unit_rows)
            unit_rows = []
        span_rows += _span_rows(record_id, decision)
        if item.article.group is not None:
            house_rows += [(item.article.group, h, record_id, para) for para, h in decision.house_lines]
        record = _record_for(item, decision, run)
        if item.new is None:
            assert item.record_text is not None
            if _stable(json.loads(item.record_text)) == _stable(record):
                continue  # decisions unchanged: the record stays as it is
            summary.records_rewritten += 1
            touched_parts.add(conn.execute("SELECT part FROM articles WHERE record_id = ?",
                                           (record_id,)).fetchone()[0])
        else:
            summary.records_written += 1
            summary.paragraphs += len(record["paragraphs"])
            summary.repeats_flagged += record["repeats"]
            summary.spans_flagged += sum(len(p["repeated_spans"]) for p in record["paragraphs"]
                                         if p["repeat_of"] is None)
            summary.duplicates += record["duplicate_of"] is not None
        line = dumps(record)  # serialised once: the database row and the part line are the same text
        written.append(line)
        article_rows.append((record["id"], record["source"]["path"], record["source"].get("item", -1),
                             record["source"]["sha256"], item.order[0], new_part, run.run_seq, run.processed_at, line))
    # One batch (COPY on PostgreSQL): a statement per article costs a round trip each there.
    conn.executemany(
        "INSERT OR REPLACE INTO articles (record_id, path, item, sha256, sort_key, part, run_seq, written_at, "
        "record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", article_rows)
    units.insert_units(unit_rows)
    units.insert_spans(span_rows)
    units.insert_house_lines(house_rows)
    return written


def _write_parts(conn: Any, processed_dir: Path, run: RunContext, written: list[str],
                 touched_parts: set[str]) -> None:
    """The run's new part, and older parts that lost a record to it (hidden until renamed)."""
    records_dir = processed_dir / RECORDS_DIR
    new_part = part_name(run.run_seq)
    if written:
        write_part_tmp(records_dir, new_part, written)
        conn.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, 1)", (new_part, len(written)))
    for part in sorted(touched_parts - {new_part}):
        lines = [row[0] for row in conn.execute(
            "SELECT record FROM articles WHERE part = ? ORDER BY sort_key, path, item", (part,))]
        if lines:
            write_part_tmp(records_dir, part, lines)
        conn.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, 1)", (part, len(lines)))


def _record_files_and_quarantine(conn: Any, outcomes: list[FileOutcome], problems: list[Problem],
                                 run: RunContext, summary: RunSummary) -> None:
    # Read once, not a query per file: the writes below then go out in batches (on PostgreSQL a
    # read between them costs a round trip each).
    stored = {row[0] for row in conn.execute("SELECT path FROM files")}
    unchanged = [o for o in outcomes if o.status == "unchanged"]
    read = [o for o in outcomes if o.status != "unchanged"]
    # One statement per kind of write, each a batch (a statement per file cost ~0.2 ms each).
    conn.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                     [(o.size, o.mtime_ns, o.path) for o in unchanged])
    summary.files_unchanged += len(unchanged)
    # New bytes: earlier quarantine entries for these files no longer apply.
    conn.executemany("DELETE FROM quarantine WHERE path = ?", [(o.path,) for o in read])
    conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [(o.path, o.sha256, o.size, o.mtime_ns, o.status, o.reason, run.run_seq, run.processed_at)
                      for o in read])
    for o in read:
        if o.path not in stored:
            summary.files_new += 1
        elif o.changed:
            summary.files_changed += 1
        if o.status == "quarantined":
            summary.files_quarantined += 1
            kept = conn.execute("SELECT COUNT(*) FROM articles WHERE path = ?", (o.path,)).fetchone()[0]
            reason = o.reason or "unreadable"
            if kept:
                reason += f" (the {kept} record(s) from its earlier version are kept)"
            conn.execute("INSERT OR REPLACE INTO quarantine VALUES (?, -1, ?, ?, ?, ?)",
                         (o.path, o.sha256, reason, run.processed_at, run.run_seq))
            summary.quarantined.append({"path": o.path, "reason": reason})
    for p in problems:
        item = -1 if p.item is None else p.item
        exists = conn.execute("SELECT reason FROM quarantine WHERE path = ? AND item = ?", (p.path, item)).fetchone()
        if exists is not None and exists[0] == p.reason:
            continue  # already reported (a symlink found again on every scan)
        conn.execute("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
                     (p.path, item, p.sha256, p.reason, run.processed_at, run.run_seq))
        summary.items_quarantined += 1
        summary.quarantined.append({"path": p.path, "item": p.item, "reason": p.reason})


def _top_passages(conn: Any, run_seq: int, limit: int = 5) -> list[dict[str, Any]]:
    """The passages that this run's records repeated most."""
    rows = conn.execute(
        "SELECT s.passage, COUNT(*) AS copies FROM spans s "
        "JOIN articles a ON a.record_id = s.record_id WHERE a.run_seq = ? "
        "GROUP BY s.passage ORDER BY copies DESC, s.passage LIMIT ?", (run_seq, limit)).fetchall()
    out = []
    for row in rows:
        record_id, para = row["passage"].rsplit(":", 1)
        first = conn.execute("SELECT record FROM articles WHERE record_id = ?", (record_id,)).fetchone()
        paragraphs = json.loads(first[0])["paragraphs"] if first else []
        text = paragraphs[int(para)]["text"] if int(para) < len(paragraphs) else ""
        out.append({"passage": row["passage"], "copies": row["copies"], "text": text[:160]})
    return out


def write_reports(store: Store, summary: RunSummary) -> None:
    """Files a reader without Prefect can open: the last run's summary and the quarantine list."""
    names = write_report_files(store.conn, store.processed_dir, summary)
    with store.transaction():
        note_outputs(store.conn, store.processed_dir, names, summary.run_seq)  # for the next run's check


def write_report_files(conn: Any, processed: Path, summary: RunSummary) -> list[str]:
    write_json_atomic(processed / "last_run.json", summary.as_dict())
    write_text_atomic(processed / LAST_RUN_MD, summary_markdown(summary))
    rows = conn.execute("SELECT * FROM quarantine ORDER BY path, item").fetchall()
    write_json_atomic(processed / "quarantine.jsonl", [
        {"path": r["path"], "item": None if r["item"] == -1 else r["item"], "sha256": r["sha256"],
         "reason": r["reason"], "detected_at": r["detected_at"]} for r in rows])
    return ["last_run.json", LAST_RUN_MD, "quarantine.jsonl"]


# --- all steps, without Prefect ----------------------------------------------------------


def new_run_id() -> str:
    """A run's id outside Prefect, a UUID like the flow run ids a flow's runs take."""
    return str(uuid.uuid4())


class IngestRun:
    """One run's lifetime: the writer lock, the store, the summary; steps in between.

    ``with IngestRun(...) as run: run.plan(); run.prepare(group) ...; run.commit(batches)``.
    The flow wraps each step in a task; ``run_ingest`` calls them directly.
    """

    def __init__(self, raw_dir: Path, processed_dir: Path, settings: IngestSettings | None = None,
                 run_id: str | None = None) -> None:
        self.raw_dir = Path(raw_dir)
        self.processed_dir = Path(processed_dir)
        self.settings = settings or IngestSettings()
        self.run_id = run_id or new_run_id()
        self._lock = writer_lock(self.processed_dir, self.settings.lock_wait_seconds)
        self.store: Store
        self.summary: RunSummary

    def __enter__(self) -> IngestRun:
        self._lock.__enter__()
        try:
            self.store = Store(self.processed_dir, self.settings.dedup, self.raw_dir)
            # Before anything else: parts, filter and reports as the last committed run left them
            # (also the parts of a run killed after its commit).
            repairs = quick_repair(self.store.conn, self.processed_dir)
            self.summary = RunSummary(self.run_id, self.store.next_run_seq(), utc_now())
            self.summary.repairs = [str(f) for f in repairs]
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.store.close()
        finally:
            self._lock.__exit__(None, None, None)

    def plan(self) -> Plan:
        t0 = time.perf_counter()
        plan = plan_run(self.raw_dir, self.store, self.settings.max_run_bytes)
        self.summary.timings["plan"] = round(time.perf_counter() - t0, 3)
        return plan

    def prepare(self, group: list[PlannedFile]) -> PreparedBatch:
        """One batch, in this process (the flow spreads batches over a Dask cluster instead)."""
        t0 = time.perf_counter()
        batch = prepare_batch(group, self.settings)
        self.summary.timings["prepare"] = round(self.summary.timings.get("prepare", 0.0) + time.perf_counter() - t0, 3)
        return batch

    def commit(self, plan: Plan, prepared: list[PreparedBatch]) -> RunSummary:
        return commit(self.store, prepared, plan, self.summary)


def run_ingest(
    raw_dir: Path,
    processed_dir: Path,
    settings: IngestSettings | None = None,
    run_id: str | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Plan, prepare every batch, commit: one whole run under the writer lock, no Prefect."""
    with IngestRun(raw_dir, processed_dir, settings, run_id) as run:
        plan = run.plan()
        groups = list(batches(plan.to_read, run.settings.batch_size))
        prepared = []
        for number, group in enumerate(groups, 1):
            prepared.append(run.prepare(group))
            if on_batch:
                on_batch(number, len(groups))
        return run.commit(plan, prepared)


def summary_markdown(summary: RunSummary) -> str:
    """The run report, as shown in Prefect's UI and printed by ``newsdedup run``."""
    s = summary
    lines = [
        f"# newsdedup ingest run `{s.run_id}` (#{s.run_seq}): {s.outcome}",
        "",
        "| files seen | new | changed | unchanged | quarantined | records written | rewritten | paragraphs "
        "| repeated paragraphs | spans in body paragraphs | whole copies |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {s.files_seen} | {s.files_new} | {s.files_changed} | {s.files_unchanged} | "
        f"{s.files_quarantined + s.items_quarantined} | {s.records_written} | {s.records_rewritten} | "
        f"{s.paragraphs} | {s.repeats_flagged} | {s.spans_flagged} | {s.duplicates} |",
        "",
        "Timings (s): " + ", ".join(f"{k} {v}" for k, v in s.timings.items()),
    ]
    if s.files_deferred:
        lines += ["", f"{s.files_deferred} more files wait for the next run (max_run_bytes)."]
    if s.top_passages:
        lines += ["", "## Most repeated passages in this run", "", "| passage | copies | text |", "|---|---|---|"]
        lines += [f"| `{p['passage']}` | {p['copies']} | {p['text'].replace('|', '/')[:120]} |" for p in s.top_passages]
    if s.repairs:
        lines += ["", "## Repaired before the run", ""] + [f"- {r}" for r in s.repairs]
    if s.quarantined:
        lines += ["", "## Quarantined", ""]
        lines += [f"- `{q['path']}`" + (f" item {q['item']}" if q.get("item") is not None else "") + f": {q['reason']}"
                  for q in s.quarantined]
    return "\n".join(lines) + "\n"


__all__ = ["IngestRun", "IngestSettings", "Plan", "PreparedBatch", "RunSummary", "StateError", "batches", "commit",
           "plan_run", "prepare_batch", "prepare_packed", "reindex", "run_ingest", "unpack_batch",
           "summary_markdown"]
