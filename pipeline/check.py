"""Is processed/ what its state database says? The check (``newsdedup check``) and the repair.

The database (``state.sqlite``) is the truth: records, quarantine, runs, LSH keys. The rest of
processed/ is derived from it and is rebuilt from it when damaged: the part files
(``records/part-*.jsonl``, every current record in exactly one of them), the Bloom filter
(``index.bloom``) and the reports (``last_run.json``, ``last_run.md``, ``quarantine.jsonl``).

- ``check_processed``: reads everything (``PRAGMA integrity_check``, every part line against the
  database, the filter's checksum, the reports) and lists what is wrong; read-only.
- ``check_processed(repair=True)``: the same, and rewrites what is wrong from the database. Each
  file is written under a temporary name, fsynced and renamed (``os.replace``, which replaces a
  symlink in the way instead of following it): a kill mid-repair leaves the old file or the new
  one, never half of one, and the next run or repair finds whatever is still wrong.
- ``quick_repair``: the cheap part, which every run starts with. A run records the size and
  mtime of each file it writes (table ``outputs``, see ``records.note_outputs``); a file whose
  ``lstat`` still shows them is taken as written, so the check costs one ``lstat`` per file and
  reads nothing. A file that is missing, or whose size or mtime moved, is read, compared with the
  database and rewritten if it differs (if it matches, say after a copy that changed its mtime,
  it is only noted again). An edit that keeps both size and mtime passes this check;
  ``newsdedup check`` reads every line and finds it. The Bloom filter is treated alike (its bits
  are read against their CRC only when its stat moved).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline import bloom as bloom_file
from pipeline.bloom import BloomFilter
from pipeline.records import RECORDS_DIR, TMP_PREFIX, _fsync_dir, finish_parts, note_outputs, write_part_tmp
from pipeline.state import OUTPUTS_SCHEMA, STATE_FILE, StateError, build_bloom, connect, has_schema, transaction
from pipeline.state_backend import integrity_problems, state_exists

REPORTS = ("last_run.json", "last_run.md", "quarantine.jsonl")
CRASH_POINT = "repair-rewrote"  # tests SIGKILL a repair after its first rewritten file


@dataclass
class Finding:
    """One problem: the file (relative to processed/), what is wrong, what the repair did."""

    name: str
    problem: str
    action: str | None = None  # what the repair did; None: not repaired (or not asked to)
    repaired: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {self.problem}" + (f" -> {self.action}" if self.action else "")


def quick_repair(conn: sqlite3.Connection, processed_dir: Path) -> list[Finding]:
    """The cheap check, with repair, that every run starts with (under the writer lock; ``conn``
    a writer connection in autocommit mode). Also moves into place the parts of a run killed
    after its commit. Returns what was found (and repaired)."""
    conn.execute(OUTPUTS_SCHEMA)
    with transaction(conn):
        return _Inspection(conn, Path(processed_dir), thorough=False, repair=True).run()


def repair_on_start(processed_dir: Path) -> list[Finding]:
    """``quick_repair`` on its own connection; nothing when the dir holds no state yet."""
    processed_dir = Path(processed_dir)
    if not state_exists(processed_dir):
        return []
    conn = connect(processed_dir)
    try:
        return quick_repair(conn, processed_dir) if has_schema(conn) else []
    finally:
        conn.close()


def check_processed(processed_dir: Path, repair: bool = False) -> list[Finding]:
    """Everything, read in full (the caller holds the writer lock). A damaged database raises
    ``sqlite3.DatabaseError`` (nothing under processed/ can be trusted or rebuilt then); a dir
    without state raises ``StateError``."""
    processed_dir = Path(processed_dir)
    if not state_exists(processed_dir):
        raise StateError(f"no newsdedup state in {processed_dir} (run `newsdedup run` first)")
    conn = connect(processed_dir, readonly=not repair)
    try:
        if not has_schema(conn):
            raise StateError(f"no run has committed to {processed_dir} yet (run `newsdedup run`)")
        problems = integrity_problems(conn, 20)
        if problems:
            raise sqlite3.DatabaseError("integrity check failed: " + "; ".join(problems)[:300])
        if repair:
            conn.execute(OUTPUTS_SCHEMA)
            with transaction(conn):
                return _Inspection(conn, processed_dir, thorough=True, repair=True).run()
        conn.execute("BEGIN")  # one snapshot of the state
        try:
            return _Inspection(conn, processed_dir, thorough=True, repair=False).run()
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()


def part_problem(path: Path, expected: list[str]) -> str | None:
    """What is wrong with a part file that should hold exactly the lines ``expected``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"missing: {len(expected)} current record(s) in no part file"
    if stat.S_ISLNK(st.st_mode):
        return "a symlink, not a part file (file readers would read whatever it points to)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    got = Counter(lines)
    want = Counter(line.encode("utf-8") for line in expected)
    mid_line = bool(data) and not data.endswith(b"\n")
    if got == want and not mid_line:
        return None
    missing = sum((want - got).values())
    stray = sum((got - want).values())
    what = []
    if missing:
        what.append(f"{missing} of its {len(expected)} record(s) missing")
    if stray:
        what.append(f"{stray} line(s) that are no current record of this part")
    if mid_line:
        what.append("ends mid-line")
    return ", ".join(what)


class _Inspection:
    """One pass over parts, filter and reports; ``thorough`` reads everything, else only files
    whose stat moved; ``repair`` rewrites what is wrong (inside the caller's transaction)."""

    def __init__(self, conn: sqlite3.Connection, processed_dir: Path, *, thorough: bool, repair: bool) -> None:
        self.conn = conn
        self.processed_dir = processed_dir
        self.thorough = thorough
        self.repair = repair
        self.findings: list[Finding] = []
        self.noted: dict[str, tuple[int, int, int | None]] = {}
        if not thorough:
            self.noted = {row[0]: (row[1], row[2], row[3]) for row in conn.execute("SELECT * FROM outputs")}

    def run(self) -> list[Finding]:
        self._pending_and_leftovers()
        if self.repair:
            finish_parts(self.conn, self.processed_dir)
        self._parts()
        self._bloom()
        self._reports()
        return self.findings

    # --- helpers ---------------------------------------------------------------------------

    def _found(self, name: str, problem: str, fix: Callable[[], str] | None) -> None:
        finding = Finding(name, problem)
        if self.repair and fix is not None:
            try:
                finding.action = fix()
                finding.repaired = True
            except OSError as exc:
                finding.action = f"not repaired: {exc.strerror or exc}; remove it and run `newsdedup check --repair`"
        self.findings.append(finding)

    def _unchanged(self, name: str, run_seq: int | None = None) -> bool:
        """The cheap test: the file's lstat is what the run that wrote it recorded."""
        noted = self.noted.get(name)
        if self.thorough or noted is None or (run_seq is not None and noted[2] != run_seq):
            return False
        try:
            st = os.lstat(self.processed_dir / name)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == noted[:2]

    def _note(self, name: str, run_seq: int | None = None) -> None:
        if self.repair:
            note_outputs(self.conn, self.processed_dir, [name], run_seq)

    def _written(self, name: str) -> None:
        from pipeline.ingest import _crash_point

        _fsync_dir((self.processed_dir / name).parent)
        _crash_point(CRASH_POINT)

    # --- parts -----------------------------------------------------------------------------

    def _pending_and_leftovers(self) -> None:
        """Parts a run committed but was killed before moving into place (``finish_parts`` moves
        them), and files left by runs killed before their commit."""
        records_dir = self.processed_dir / RECORDS_DIR
        table = {row[0]: (row[1], row[2]) for row in self.conn.execute("SELECT name, records, pending FROM parts")}
        pending = {name for name, (_, waiting) in table.items() if waiting}
        for name in sorted(pending):
            moved = "moved into place" if table[name][0] else "removed (that run left it without records)"
            self._found(f"{RECORDS_DIR}/{name}", "committed by a run that was killed before moving it into place",
                        lambda action=moved: action)  # done by finish_parts, next
        if not records_dir.is_dir():
            return
        for entry in sorted(records_dir.iterdir()):
            name = entry.name
            if name.startswith(TMP_PREFIX) and name[len(TMP_PREFIX):] not in pending:
                self._found(f"{RECORDS_DIR}/{name}", "left by an interrupted write", lambda e=entry: self._remove(e))
            elif name.endswith(".jsonl") and not name.startswith(TMP_PREFIX) and name not in table:
                self._found(f"{RECORDS_DIR}/{name}", "not a part of the state (file readers would read it as "
                            "records)", lambda e=entry: self._remove(e))

    def _parts(self) -> None:
        conn = self.conn
        records_dir = self.processed_dir / RECORDS_DIR
        table = {row[0]: (row[1], row[2]) for row in conn.execute("SELECT name, records, pending FROM parts")}
        pending = sorted(name for name, (_, waiting) in table.items() if waiting)  # none left when repairing
        if self.thorough:
            held = {row[0]: row[1] for row in conn.execute("SELECT part, COUNT(*) FROM articles GROUP BY part")}
            for name in sorted(set(held) | set(table)):
                listed, count = table.get(name, (0, 0))[0], held.get(name, 0)
                if listed != count and name not in pending:
                    self._found(STATE_FILE, f"the parts table counts {listed} record(s) in {name}, the records "
                                f"table {count}", lambda n=name: self._fix_count(n, held))
            names = sorted(set(held) - set(pending))
        else:
            names = sorted(name for name, (records, waiting) in table.items() if records > 0 and not waiting)
        for name in names:
            rel = f"{RECORDS_DIR}/{name}"
            if self._unchanged(rel):
                continue
            expected = [row[0] for row in conn.execute(
                "SELECT record FROM articles WHERE part = ? ORDER BY sort_key, path, item", (name,))]
            problem = part_problem(records_dir / name, expected)
            if problem is None:
                self._note(rel)  # the same lines with a new mtime (a copy): trusted again by lstat
                continue
            self._found(rel, problem, lambda n=name, lines=expected: self._rewrite_part(n, lines))

    def _rewrite_part(self, name: str, lines: list[str]) -> str:
        records_dir = self.processed_dir / RECORDS_DIR
        tmp = write_part_tmp(records_dir, name, lines)
        os.replace(tmp, records_dir / name)
        self._note(f"{RECORDS_DIR}/{name}")
        self._written(f"{RECORDS_DIR}/{name}")
        return f"rewritten from the database ({len(lines)} record(s))"

    def _fix_count(self, name: str, held: dict[str, int]) -> str:
        count = held.get(name, 0)
        if count:
            self.conn.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, 0)", (name, count))
            return f"parts table set to {count}"
        self.conn.execute("DELETE FROM parts WHERE name = ?", (name,))
        self.conn.execute("DELETE FROM outputs WHERE name = ?", (f"{RECORDS_DIR}/{name}",))
        return "dropped from the parts table"

    def _remove(self, entry: Path) -> str:
        entry.unlink()
        self._written(f"{RECORDS_DIR}/{entry.name}")
        return "removed"

    # --- Bloom filter ----------------------------------------------------------------------

    def _bloom(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'bloom_generation'").fetchone()
        if row is None:
            return  # no run has committed a filter yet
        generation = int(row[0])
        name = bloom_file.BLOOM_FILE
        path = self.processed_dir / name
        header = bloom_file.read_header(path)
        if self._unchanged(name) and header is not None and header[0] == generation:
            return
        # Written since the run noted it, or never noted: its bits against their checksum.
        loaded = BloomFilter.load(self.processed_dir)
        found = None if loaded is None else loaded.generation
        if found == generation:
            self._note(name)
            return
        if found is not None:
            problem = f"written by run {found}, but the state is at run {generation}"
        elif path.exists() or path.is_symlink():
            problem = "damaged (format, size or checksum)"
        else:
            problem = "missing"
        self._found(bloom_file.BLOOM_FILE, problem, lambda: self._rebuild_bloom(generation))

    def _rebuild_bloom(self, generation: int) -> str:
        saved = BloomFilter.load_path(self.processed_dir / f"{TMP_PREFIX}{bloom_file.BLOOM_FILE}")
        if saved is not None and saved.generation == generation:
            action = "replaced by the filter the last run saved"  # killed after its commit
        else:
            build_bloom(self.conn, generation).save_tmp(self.processed_dir)
            action = "rebuilt from the database"
        bloom_file.install(self.processed_dir)
        self._note(bloom_file.BLOOM_FILE)
        self._written(bloom_file.BLOOM_FILE)
        return action

    # --- reports ---------------------------------------------------------------------------

    def _reports(self) -> None:
        last = self.conn.execute("SELECT seq, run_id, summary FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None:
            return
        wrong = {}
        for name in REPORTS:
            if self._unchanged(name, last[0]):
                continue
            problem = self._report_problem(name, last[0], last[1])
            if problem is None:
                self._note(name, last[0])
            else:
                wrong[name] = problem
        rewritten: list[str] = []

        def rewrite() -> str:
            if not rewritten:  # all three at once, from the last run's summary and the quarantine table
                rewritten.append(self._rewrite_reports(last[0], last[2]))
            return rewritten[0]

        for name, problem in wrong.items():
            self._found(name, problem, rewrite)

    def _report_problem(self, name: str, seq: int, run_id: str) -> str | None:
        path = self.processed_dir / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return "not a regular file"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "missing"
        except (OSError, UnicodeDecodeError) as exc:
            return f"unreadable ({exc})"
        if name == "last_run.md":
            ok = text.startswith(f"# newsdedup ingest run `{run_id}` (#{seq})")
            return None if ok else f"does not report the last committed run ({run_id}, #{seq})"
        try:
            values = [json.loads(line) for line in text.splitlines()] if name.endswith(".jsonl") else [json.loads(text)]
        except ValueError as exc:
            return f"not valid JSON ({exc})"
        if name == "last_run.json":
            value = values[0]
            if not isinstance(value, dict) or value.get("run_id") != run_id or value.get("run_seq") != seq:
                return f"does not report the last committed run ({run_id}, #{seq})"
            return None
        try:
            listed = Counter((v["path"], -1 if v["item"] is None else v["item"], v["reason"]) for v in values)
        except (TypeError, KeyError):
            return "entries without path, item or reason"
        stored = Counter((r[0], r[1], r[2]) for r in self.conn.execute("SELECT path, item, reason FROM quarantine"))
        if listed != stored:
            return (f"lists {sum((listed - stored).values())} entry(ies) the state does not hold and misses "
                    f"{sum((stored - listed).values())} of its {sum(stored.values())}")
        return None

    def _rewrite_reports(self, seq: int, summary_json: str | None) -> str:
        from pipeline.ingest import RunSummary, write_report_files

        fields = RunSummary.__dataclass_fields__
        summary = RunSummary(**{k: v for k, v in json.loads(summary_json or "{}").items() if k in fields})
        note_outputs(self.conn, self.processed_dir, write_report_files(self.conn, self.processed_dir, summary), seq)
        self._written(REPORTS[0])
        return "the reports rewritten from the database"
