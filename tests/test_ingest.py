"""pipeline.ingest end to end without Prefect: the seeds, reruns, order, crashes, locks, bad input."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import CRASH_ENV, IngestSettings, record_id_for, run_ingest
from pipeline.records import RECORDS_DIR, read_records
from pipeline.state import ProcessedDirLocked, writer_lock
from tests.conftest import ROOT, SEED_FILES

SEED = {name[:3]: name for name in SEED_FILES}
EXPECTED_REPEATS = {  # EXPECTED.md: (article, paragraph start) -> paragraph start in 000
    ("002", "Armenian Armed Forces launched a large-scale"): "Armenian armed forces launched a large-scale",
    ("002", "The conflict between the two South Caucasus"): "The conflict between the two South Caucasus",
    ("002", "The 1994 ceasefire agreement was followed"): "The 1994 ceasefire agreement was followed",
    ("004", "Back in July 2020, the Armenian Armed Forces"): "Back in July 2020, Armenian Armed Forces",
    ("004", "The conflict between the two South Caucasus"): "The conflict between the two South Caucasus",
    ("004", "The 1994 ceasefire agreement was followed"): "The 1994 ceasefire agreement was followed",
}
EXPECTED_METADATA = {
    "000": {"title": None, "published": "2020-09-28", "author": None, "outlet": None, "section": None,
            "dateline": "BAKU, Azerbaijan"},
    "001": {"title": "Azerbaijan Liberates Several Villages Within Counteroffensive Measures In Karabakh",
            "published": "2020-09-27", "author": "Orkhan Jalilov", "outlet": None, "section": "Feature",
            "dateline": None},
    "002": {"title": "Azerbaijani army seized great victory, Turkish Defense Ministry says",
            "published": "2020-10-10T15:09:00+04:00", "author": None, "outlet": "Trend", "section": "Politics",
            "dateline": "BAKU, Azerbaijan"},
    "003": {"title": None, "published": None, "author": None, "outlet": None, "section": None, "dateline": None},
    "004": {"title": None, "published": "2020-10-28", "author": None, "outlet": "Trend", "section": None,
            "dateline": None},
}


def by_article(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["source"]["path"][:3]: r for r in records}


def stable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without what legitimately differs between runs (run ids, timestamps)."""
    out = []
    for r in records:
        r = json.loads(json.dumps(r))
        r.pop("pipeline")
        out.append(r)
    return sorted(out, key=lambda r: r["id"])


def part_records(processed: Path) -> list[dict[str, Any]]:
    lines = []
    for part in sorted((processed / RECORDS_DIR).glob("*.jsonl")):
        lines += [json.loads(line) for line in part.read_text().splitlines()]
    return lines


def test_seeds_exactly_the_expected_repeats_and_metadata(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    summary = run_ingest(seed_raw, processed)
    assert (summary.records_written, summary.repeats_flagged, summary.files_quarantined) == (5, 6, 0)
    records = by_article(list(read_records(processed)))
    first = records["000"]
    flagged = set()
    for name, record in records.items():
        for p in record["paragraphs"]:
            if p["repeat_of"] is not None:
                target = p["repeat_of"]
                assert target["record"] == first["id"]
                target_text = first["paragraphs"][target["paragraph"]]["text"]
                matches = [key for key, start in EXPECTED_REPEATS.items()
                           if key[0] == name and p["text"].startswith(key[1]) and target_text.startswith(start)]
                assert len(matches) == 1, (name, p["text"][:60])
                flagged.add(matches[0])
    assert flagged == set(EXPECTED_REPEATS)
    for name, expected in EXPECTED_METADATA.items():
        got = {k: records[name][k] for k in expected}
        assert got == expected, name
        assert records[name]["language"] == "en"
    # Sentence level (issue 9): repeated sentences inside paragraphs that stay body text.
    sept_27 = next(p["index"] for p in first["paragraphs"] if p["text"].startswith("Armenian armed forces launched"))
    spans = {name: [(p["index"], p["text"][s["start"]:s["end"]], s["passage"]) for p in record["paragraphs"]
                    if p["repeat_of"] is None for s in p["repeated_spans"]] for name, record in records.items()}
    merged = next(p for p in records["004"]["paragraphs"] if p["text"].startswith("Armenian Armed Forces launched"))
    assert spans["004"] == [(merged["index"], merged["text"].split(" Currently,")[0], f"{first['id']}:{sept_27}")]
    assert "Currently, Azerbaijan continues the liberation of its territories" in records["004"]["text"]
    responded = next(p for p in records["002"]["paragraphs"] if p["text"].startswith("Azerbaijan responded with"))
    opening = "Azerbaijan responded with a counter-offensive along the entire front."
    assert spans["002"] == [(responded["index"], opening, f"{first['id']}:{sept_27}")]
    assert "As a result of retaliation, Azerbaijani troops liberated" in records["002"]["text"]
    for name in ("000", "001", "003"):  # the first occurrence, and the paraphrases
        assert spans[name] == [] and records[name]["repeats"] == 0 and records[name]["duplicate_of"] is None
    # text is the body without the repeats; paragraphs keep everything, flagged
    r002 = records["002"]
    assert "The 1994 ceasefire agreement" not in r002["text"]
    assert "Azerbaijani army has seized great victory" in r002["text"]
    assert len(r002["paragraphs"]) == 9
    # furniture never reaches the body
    all_text = "\n".join(p["text"] for r in records.values() for p in r["paragraphs"])
    for furniture in ("READ MORE", "Discussion about this post", "Trend:\n", "Orkhan Jalilov Feature", "date 2020"):
        assert furniture not in all_text
    # the files on disk hold the same current records, each once
    assert stable(part_records(processed)) == stable(list(read_records(processed)))


def test_ids_are_stable_across_reruns(seed_raw: Path, tmp_path: Path) -> None:
    run_ingest(seed_raw, tmp_path / "a")
    run_ingest(seed_raw, tmp_path / "b")
    assert stable(list(read_records(tmp_path / "a"))) == stable(list(read_records(tmp_path / "b")))
    assert {r["id"] for r in read_records(tmp_path / "a")} == {record_id_for(n, None) for n in SEED_FILES}


def test_rerun_with_nothing_new_writes_nothing(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    parts_before = {p.name: p.stat().st_mtime_ns for p in (processed / RECORDS_DIR).iterdir()}
    os.utime(seed_raw / SEED["000"])  # touched, same bytes
    summary = run_ingest(seed_raw, processed)
    assert (summary.records_written, summary.records_rewritten, summary.files_unchanged) == (0, 0, 5)
    assert {p.name: p.stat().st_mtime_ns for p in (processed / RECORDS_DIR).iterdir()} == parts_before


@pytest.mark.parametrize("order", [
    ["004", "003", "002", "001", "000"],
    ["002", "000", "004", "001", "003"],
    ["003", "004", "000", "002", "001"],
])
def test_one_file_per_run_in_any_order_equals_one_run(seed_raw: Path, tmp_path: Path, order: list[str]) -> None:
    whole = tmp_path / "whole"
    run_ingest(seed_raw, whole)
    raw = tmp_path / "arriving"
    raw.mkdir()
    processed = tmp_path / "incremental"
    for name in order:
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
        run_ingest(raw, processed)
    assert stable(list(read_records(processed))) == stable(list(read_records(whole)))
    assert stable(part_records(processed)) == stable(list(read_records(whole)))


@pytest.mark.parametrize("seed", [1, 2])
def test_sentence_level_decisions_do_not_depend_on_arrival_order(tmp_path: Path, seed: int) -> None:
    """The labelled development set (spans, split and merged background, house lines, syndicated
    copies) arriving in random batches equals one run over all of it."""
    import random

    articles = sorted((ROOT / "bench" / "devset" / "articles").glob("*.txt"))
    whole = tmp_path / "whole"
    run_ingest(articles[0].parent, whole)
    shuffled = articles[:]
    random.Random(seed).shuffle(shuffled)
    raw = tmp_path / "arriving"
    raw.mkdir()
    processed = tmp_path / "incremental"
    for start in range(0, len(shuffled), 17):
        for path in shuffled[start : start + 17]:
            shutil.copy2(path, raw / path.name)
        run_ingest(raw, processed)
    expected = stable(list(read_records(whole)))
    assert any(p["repeated_spans"] and p["repeat_of"] is None for r in expected for p in r["paragraphs"])
    assert any(r["duplicate_of"] for r in expected)
    assert stable(list(read_records(processed))) == expected
    assert stable(part_records(processed)) == expected


def test_late_earlier_article_becomes_first_and_rewrites(seed_raw: Path, tmp_path: Path) -> None:
    raw = tmp_path / "late"
    raw.mkdir()
    for name in ("002", "004"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    before = by_article(list(read_records(processed)))
    assert sum(1 for p in before["004"]["paragraphs"] if p["repeat_of"]) == 2  # of 002, for now
    shutil.copy2(seed_raw / SEED["000"], raw / SEED["000"])
    summary = run_ingest(raw, processed)
    assert (summary.records_written, summary.records_rewritten) == (1, 2)
    after = by_article(list(read_records(processed)))
    targets = {p["repeat_of"]["record"] for r in ("002", "004") for p in after[r]["paragraphs"] if p["repeat_of"]}
    assert targets == {after["000"]["id"]}


def test_changed_file_supersedes_its_record(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    path = seed_raw / SEED["002"]
    path.write_text(path.read_text().replace("great victory", "a great victory"))
    summary = run_ingest(seed_raw, processed)
    assert (summary.files_changed, summary.records_written) == (1, 1)
    records = list(read_records(processed))
    assert len(records) == 5 and len({r["id"] for r in records}) == 5
    assert "a great victory" in by_article(records)["002"]["title"]
    assert stable(part_records(processed)) == stable(records)


def test_empty_binary_and_bad_files_are_quarantined_and_the_run_goes_on(seed_raw: Path, tmp_path: Path) -> None:
    (seed_raw / "empty.txt").write_bytes(b"")
    (seed_raw / "image.txt").write_bytes(bytes(range(256)) * 20)
    (seed_raw / "broken.json").write_text('{"title": "x", "text": ')
    (seed_raw / "notes.docx").write_bytes(b"PK\x03\x04")
    os.symlink("/etc/passwd", seed_raw / "escape.txt")
    processed = tmp_path / "processed"
    summary = run_ingest(seed_raw, processed, IngestSettings(max_file_bytes=1_000_000))
    assert summary.records_written == 5
    lines = (processed / "quarantine.jsonl").read_text().splitlines()
    quarantine = {q["path"]: q["reason"] for q in map(json.loads, lines)}
    assert quarantine["empty.txt"] == "empty file"
    assert quarantine["image.txt"].startswith(("binary content", "undecodable"))
    assert quarantine["broken.json"].startswith("malformed JSON")
    assert quarantine["notes.docx"].startswith("unsupported file type")
    assert quarantine["escape.txt"].startswith("symlink not followed")
    assert (seed_raw / "empty.txt").exists() and os.path.islink(seed_raw / "escape.txt")  # raw is never touched
    # fixing the file (new bytes) makes the next run pick it up
    (seed_raw / "broken.json").write_text(json.dumps({"title": "Fixed", "text": "A fixed article body with words."}))
    summary = run_ingest(seed_raw, processed)
    assert summary.records_written == 1
    quarantine = [json.loads(line)["path"] for line in (processed / "quarantine.jsonl").read_text().splitlines()]
    assert "broken.json" not in quarantine and "empty.txt" in quarantine
    # a quarantined file deleted from raw/ leaves the quarantine list
    (seed_raw / "empty.txt").unlink()
    run_ingest(seed_raw, processed)
    quarantine = [json.loads(line)["path"] for line in (processed / "quarantine.jsonl").read_text().splitlines()]
    assert "empty.txt" not in quarantine and "image.txt" in quarantine


def test_oversized_file_is_quarantined(seed_raw: Path, tmp_path: Path) -> None:
    (seed_raw / "huge.txt").write_text("word " * 5000)
    summary = run_ingest(seed_raw, tmp_path / "p", IngestSettings(max_file_bytes=10_000))
    assert summary.files_quarantined == 1
    assert "too large" in summary.quarantined[0]["reason"]


def test_second_writer_is_refused_with_a_clear_message(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    with writer_lock(processed):
        with pytest.raises(ProcessedDirLocked, match="another newsdedup run"):
            run_ingest(seed_raw, processed)
    # a waiting run proceeds once the first lets go
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with writer_lock(processed):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)  # the waiting run starts only once the lock is really taken
        threading.Timer(0.5, release.set).start()
        summary = run_ingest(seed_raw, processed, IngestSettings(lock_wait_seconds=30))
    finally:
        holder.join()
    assert summary.records_written == 5


_RUN_SCRIPT = "import sys; from pipeline.ingest import run_ingest; run_ingest(sys.argv[1], sys.argv[2])"


def _run_subprocess(raw: Path, processed: Path, crash_at: str | None) -> int:
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    proc = subprocess.run([sys.executable, "-c", _RUN_SCRIPT, str(raw), str(processed)], cwd=ROOT, env=env,
                          timeout=120)
    return proc.returncode


@pytest.mark.parametrize("crash_at", ["before-commit", "parts-written", "committed", "parts-renamed"])
def test_sigkill_at_any_point_then_rerun_gives_the_same_records(seed_raw: Path, tmp_path: Path,
                                                                crash_at: str) -> None:
    reference = tmp_path / "reference"
    run_ingest(seed_raw, reference)
    raw = tmp_path / "raw2"
    raw.mkdir()
    for name in ("000", "003"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    processed = tmp_path / "processed"
    assert _run_subprocess(raw, processed, None) == 0
    for name in ("001", "002", "004"):
        shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
    assert _run_subprocess(raw, processed, crash_at) == -signal.SIGKILL
    # No reader sees a partial file: only complete parts match the consumer's glob.
    for part in (processed / RECORDS_DIR).glob("*.jsonl"):
        for line in part.read_text().splitlines():
            json.loads(line)
    assert _run_subprocess(raw, processed, None) == 0
    assert stable(list(read_records(processed))) == stable(list(read_records(reference)))
    assert stable(part_records(processed)) == stable(list(read_records(reference)))
    assert not list((processed / RECORDS_DIR).glob(".tmp-*"))


def test_jsonl_articles_get_one_record_each(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [{"title": f"Story {i}", "text": f"Body number {i} of the export, with several words in it.",
             "date": "2021-03-0" + str(i + 1), "source": "Example Wire", "tags": ["x"]} for i in range(3)]
    (raw / "export.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    summary = run_ingest(raw, tmp_path / "p")
    assert summary.records_written == 3 and summary.items_quarantined == 1
    records = list(read_records(tmp_path / "p"))
    assert [r["title"] for r in records] == ["Story 0", "Story 1", "Story 2"]
    assert [r["source"]["item"] for r in records] == [0, 1, 2]
    assert records[0]["outlet"] == "Example Wire" and records[0]["extra"] == {"tags": ["x"]}


def test_languages_are_settled_per_batch_and_a_failing_file_alone_is_quarantined(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.ingest as ingest
    from pipeline.metadata import settle_languages
    from pipeline.read import scan_raw

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.txt").write_text("The harbour authority said on Tuesday that the northern pier would reopen in April "
                               "after repairs to the sea wall.\n")
    rows = [{"title": "Eins", "text": "Der Stadtrat hat am Dienstag den Haushalt für den Hafen beschlossen."},
            {"title": "Zwei", "text": "POISON: die Arbeiten an der Mole sollen im April beginnen, sagte sie."}]
    (raw / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    (raw / "c.txt").write_text("Le conseil municipal a adopté mardi le budget du port après un long débat.\n")
    calls = []

    def fragile(metas: Any, bodies: Any) -> None:
        calls.append(len(bodies))
        if any("POISON" in body for body in bodies):
            raise RuntimeError("the model broke")
        settle_languages(metas, bodies)

    entries, _ = scan_raw(raw)
    planned = [ingest.PlannedFile(e, e.abs_path.stat().st_mtime_ns, None) for e in entries]
    batch = ingest.prepare_batch(planned, IngestSettings())
    assert [(a.path, a.meta.language) for a in batch.articles] == [
        ("a.txt", "en"), ("b.jsonl", "de"), ("b.jsonl", "de"), ("c.txt", "fr")]
    monkeypatch.setattr(ingest, "settle_languages", fragile)
    batch = ingest.prepare_batch(planned, IngestSettings())
    assert calls == [4, 1, 2, 1]  # the batch at once, then file by file
    assert {f.path: (f.status, f.reason) for f in batch.files} == {
        "a.txt": ("ok", None), "b.jsonl": ("quarantined", "failed to process: RuntimeError: the model broke"),
        "c.txt": ("ok", None)}
    assert [(a.path, a.meta.language) for a in batch.articles] == [("a.txt", "en"), ("c.txt", "fr")]
    assert batch.problems == [] and all(a.units is not None for a in batch.articles)


def test_orders_are_total(seed_raw: Path, tmp_path: Path) -> None:
    """Every permutation of arrival for three articles that share passages gives one result."""
    names = ["000", "002", "004"]
    results = []
    for perm in itertools.permutations(names):
        raw = tmp_path / "-".join(perm) / "raw"
        raw.mkdir(parents=True)
        processed = raw.parent / "processed"
        for name in perm:
            shutil.copy2(seed_raw / SEED[name], raw / SEED[name])
            run_ingest(raw, processed)
        results.append(stable(list(read_records(processed))))
    assert all(r == results[0] for r in results)


def test_a_large_backlog_is_read_over_several_bounded_runs(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    settings = IngestSettings(max_run_bytes=6000)  # about two sample articles per run
    runs = []
    while True:
        summary = run_ingest(seed_raw, processed, settings)
        runs.append(summary)
        if not summary.files_deferred:
            break
    assert len(runs) >= 3
    assert runs[0].files_deferred > 0 and runs[0].records_written < 5
    assert sum(s.records_written for s in runs) == 5
    reference = tmp_path / "reference"
    run_ingest(seed_raw, reference)
    assert stable(list(read_records(processed))) == stable(list(read_records(reference)))


def _write_json(raw: Path, name: str, paragraphs: list[str], published: str | None = None) -> None:
    obj: dict[str, Any] = {"text": "\n\n".join(paragraphs)}
    if published:
        obj["published"] = published
    (raw / name).write_text(json.dumps(obj))


def test_equal_similarity_goes_to_the_earliest_whatever_arrives_first(tmp_path: Path) -> None:
    words = [f"w{i:02d}x" for i in range(1, 15)]
    texts = {
        "a1.json": (" ".join(words[:12] + ["xone", "xtwo"]), "2020-01-01"),  # J(p, a1) = 2/3
        "a2.json": (" ".join(["yone", "ytwo"] + words[2:]), "2020-01-02"),   # J(p, a2) = 2/3
        "p.json": (" ".join(words), "2020-01-03"),
    }
    results = []
    for arrival in (["a1.json", "a2.json", "p.json"], ["a2.json", "p.json", "a1.json"]):
        raw = tmp_path / arrival[0] / "raw"
        raw.mkdir(parents=True)
        for name in arrival:
            _write_json(raw, name, [texts[name][0]], texts[name][1])
            run_ingest(raw, raw.parent / "processed")
        records = {r["source"]["path"]: r for r in read_records(raw.parent / "processed")}
        assert records["p.json"]["paragraphs"][0]["repeat_of"]["record"] == records["a1.json"]["id"]
        results.append(stable(list(records.values())))
    assert results[0] == results[1]


def test_a_file_fixed_after_an_unhashed_quarantine_replaces_its_old_records(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    body = "A perfectly ordinary paragraph of an article, long enough to be compared with others."
    lines = [json.dumps({"text": f"{body} Number {i}.", "published": "2020-01-0" + str(i + 1)}) for i in range(3)]
    (raw / "a.jsonl").write_text("\n".join(lines))
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    (raw / "a.jsonl").write_text("x" * 5000)  # too large: quarantined before its bytes are hashed
    run_ingest(raw, processed, IngestSettings(max_file_bytes=1000))
    assert len(list(read_records(processed))) == 3  # the last good version is kept meanwhile
    (raw / "a.jsonl").write_text(json.dumps({"text": "Completely new text for a single article, fixed."}))
    run_ingest(raw, processed)
    records = list(read_records(processed))
    assert [r["text"] for r in records] == ["Completely new text for a single article, fixed."]
    assert stable(part_records(processed)) == stable(records)


def test_hostile_json_is_quarantined_or_repaired_never_fatal(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_json(raw, "good.json", ["A perfectly normal article paragraph with quite enough words in it."], "2020-01-01")
    (raw / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (raw / "bigint.json").write_text('{"text": "Some article text here.", "n": ' + "1" * 5000 + "}")
    (raw / "surrogate.json").write_text('{"text": "Broken \\ud800 text with enough words to count here.", "x": NaN}')
    summary = run_ingest(raw, tmp_path / "processed")
    reasons = {q["path"]: q["reason"] for q in summary.quarantined}
    assert reasons["deep.json"] == "malformed JSON: nested too deeply"
    assert reasons["bigint.json"].startswith("malformed JSON")
    records = {r["source"]["path"]: r for r in read_records(tmp_path / "processed")}
    assert "\ufffd" in records["surrogate.json"]["text"] and records["surrogate.json"]["extra"] == {"x": None}


def test_replacing_a_file_keeps_the_index_keys_an_earlier_article_holds(tmp_path: Path) -> None:
    """A superseded article's sentence that an earlier article also has stays findable."""
    shared = "The regional council approved the new water treatment plant after three years of heated public debate."

    def article(day: str, paragraphs: list[str]) -> str:
        return json.dumps({"published": day, "outlet": "Daily", "text": "\n\n".join(paragraphs)})

    storm = "A storm knocked out power to thousands of homes across the northern districts overnight."
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "e.json").write_text(article("2020-01-01", ["Officials opened the bridge on Monday in front of crowds.",
                                                       shared]))
    (raw / "r.json").write_text(article("2020-01-05", [storm, shared]))
    run_ingest(raw, tmp_path / "p")
    (raw / "r.json").write_text(article("2020-01-05", [storm]))
    os.utime(raw / "r.json", ns=(1, 1))
    run_ingest(raw, tmp_path / "p")
    (raw / "n.json").write_text(article("2020-01-10", ["Farmers warned the drought could cut the harvest by a third.",
                                                       shared]))
    run_ingest(raw, tmp_path / "p")
    run_ingest(raw, tmp_path / "whole")
    assert stable(list(read_records(tmp_path / "p"))) == stable(list(read_records(tmp_path / "whole")))
    assert next(r for r in read_records(tmp_path / "p") if r["source"]["path"] == "n.json")["repeats"] == 1


def test_an_article_of_punctuation_only_does_not_stop_the_run(seed_raw: Path, tmp_path: Path) -> None:
    (seed_raw / "dots.txt").write_text("...\n\n!!!\n\n— — —\n")
    summary = run_ingest(seed_raw, tmp_path / "processed")
    assert summary.records_written + summary.files_quarantined == 6 and summary.repeats_flagged == 6


def test_reordering_a_jsonl_file_changes_no_record_id(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [{"id": f"wire-{i}", "title": f"Story {i}", "text": f"Body number {i} of the export, with several words."}
            for i in range(3)]
    rows.append({"title": "Untagged", "text": "A story without an id or url, keyed by its own content instead."})
    feed = raw / "export.jsonl"
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run_ingest(raw, tmp_path / "p")
    before = {r["id"]: r["title"] for r in read_records(tmp_path / "p")}
    feed.write_text("".join(json.dumps(r) + "\n" for r in [rows[-1], *rows[:-1]]), encoding="utf-8")
    run_ingest(raw, tmp_path / "p")
    after = list(read_records(tmp_path / "p"))
    assert {r["id"]: r["title"] for r in after} == before and len(before) == 4
    assert sorted(r["source"]["item"] for r in after) == [0, 1, 2, 3]


def test_other_decision_settings_re_decide_the_stored_articles_in_one_run(seed_raw: Path, tmp_path: Path) -> None:
    from pipeline.dedup import DedupSettings

    wider = IngestSettings(dedup=DedupSettings(paragraph_share=0.5))
    fresh = tmp_path / "fresh"
    run_ingest(seed_raw, fresh, wider)
    expected = stable(list(read_records(fresh)))
    processed = tmp_path / "processed"
    default = stable(list(run_ingest(seed_raw, processed) and read_records(processed)))
    assert expected != default  # the setting changes a decision on the seeds
    summary = run_ingest(seed_raw, processed, wider)  # nothing new under raw/: the settings alone
    assert (summary.replayed_articles, summary.records_written, summary.records_rewritten) == (5, 0, 1)
    assert stable(list(read_records(processed))) == expected == stable(part_records(processed))
    assert run_ingest(seed_raw, processed, wider).replayed_articles == 0  # remembered: decided once
    run_ingest(seed_raw, processed)
    assert stable(list(read_records(processed))) == default


def test_reindex_rebuilds_the_sketches_from_the_stored_text_and_keeps_ids(seed_raw: Path, tmp_path: Path) -> None:
    from pipeline.dedup import DedupSettings
    from pipeline.ingest import reindex
    from pipeline.state import StateError

    four = IngestSettings(dedup=DedupSettings(shingle_size=4, threshold=0.4))
    fresh = tmp_path / "fresh"
    run_ingest(seed_raw, fresh, four)
    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    ids = sorted(r["id"] for r in read_records(processed))
    with pytest.raises(StateError, match=f"newsdedup reindex {processed} --shingle-size 4 --threshold 0.4$"):
        run_ingest(seed_raw, processed, four)
    shutil.rmtree(seed_raw)  # the raw files are not needed
    summary = reindex(processed, four.dedup)
    assert summary.outcome == "reindexed" and summary.replayed_articles == 5
    assert stable(list(read_records(processed))) == stable(list(read_records(fresh))) == stable(part_records(processed))
    assert sorted(r["id"] for r in read_records(processed)) == ids
    assert reindex(processed, four.dedup).records_rewritten == 0  # the same settings: the same records


_REINDEX_SCRIPT = (
    "import sys; from pathlib import Path; from pipeline.dedup import DedupSettings; "
    "from pipeline.ingest import reindex; reindex(Path(sys.argv[1]), DedupSettings(shingle_size=4))")


@pytest.mark.parametrize("crash_at", ["parts-written", "committed"])
def test_reindex_killed_leaves_the_old_state_or_the_new_one(seed_raw: Path, tmp_path: Path, crash_at: str) -> None:
    from pipeline.dedup import DedupSettings
    from pipeline.ingest import reindex

    four = DedupSettings(shingle_size=4)
    fresh = tmp_path / "fresh"
    run_ingest(seed_raw, fresh, IngestSettings(dedup=four))
    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    before = stable(list(read_records(processed)))
    env = dict(os.environ, **{CRASH_ENV: crash_at})
    done = subprocess.run([sys.executable, "-c", _REINDEX_SCRIPT, str(processed)], cwd=ROOT, env=env, timeout=120)
    assert done.returncode == -signal.SIGKILL
    after = stable(list(read_records(processed)))
    assert after == (before if crash_at == "parts-written" else stable(list(read_records(fresh))))
    reindex(processed, four)  # completes the work either way
    assert stable(list(read_records(processed))) == stable(list(read_records(fresh))) == stable(part_records(processed))


def test_another_raw_dir_is_refused_and_the_quarantine_of_the_first_is_kept(seed_raw: Path, tmp_path: Path) -> None:
    from pipeline.state import StateError

    (seed_raw / "notes.docx").write_bytes(b"PK")
    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    extra = tmp_path / "extra-raw"
    extra.mkdir()
    shutil.copy2(seed_raw / SEED["001"], extra / SEED["000"])  # a same-named file, another article
    records = stable(list(read_records(processed)))
    quarantine = (processed / "quarantine.jsonl").read_text()
    with pytest.raises(StateError, match="--processed-dir") as refused:
        run_ingest(extra, processed)
    assert str(seed_raw.resolve()) in str(refused.value) and str(extra.resolve()) in str(refused.value)
    assert stable(list(read_records(processed))) == records
    assert (processed / "quarantine.jsonl").read_text() == quarantine and "notes.docx" in quarantine


def test_batches_are_bounded_in_files_and_in_raw_bytes() -> None:
    from pipeline.ingest import PlannedFile, batches
    from pipeline.read import RawEntry

    def planned(name: str, size: int) -> PlannedFile:
        return PlannedFile(RawEntry(name, Path("/raw") / name, size), 0, None)

    small = [planned(f"a{i}.txt", 3_000) for i in range(5)]
    assert [len(b) for b in batches(small, 2)] == [2, 2, 1]  # files per batch
    pages = [planned(f"p{i}.html", 170_000) for i in range(30)]
    sized = list(batches(pages, 200, max_bytes=1_000_000))
    assert [len(b) for b in sized] == [5] * 6  # 5 pages of 170 KB fit in 1 MB, a 6th does not
    huge = [planned("big.json", 5_000_000), *small[:2]]
    assert [len(b) for b in batches(huge, 200, max_bytes=1_000_000)] == [1, 2]  # a large file alone
    assert [p.entry.path for b in batches(pages + small, 200, max_bytes=1_000_000) for p in b] == \
        [p.entry.path for p in pages + small]  # order kept, nothing lost
