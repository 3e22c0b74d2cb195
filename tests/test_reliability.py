"""Hostile inputs, kills and damaged state (issue 10): each case as a user would meet it.

Nothing lost, nothing wrong, no traceback: bad input gets a quarantine entry and the run goes
on; damaged state is detected and rebuilt or reported in one line. Kept fast: no test here
starts Prefect (the `newsdedup run` cases stop before it, or replace the flow by the library).
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import bloom as bloom_file
from pipeline.bloom import BloomFilter
from pipeline.clean import clean_document
from pipeline.ingest import CRASH_ENV, run_ingest
from pipeline.read import BadInput, RawEntry, decode_text, parse, scan_raw
from pipeline.records import RECORDS_DIR, iter_record_lines, read_records
from pipeline.state import LOCK_FILE, StateError, writer_lock
from tests.conftest import ROOT, SEED_FILES, make_raw

INPUTS = Path(__file__).parent / "fixtures" / "inputs"
_spec = importlib.util.spec_from_file_location("make_code_pages", INPUTS / "make_code_pages.py")
assert _spec is not None and _spec.loader is not None
CODE_PAGES = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(CODE_PAGES)

NEWSDEDUP = [sys.executable, "-m", "flows.cli"]
GOOD = "A good article beside the bad ones: the council voted on Tuesday to rebuild the old harbour wall."


def newsdedup(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"))
    env.pop(CRASH_ENV, None)
    return subprocess.run([*NEWSDEDUP, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def stable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without what legitimately differs between runs (run ids, timestamps)."""
    out = []
    for r in records:
        r = json.loads(json.dumps(r))
        r.pop("pipeline", None)
        out.append(r)
    return sorted(out, key=lambda r: r["id"])


def part_records(processed: Path) -> list[dict[str, Any]]:
    lines = []
    for part in sorted((processed / RECORDS_DIR).glob("part-*.jsonl")):
        lines += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
    return lines


def quarantine(processed: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (processed / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["path"] + ("" if r["item"] is None else f"#{r['item']}"): r["reason"] for r in rows}


def _no_flow(**_: Any) -> dict[str, Any]:
    raise AssertionError("the flow (Prefect) was started")


def cli(*args: str, capsys: pytest.CaptureFixture[str],
        flow: Callable[..., dict[str, Any]] = _no_flow) -> subprocess.CompletedProcess[str]:
    """`newsdedup ARGS` in this process (no interpreter start-up: fast), where a `run` must stop
    before its flow (or calls ``flow`` in place of the Prefect flow); an exception escaping it
    fails the test just as a traceback would."""
    from flows import cli as cli_module

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exited:
        patch.setitem(sys.modules, "flows.ingest", types.SimpleNamespace(ingest=flow))
        patch.setattr(cli_module, "_prefect_env", lambda: None)
        cli_module.main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), int(exited.value.code or 0), out.out, out.err)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


# --- 2: a file name that is not UTF-8 ---------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_quarantined_escaped_and_the_rest_is_read(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "good.txt").write_text(GOOD)
    bad_name = os.fsdecode(b"caf\xe9-latin1-name.txt")
    (raw / bad_name).write_text("An article under a Latin-1 file name, about the new tram line in the city centre.")
    (raw / os.fsdecode(b"d\xefr")).mkdir()
    (raw / os.fsdecode(b"d\xefr") / "inside.txt").write_text(GOOD.replace("harbour", "bridge"))
    processed = tmp_path / "processed"
    summary = run_ingest(raw, processed)  # raised UnicodeEncodeError on every run before
    assert summary.records_written == 1
    assert [r["source"]["path"] for r in read_records(processed)] == ["good.txt"]
    found = quarantine(processed)
    assert set(found) == {"caf\\xe9-latin1-name.txt", "d\\xefr/inside.txt"}
    assert all("not valid UTF-8" in reason and "rename" in reason for reason in found.values())
    assert run_ingest(raw, processed).items_quarantined == 0  # reported once, the next run goes on


# --- 3: code pages and stray bytes ------------------------------------------------------------


@pytest.mark.parametrize(("name", "text"), [
    ("fr_cp1252_budget.txt", CODE_PAGES.FR),
    ("fr_cp1252_greve.txt", CODE_PAGES.FR_GREVE),  # was "Grčve", "ministčre" (read as cp1250)
    ("de_cp1252_foerderung.txt", CODE_PAGES.DE),
    ("es_latin1_pensiones.txt", CODE_PAGES.ES),
    ("cs_cp1250_rozpocet.txt", CODE_PAGES.CS),
    ("pl_cp1250_nauczyciele.txt", CODE_PAGES.PL),
    ("en_utf8_stray_bytes.txt", CODE_PAGES.STRAY_DECODED),  # was "region‚Äôs" (read as Mac Central European)
])
def test_single_byte_code_pages_and_stray_bytes_decode_to_the_written_text(name: str, text: str) -> None:
    data = (INPUTS / name).read_bytes()
    assert data == CODE_PAGES.FILES[name]  # the committed fixture is what the script makes
    assert decode_text(data) == text


# --- 4: one undecodable line of a JSON Lines file ---------------------------------------------


def test_an_undecodable_jsonl_line_costs_only_its_item(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy2(INPUTS / "feed_undecodable_line.jsonl", raw / "feed.jsonl")
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    records = {r["source"]["item"]: r["title"] for r in read_records(processed)}
    assert records == {0: "Port strike ends", 2: "Rail line reopens"}
    found = quarantine(processed)
    assert list(found) == ["feed.jsonl#1"] and "undecodable line 2" in found["feed.jsonl#1"]


def test_jsonl_in_a_single_byte_code_page_keeps_every_line(tmp_path: Path) -> None:
    lines = [json.dumps({"title": f"Nouvelle {i}", "text": CODE_PAGES.FR_GREVE}, ensure_ascii=False) for i in range(3)]
    path = tmp_path / "feed.jsonl"
    path.write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    documents, problems = parse(RawEntry("feed.jsonl", path, path.stat().st_size), path.read_bytes())
    assert not problems and [d.text for d in documents] == [CODE_PAGES.FR_GREVE] * 3


# --- 5: hidden names, symlinked and unreadable directories ------------------------------------


def test_hidden_names_are_skipped_on_purpose_symlinked_and_unreadable_dirs_are_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    (raw / ".hidden dir").mkdir(parents=True)
    (raw / ".hidden dir" / "a.txt").write_text(GOOD)
    (raw / ".hidden.txt").write_text(GOOD)
    (raw / "..double.dot.txt").write_text(GOOD)
    (raw / "good.txt").write_text(GOOD)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "b.txt").write_text(GOOD)
    os.symlink(outside, raw / "linked")
    (raw / "locked").mkdir()
    (raw / "locked" / "c.txt").write_text(GOOD)
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:  # the tests run as root, where chmod 000 does not deny reading
        if os.fspath(path).endswith("/locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    entries, problems = scan_raw(raw)
    assert [e.path for e in entries] == ["good.txt"]
    reasons = {p.path: p.reason for p in problems}
    assert set(reasons) == {"linked", "locked"}  # hidden names: no entry and no problem, on purpose
    assert reasons["linked"].startswith("symlink not followed") and "directory" in reasons["linked"]
    assert reasons["locked"].startswith("unreadable directory: Permission denied")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "Hidden names" in readme and "skipped on purpose" in readme


# --- 6, 7: an empty page, NUL characters -------------------------------------------------------


@pytest.mark.parametrize("data", [b"\xef\xbb\xbf", b"<html><body>\xe2\x80\x8b</body></html>", b"\xe2\x80\x8b\n",
                                  b"<html><body><p> </p><div>\xc2\xa0</div></body></html>"])
def test_an_empty_html_file_is_refused_not_a_record_with_an_empty_paragraph(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "empty.html"
    path.write_bytes(data)
    with pytest.raises(BadInput, match="empty file|no article text"):
        parse(RawEntry("empty.html", path, len(data)), data)


def test_blocks_left_empty_by_normalising_are_no_paragraph() -> None:
    from pipeline.read import Document

    doc = Document("a.html", None, "0" * 64, "html", blocks=[("body", "\u200b"), ("body", "Real text here."),
                                                              ("body", "\x00\x01")])
    assert [p.text for p in clean_document(doc).paragraphs] == ["Real text here."]


def test_nul_characters_anywhere_never_reach_a_record(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    body = ("The harbour wall will be rebuilt, the council said. " * 200)  # past the 8 KB binary sniff
    (raw / "late_nul.txt").write_bytes(body.encode() + b"Repairs start in May.\x00 The cost is shared.\n")
    (raw / "early_nul.txt").write_bytes(b"One stray NUL\x00 early in an article about trams in the city.\n")
    (raw / "escaped.json").write_text(json.dumps({"title": "T\u0000", "text": "Escaped NUL \u0000 in JSON text."}))
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    lines = [line for part in (processed / RECORDS_DIR).glob("part-*.jsonl") for line in part.read_text().splitlines()]
    assert len(lines) == 3 and not any("\\u0000" in line or "\x00" in line for line in lines)
    assert all("\x00" not in json.dumps(r) and "\\u0000" not in json.dumps(r) for r in read_records(processed))


# --- 8: a damaged Bloom filter ------------------------------------------------------------------


def test_a_bloom_filter_with_its_bits_zeroed_or_in_the_old_format_is_not_trusted(tmp_path: Path) -> None:
    bloom = BloomFilter.for_keys(1000, generation=3)
    keys = np.random.default_rng(10).integers(-(1 << 62), 1 << 62, size=1000, dtype=np.int64)
    bloom.add(keys)
    bloom.save_tmp(tmp_path)
    bloom_file.install(tmp_path)
    path = tmp_path / bloom_file.BLOOM_FILE
    loaded = BloomFilter.load(tmp_path)
    assert loaded is not None and loaded.might_contain(keys).all()
    header = bloom_file._HEADER.size
    data = path.read_bytes()
    path.write_bytes(data[:header] + bytes(len(data) - header))  # every bit zeroed, header kept
    assert BloomFilter.load(tmp_path) is None
    path.write_bytes(data[:header + 10] + bytes([data[header + 10] ^ 1]) + data[header + 11:])  # one bit flipped
    assert BloomFilter.load(tmp_path) is None
    old = b"NDBLOOM1" + data[8:8 + 24] + data[header:]  # the first format: no checksum
    path.write_bytes(old)
    assert BloomFilter.load(tmp_path) is None


def test_a_zeroed_bloom_filter_is_rebuilt_and_the_records_do_not_change(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    (tmp_path / "all").mkdir()
    run_ingest(make_raw(tmp_path / "all", *SEED_FILES), reference)
    raw = make_raw(tmp_path, SEED_FILES[0], SEED_FILES[3])
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    path = processed / bloom_file.BLOOM_FILE
    data = path.read_bytes()
    header = bloom_file._HEADER.size
    path.write_bytes(data[:header] + bytes(len(data) - header))
    for name in SEED_FILES:
        shutil.copy2(ROOT / "raw" / name, raw / name)
    run_ingest(raw, processed)
    assert stable(list(read_records(processed))) == stable(list(read_records(reference)))
    assert BloomFilter.load(processed) is not None  # a good filter is back in place


# --- 10: a damaged state database ----------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A processed dir of the seeds, made once for the module (copied by each test)."""
    base = tmp_path_factory.mktemp("seeded")
    processed = base / "processed"
    run_ingest(make_raw(base, *SEED_FILES), processed)
    return processed


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "garbage"])
def test_a_damaged_state_database_gives_one_line_and_a_nonzero_exit(
        tmp_path: Path, damage: str, seeded_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = make_raw(tmp_path, *SEED_FILES)
    processed = tmp_path / "processed"
    shutil.copytree(seeded_state, processed)
    db = processed / "state.sqlite"
    data = db.read_bytes()
    page = 4096
    if damage == "truncated":
        db.write_bytes(data[: len(data) // 2])
    elif damage == "overwritten":
        db.write_bytes(data[:page] + bytes([0xA5]) * (len(data) - 2 * page) + data[-page:])
    else:
        db.write_bytes(b"not a database at all " * 200)
    (raw / "new.txt").write_text(GOOD)  # so that `run` has work and does not stop at "nothing new"
    for command in (["records", str(processed)], ["status", str(processed)],
                    ["run", "--raw-dir", str(raw), "--processed-dir", str(processed)]):
        done = cli(*command, capsys=capsys)
        assert done.returncode == 2, (command, done.stderr[-2000:])
        line = one_line_error(done)
        assert "state database" in line and ("restore" in line.lower() or "rebuild" in line), line


# --- 11, 12: processed/.lock replaced ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "symlink", "dangling symlink"])
def test_a_lock_file_replaced_by_a_directory_or_a_symlink_is_refused(
        tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    raw = make_raw(tmp_path, SEED_FILES[0])
    processed = tmp_path / "processed"
    processed.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = processed / LOCK_FILE
    if kind == "directory":
        lock.mkdir()
    elif kind == "symlink":
        os.symlink(victim, lock)
    else:
        os.symlink(tmp_path / "nowhere", lock)
    with pytest.raises(StateError, match=f"{LOCK_FILE} is a (directory|symlink)"):
        with writer_lock(processed):
            pass
    done = cli("run", "--raw-dir", str(raw), "--processed-dir", str(processed), capsys=capsys)
    assert done.returncode == 2
    assert "not the regular lock file" in one_line_error(done)
    assert victim.read_text() == "precious"  # was truncated and overwritten with a pid before
    assert not (tmp_path / "nowhere").exists()


# --- 13: two runs at once, and no process left behind --------------------------------------------


def test_a_second_run_started_during_a_run_exits_3_with_one_line_and_none_outlives_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`newsdedup run` holds the lock from its first check to the end of its flow; the flow is
    replaced here by the library run (same lock) so that no Prefect starts."""
    import multiprocessing

    from flows import cli
    from pipeline.ingest import IngestSettings

    raw = make_raw(tmp_path, *SEED_FILES)
    processed = tmp_path / "processed"
    second: list[subprocess.CompletedProcess[str]] = []

    def fake_ingest(raw_dir: str, processed_dir: str, **_: Any) -> dict[str, Any]:
        # Started while the first run is between its check and its flow's lock (Prefect's start):
        # it must be refused at once, not pass the check and die in its own flow.
        second.append(newsdedup("run", "--raw-dir", raw_dir, "--processed-dir", processed_dir, tmp_path=tmp_path))
        settings = IngestSettings(batch_size=1)
        return run_ingest(Path(raw_dir), Path(processed_dir), settings).as_dict()

    monkeypatch.setitem(sys.modules, "flows.ingest", types.SimpleNamespace(ingest=fake_ingest))
    monkeypatch.setattr(cli, "_prefect_env", lambda: None)
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--raw-dir", str(raw), "--processed-dir", str(processed)])
    assert exited.value.code == 0
    assert second[0].returncode == 3
    assert "another newsdedup run is writing" in one_line_error(second[0])
    assert len(list(read_records(processed))) == len(SEED_FILES)
    # No child process, forkserver or resource tracker outlives the run.
    assert multiprocessing.active_children() == []
    from multiprocessing import forkserver, resource_tracker
    assert forkserver._forkserver._forkserver_pid is None  # type: ignore[attr-defined]
    assert resource_tracker._resource_tracker._pid is None  # type: ignore[attr-defined]
    # and the lock is free again
    fd = os.open(processed / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


# --- 1: killed after the commit, before the part renames -----------------------------------------

_RUN_SCRIPT = "import sys; from pipeline.ingest import run_ingest; run_ingest(sys.argv[1], sys.argv[2])"


def test_a_run_killed_after_its_commit_gets_its_parts_from_the_plain_rerun(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = make_raw(tmp_path, *SEED_FILES)
    processed = tmp_path / "processed"
    env = dict(os.environ, **{CRASH_ENV: "committed"})
    killed = subprocess.run([sys.executable, "-c", _RUN_SCRIPT, str(raw), str(processed)], cwd=ROOT, env=env,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert part_records(processed) == []  # committed, not yet renamed: file readers see nothing
    done = cli("run", "--raw-dir", str(raw), "--processed-dir", str(processed), capsys=capsys)
    assert done.returncode == 0, done.stderr
    assert "nothing new" in done.stdout  # and no flow started: the parts were finished before
    assert stable(part_records(processed)) == stable(list(read_records(processed)))
    assert len(part_records(processed)) == len(SEED_FILES)
    assert not list((processed / RECORDS_DIR).glob(".tmp-*"))


# --- 9: part files truncated, deleted, appended to ------------------------------------------------


def parts_in_three_runs(tmp_path: Path) -> tuple[Path, Path]:
    """A raw dir and a processed dir of three runs (three parts) with a quarantine entry."""
    raw = make_raw(tmp_path, *SEED_FILES[:2])
    (raw / "broken.json").write_text('{"title": "cut off')
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    make_raw(tmp_path, SEED_FILES[2])
    run_ingest(raw, processed)
    make_raw(tmp_path, *SEED_FILES[3:])
    run_ingest(raw, processed)
    return raw, processed


def assert_parts_hold_the_current_records(processed: Path) -> None:
    """Every current record in exactly one part, every part line a current record."""
    lines = [line for part in sorted((processed / RECORDS_DIR).glob("part-*.jsonl"))
             for line in part.read_text(encoding="utf-8").splitlines()]
    assert sorted(lines) == sorted(iter_record_lines(processed))


def test_parts_truncated_deleted_and_appended_to_are_repaired_by_the_next_run(tmp_path: Path) -> None:
    raw, processed = parts_in_three_runs(tmp_path)
    parts = sorted((processed / RECORDS_DIR).glob("part-*.jsonl"))
    assert len(parts) == 3
    truncated, deleted, appended = parts
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # mid-line
    deleted.unlink()
    with open(appended, "ab") as fh:
        fh.write(appended.read_bytes()[:100])  # half a record, no newline
    run_ingest(raw, processed)  # nothing new: the run starts by checking (and repairing) the parts
    assert_parts_hold_the_current_records(processed)
    assert len(list(read_records(processed))) == len(SEED_FILES)
