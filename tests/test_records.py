"""The consumer's read side: record contract (schema), read_records, since, fields, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from flows.cli import main as cli_main
from pipeline.ingest import run_ingest
from pipeline.records import (
    FULL_TEXT_SEPARATOR,
    RECORD_FIELDS,
    RECORDS_DIR,
    iter_record_lines,
    last_run_id,
    project,
    read_records,
    without_spans,
)
from pipeline.state import StateError
from tests.conftest import ROOT, SEEDS, make_raw

SCHEMA = json.loads((ROOT / "schema" / "record.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
TOMBSTONES = jsonschema.Draft202012Validator(
    json.loads((ROOT / "schema" / "tombstone.schema.json").read_text(encoding="utf-8")))

S000, S001, S002, S003, S004 = sorted(p.name for p in SEEDS.glob("*.txt"))
T1, T2, T3 = "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z", "2030-01-03T00:00:00Z"


def check_record(record: dict) -> None:
    """Valid against the schema, every key declared, and the repeat explanations consistent."""
    VALIDATOR.validate(record)
    assert set(record) <= set(SCHEMA["properties"])
    full = FULL_TEXT_SEPARATOR.join(p["text"] for p in record["paragraphs"])
    assert [p["index"] for p in record["paragraphs"]] == list(range(len(record["paragraphs"])))
    body = [without_spans(p["text"], [(sp["start"], sp["end"]) for sp in p["repeated_spans"]])
            for p in record["paragraphs"] if p["kind"] == "body" and p["repeat_of"] is None]
    assert record["text"] == "\n\n".join(b for b in body if b)
    assert record["repeats"] == sum(p["repeat_of"] is not None for p in record["paragraphs"])
    for p in record["paragraphs"]:
        rep = p["repeat_of"]
        if rep is not None:
            start, end = rep["span"]
            assert full[start:end] == p["text"]
            assert rep["passage"] in {sp["passage"] for sp in p["repeated_spans"]}
            assert rep["record"] != record["id"]
        for sp in p["repeated_spans"]:
            assert 0 <= sp["start"] < sp["end"] <= len(p["text"]) and sp["record"] != record["id"]
            assert p["text"][sp["start"]:sp["end"]].strip() == p["text"][sp["start"]:sp["end"]]


def check_processed(processed: Path) -> list[dict]:
    """Every current record valid; the part files hold exactly the current records, once each."""
    records = list(read_records(processed))
    for record in records:
        check_record(record)
    by_id = {r["id"]: r for r in records}
    assert len(by_id) == len(records)
    # repeats point at existing first occurrences
    for record in records:
        for p in record["paragraphs"]:
            if p["repeat_of"]:
                first = by_id[p["repeat_of"]["record"]]["paragraphs"][p["repeat_of"]["paragraph"]]
                assert first["repeat_of"] is None and first["kind"] == "body"
    parts = sorted((processed / RECORDS_DIR).glob("part-*.jsonl"))
    on_disk = [json.loads(line) for part in parts for line in part.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in on_disk) == sorted(by_id)
    assert all(r == by_id[r["id"]] for r in on_disk)
    assert not [p for p in (processed / RECORDS_DIR).iterdir() if p.name.startswith(".")]
    return records


def ingest(monkeypatch: pytest.MonkeyPatch, raw: Path, processed: Path, run_id: str, clock: str) -> None:
    monkeypatch.setattr("pipeline.ingest.utc_now", lambda: clock)
    run_ingest(raw, processed, run_id=run_id)


def ids_by_path(processed: Path) -> dict[str, str]:
    return {r["source"]["path"]: r["id"] for r in read_records(processed)}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(list(argv))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


# --- the record contract -------------------------------------------------------------------


def test_schema_is_valid_and_matches_the_record_fields() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert tuple(SCHEMA["properties"]) == RECORD_FIELDS
    assert set(SCHEMA["required"]) == set(RECORD_FIELDS) - {"extra"}


def test_seed_records_follow_the_contract(tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    run_ingest(SEEDS, processed)
    records = check_processed(processed)
    assert len(records) == 5
    # oldest publication first, undated last
    assert [r["source"]["path"] for r in records] == [S001, S000, S002, S004, S003]
    by_path = {r["source"]["path"]: r for r in records}
    first = by_path[S000]["id"]
    for name in (S002, S004):  # tag, don't delete: the Trend background stays, flagged
        record = by_path[name]
        flagged = [p for p in record["paragraphs"] if p["repeat_of"]]
        assert len(flagged) == 3 and record["repeats"] == 3
        assert {p["repeat_of"]["record"] for p in flagged} == {first}
        assert all(p["text"] not in record["text"] for p in flagged)
        assert all(0.6 <= p["repeat_of"]["similarity"] <= 1 for p in flagged)


def test_schema_rejects_broken_records(tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    run_ingest(make_raw(tmp_path, S000, S002), processed)
    record = next(r for r in read_records(processed) if r["repeats"])
    bad = json.loads(json.dumps(record))
    del next(p for p in bad["paragraphs"] if p["repeat_of"])["repeat_of"]["span"]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(bad)
    for field, value in (("schema_version", 2), ("published", "28 Sept 2020"), ("id", None)):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate({**record, field: value})


def test_json_sources_carry_item_and_extra(tmp_path: Path) -> None:
    raw = make_raw(tmp_path)
    body = "Officials met on Monday to discuss the harbour project and its costs for the city budget."
    items = [
        {"title": "Harbour", "text": body, "published": "2021-03-04", "tags": ["port", "city"], "score": 3},
        {"title": "Harbour again", "text": body + " A second sentence about the harbour follows here.",
         "published": "2021-03-05"},
    ]
    (raw / "feed.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    records = check_processed(processed)
    assert [r["source"].get("item") for r in records] == [0, 1]
    assert records[0]["extra"] == {"tags": ["port", "city"], "score": 3}
    assert "extra" not in records[1]
    # the second item repeats the first one's sentence and adds one: a span, and the new sentence stays body
    [span] = records[1]["paragraphs"][0]["repeated_spans"]
    assert records[1]["repeats"] == 0 and span["record"] == records[0]["id"] and span["similarity"] == 1.0
    assert records[1]["text"] == "A second sentence about the harbour follows here."


# --- since: a second run that adds and rewrites records ---------------------------------------


def test_since_run_id_and_timestamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    processed = tmp_path / "processed"
    raw = make_raw(tmp_path, S001, S002, S003, S004)
    ingest(monkeypatch, raw, processed, "run-1", T1)
    before = {r["source"]["path"]: r for r in read_records(processed)}
    assert before[S002]["repeats"] == 0  # 004 repeats 002's background, the earliest copy so far
    assert {p["repeat_of"]["record"] for p in before[S004]["paragraphs"] if p["repeat_of"]} == {before[S002]["id"]}

    # Run 2: 000, published before 002 and 004, arrives late: 002 and 004 are rewritten.
    shutil.copy2(SEEDS / S000, raw / S000)
    ingest(monkeypatch, raw, processed, "run-2", T2)
    ids = ids_by_path(processed)
    assert last_run_id(processed) == "run-2"
    new = list(read_records(processed, since="run-1"))
    assert sorted(r["source"]["path"] for r in new) == [S000, S002, S004]
    assert {r["pipeline"]["run_id"] for r in new} == {"run-2"}
    rewritten = [r for r in new if r["id"] != ids[S000]]
    assert [r["repeats"] for r in rewritten] == [3, 3]
    assert {p["repeat_of"]["record"] for rec in rewritten for p in rec["paragraphs"] if p["repeat_of"]} == {ids[S000]}
    assert list(read_records(processed, since="run-2")) == []

    # Run 3: 001's file changes: its record is rewritten in place (same id), nothing else moves.
    changed = (raw / S001).read_text(encoding="utf-8") + "\n\nA late correction was appended to this story.\n"
    (raw / S001).write_text(changed, encoding="utf-8")
    ingest(monkeypatch, raw, processed, "run-3", T3)
    assert [r["id"] for r in read_records(processed, since="run-2")] == [ids[S001]]
    assert sorted(r["id"] for r in read_records(processed, since="run-1")) == sorted(
        ids[n] for n in (S000, S001, S002, S004))
    current = check_processed(processed)
    assert len(current) == 5  # superseded versions are not read
    assert "late correction" in next(r for r in current if r["id"] == ids[S001])["text"]

    # Timestamps compare with pipeline.processed_at (UTC, whole seconds).
    def paths_since(value: str) -> list[str]:
        return sorted(r["source"]["path"] for r in read_records(processed, since=value))

    assert paths_since(T1) == sorted([S000, S001, S002, S004])
    assert paths_since("2030-01-01T12:00:00") == paths_since(T1)  # no offset: UTC
    assert paths_since("2030-01-02T01:30:00+02:00") == paths_since(T1)  # 2030-01-01T23:30Z
    assert paths_since("2030-01-02T00:00:00.5+00:00") == paths_since(T2) == [S001]
    assert paths_since("2029-12-31") == sorted([S000, S001, S002, S003, S004])
    assert paths_since(T3) == []


def test_since_rejects_what_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    processed = tmp_path / "processed"
    run_ingest(make_raw(tmp_path, S001), processed)
    with pytest.raises(StateError, match="neither a run id"):
        list(read_records(processed, since="no-such-run"))
    code, out, err = cli(capsys, "records", str(processed), "--since", "no-such-run")
    assert code == 2 and out == "" and "neither a run id" in err
    with pytest.raises(StateError, match="no newsdedup state"):
        list(read_records(tmp_path / "nowhere"))


def test_since_yields_a_tombstone_for_an_item_gone_from_a_changed_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    processed = tmp_path / "processed"
    raw = make_raw(tmp_path, S001)
    rows = [{"guid": f"wire-{i}", "title": f"Story {i}", "published": f"2021-03-0{i + 1}",
             "text": f"Body number {i} of the export, with several words about the city council."} for i in range(3)]
    feed = raw / "feed.jsonl"
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ingest(monkeypatch, raw, processed, "run-1", T1)
    ids = {r["title"]: r["id"] for r in read_records(processed)}

    # Run 2: the export drops story 1 and reorders the rest.
    feed.write_text(json.dumps(rows[2]) + "\n" + json.dumps(rows[0]) + "\n", encoding="utf-8")
    ingest(monkeypatch, raw, processed, "run-2", T2)
    assert len(list(read_records(processed))) == 3  # 001 and stories 0 and 2
    assert ids["Story 1"] not in {r["id"] for r in read_records(processed)}  # full reads: current records only
    since = list(read_records(processed, since="run-1"))
    assert [r["id"] for r in since if not r.get("deleted")] == [ids["Story 0"], ids["Story 2"]]
    [tombstone] = [r for r in since if r.get("deleted")]
    assert since[-1] is tombstone and tombstone["id"] == ids["Story 1"] and tombstone["deleted"] is True
    assert tombstone["source"]["path"] == "feed.jsonl" and tombstone["pipeline"]["run_id"] == "run-2"
    TOMBSTONES.validate(tombstone)
    assert list(read_records(processed, since="run-1", fields=["id", "title"]))[-1] == tombstone
    assert [r["id"] for r in read_records(processed, since=T1) if r.get("deleted")] == [ids["Story 1"]]
    code, out, _ = cli(capsys, "records", str(processed), "--since", "run-1")
    assert code == 0 and json.loads(out.splitlines()[-1]) == tombstone
    assert list(read_records(processed, since="run-2")) == []

    # Run 3: story 1 is back: a record again, same id, and no tombstone for it any more.
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ingest(monkeypatch, raw, processed, "run-3", T3)
    assert [r.get("deleted", False) for r in read_records(processed, since="run-1")] == [False] * 3
    assert {r["id"] for r in read_records(processed, since="run-2")} == {ids[f"Story {i}"] for i in range(3)}


def test_run_ids_are_uuids_and_since_takes_an_unambiguous_start_of_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import uuid

    processed = tmp_path / "processed"
    raw = make_raw(tmp_path, S001)
    first = run_ingest(raw, processed).run_id
    assert str(uuid.UUID(first)) == first  # a real-looking run id, as a flow's runs have
    shutil.copy2(SEEDS / S003, raw / S003)
    other = first[:9] + ("1" if first[9] == "0" else "0") + "000-4000-8000-000000000000"  # the same first 9 characters
    run_ingest(raw, processed, run_id=other)
    assert [r["source"]["path"] for r in read_records(processed, since=first[:10])] == [S003]
    code, out, _ = cli(capsys, "records", str(processed), "--since", first[:10], "--fields", "id")
    assert code == 0 and len(out.splitlines()) == 1
    with pytest.raises(StateError, match="the start of 2 run ids"):
        list(read_records(processed, since=first[:8]))
    code, out, err = cli(capsys, "records", str(processed), "--since", first[:8])
    assert code == 2 and out == "" and first in err and len(err.splitlines()) == 1


# --- fields, strip-repeats, the CLI ---------------------------------------------------------


def test_fields_and_strip_repeats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    processed = tmp_path / "processed"
    run_ingest(SEEDS, processed)
    full = list(read_records(processed))

    stripped = list(read_records(processed, strip_repeats=True))
    for whole, strip in zip(full, stripped, strict=True):
        assert [p for p in whole["paragraphs"] if not p["repeat_of"]] == strip["paragraphs"]
        assert strip["text"] == whole["text"] and strip["repeats"] == whole["repeats"]
        check_record({**strip, "paragraphs": whole["paragraphs"]})
    assert any(len(s["paragraphs"]) < len(w["paragraphs"]) for w, s in zip(full, stripped, strict=True))

    slim = list(read_records(processed, fields=["id", "title", "extra"]))
    assert slim == [{"id": r["id"], "title": r["title"], "extra": None} for r in full]
    with pytest.raises(ValueError, match="unknown record field"):
        list(read_records(processed, fields=["id", "body"]))
    assert project(full[2], ["repeats"], strip_repeats=True) == {"repeats": 3}

    code, out, _ = cli(capsys, "records", str(processed), "--fields", "id,repeats", "--strip-repeats")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [{"id": r["id"], "repeats": r["repeats"]} for r in full]
    code, out, _ = cli(capsys, "records", str(processed), "--strip-repeats", "--keep-repeats")
    assert [json.loads(line) for line in out.splitlines()] == full
    code, out, err = cli(capsys, "records", str(processed), "--fields", "id,nope")
    assert code == 2 and out == "" and "nope" in err


def test_cli_records_prints_the_part_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    processed = tmp_path / "processed"
    raw = make_raw(tmp_path, S002, S004)
    ingest(monkeypatch, raw, processed, "run-1", T1)
    shutil.copy2(SEEDS / S000, raw / S000)
    ingest(monkeypatch, raw, processed, "run-2", T2)
    code, out, _ = cli(capsys, "records", str(processed))
    assert code == 0
    parts = sorted((processed / RECORDS_DIR).glob("part-*.jsonl"))
    assert sorted(out.splitlines()) == sorted(line for p in parts for line in p.read_text("utf-8").splitlines())
    assert out.splitlines() == list(iter_record_lines(processed))
    code, out, _ = cli(capsys, "records", str(processed), "--since", T1)
    assert len(out.splitlines()) == 3


def test_a_reader_keeps_its_snapshot_and_does_not_block_a_run(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    processed = tmp_path / "processed"
    raw = make_raw(tmp_path, S001, S002, S004)
    ingest(monkeypatch, raw, processed, "run-1", T1)
    reader = read_records(processed)
    first = next(reader)  # the read transaction is open now
    shutil.copy2(SEEDS / S000, raw / S000)
    ingest(monkeypatch, raw, processed, "run-2", T2)  # not blocked by the open reader
    rest = list(reader)
    seen = [first, *rest]
    assert len(seen) == 3 and {r["pipeline"]["run_id"] for r in seen} == {"run-1"}  # the old snapshot, whole
    assert next(r for r in seen if r["source"]["path"] == S002)["repeats"] == 0  # 000 not seen yet
    assert len(list(read_records(processed))) == 4  # a new read sees the new run


def test_records_survives_a_closed_pipe(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for copy in range(6):  # ~30 records: more than a pipe buffer holds
        for seed in SEEDS.glob("*.txt"):
            shutil.copy2(seed, raw / f"{copy}-{seed.name}")
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "records", str(processed)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(200).startswith(b'{"schema_version": 1')
    proc.stdout.close()  # like `newsdedup records | head -c 200`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert err == b""
