"""The passage catalog: the repeated passages as data (pipeline.catalog, `newsdedup passages`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flows.cli import main as cli_main
from pipeline.catalog import PASSAGE_FIELDS, read_passages
from pipeline.ingest import run_ingest
from pipeline.records import read_records
from tests.conftest import SEEDS, make_raw

S000, S001, S002, S003, S004 = sorted(p.name for p in SEEDS.glob("*.txt"))

# The Trend background of the seeds as passages: a run of 000's sentences that a copy repeats
# in order, whatever its paragraph breaks. How the passage starts in 000 -> (articles holding
# it, first occurrence included; copies, one per repeated span).
TREND_BACKGROUND = {
    "Armenian armed forces launched": (3, 3),  # 002:3 + 002:4's opening, 004:6's first two sentences
    "Back in July 2020": (2, 3),  # 004 prints 000:9-11 in one run
    "The conflict between": (2, 2),  # 002 prints 000:10-11 after a news paragraph
}


def by_start(passages: list[dict]) -> dict[str, dict]:
    out = {}
    for passage in passages:
        [start] = [s for s in TREND_BACKGROUND if passage["text"].casefold().startswith(s.casefold())]
        out[start] = passage
    return out


def test_catalog_of_the_seeds(tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    run_ingest(SEEDS, processed)
    passages = list(read_passages(processed))
    assert len(passages) == 3
    assert all(tuple(p) == PASSAGE_FIELDS for p in passages)
    records = {r["source"]["path"]: r for r in read_records(processed)}
    first = records[S000]
    found = by_start(passages)
    assert {start: (p["articles"], p["copies"]) for start, p in found.items()} == TREND_BACKGROUND
    for passage in passages:
        assert passage["first_record"] == first["id"] and passage["first_published"] == "2020-09-28"
        assert passage["passage"] == f"{first['id']}:{passage['first_paragraph']}"
        assert passage["text"].startswith(first["paragraphs"][passage["first_paragraph"]]["text"][:40])
        assert passage["outlets"] == ["Trend"]  # 000 names no outlet; 002 and 004 are Trend's
        assert passage["first_seen"] == "2020-09-28"
        assert 1 <= passage["variants"] <= passage["copies"]
        # the catalog agrees with the spans in the records
        copies = [sp for r in records.values() for p in r["paragraphs"] for sp in p["repeated_spans"]
                  if sp["passage"] == passage["passage"]]
        assert len(copies) == passage["copies"]
    # the Sept. 27 passage runs on into the first sentence of 000's next paragraph
    assert found["Armenian armed forces launched"]["text"].endswith("along the entire front.")
    assert found["Armenian armed forces launched"]["last_seen"] == records[S004]["published"] == "2020-10-28"
    assert found["The conflict between"]["last_seen"] == records[S002]["published"]
    assert found["Back in July 2020"]["last_seen"] == "2020-10-28"
    # ordered by first occurrence: record, then paragraph
    assert [p["first_paragraph"] for p in passages] == sorted(p["first_paragraph"] for p in passages)


def test_catalog_does_not_depend_on_arrival_order(tmp_path: Path) -> None:
    at_once = tmp_path / "at-once"
    run_ingest(SEEDS, at_once)
    # 002 and 004 first: 004 repeats two of 002's passages. Then 000, published earlier, arrives and becomes the source.
    late = tmp_path / "late"
    raw = make_raw(tmp_path, S002, S004)
    run_ingest(raw, late)
    early = list(read_passages(late))
    assert len(early) == 2 and {p["first_record"] for p in early} == {
        next(r["id"] for r in read_records(late) if r["source"]["path"] == S002)}
    for name in (S000, S001, S003):
        shutil.copy2(SEEDS / name, raw / name)
    run_ingest(raw, late)
    assert list(read_passages(late)) == list(read_passages(at_once))


def test_occurrences_and_no_passages(tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    run_ingest(SEEDS, processed)
    for passage in read_passages(processed, occurrences=True):
        occ = passage["occurrences"]
        assert len(occ) == passage["copies"]
        assert all(o["outlet"] == "Trend" and 0.5 <= o["similarity"] <= 1 for o in occ)
    lonely = tmp_path / "lonely"
    run_ingest(make_raw(tmp_path, S001), lonely)
    assert list(read_passages(lonely)) == []


def test_cli_passages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    processed = tmp_path / "processed"
    run_ingest(SEEDS, processed)
    for extra, occurrences in (([], False), (["--occurrences"], True)):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["passages", str(processed), *extra])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert [json.loads(line) for line in out.splitlines()] == list(read_passages(processed, occurrences))
