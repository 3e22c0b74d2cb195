"""Exports, and the DuckDB / pandas reads the README documents, run on the files as they lie."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.cli import main as cli_main
from pipeline.export import CSV_COLUMNS, arrow_schema, export_records
from pipeline.ingest import run_ingest
from pipeline.records import RECORD_FIELDS, iter_record_lines, read_records

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "raw"
S000, S001, S002, S003, S004 = sorted(p.name for p in SEEDS.glob("*.txt"))
DOCS = [ROOT / "processed" / "README.md", ROOT / "README.md"]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project dir as a user has it after two runs (002 and 004, then the rest): processed/ in
    the working directory, with a rewritten record and a JSON Lines source with extra fields."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in (S002, S004):
        shutil.copy2(SEEDS / name, raw / name)
    run_ingest(raw, tmp_path / "processed", run_id="run-1")
    for name in (S000, S001, S003):
        shutil.copy2(SEEDS / name, raw / name)
    item = {"title": "Harbour", "text": "Officials met on Monday to discuss the harbour project and its costs.",
            "published": "2021-03-04", "tags": ["port"], "score": 3}
    (raw / "feed.jsonl").write_text(json.dumps(item) + "\n", encoding="utf-8")
    run_ingest(raw, tmp_path / "processed", run_id="run-2")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def doc_blocks(language: str) -> list[str]:
    blocks = []
    for doc in DOCS:
        if doc.exists():
            blocks += re.findall(rf"```{language}\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    return blocks


def test_readme_duckdb_queries_run_on_the_parts(site: Path) -> None:
    queries = doc_blocks("sql")
    assert len(queries) >= 3
    for query in queries:
        assert "part-*.jsonl" in query
        duckdb.sql(query).fetchall()
    records = list(read_records("processed"))
    by_outlet = {row[0]: row[1:] for row in duckdb.sql(queries[0]).fetchall()}
    assert by_outlet["Trend"] == (2, 6)
    assert sum(n for n, _ in by_outlet.values()) == len(records) == 6
    copies = {row[0]: row[1] for row in duckdb.sql(queries[1]).fetchall()}
    spans = [sp["passage"] for r in records for p in r["paragraphs"] for sp in p["repeated_spans"]]
    assert copies == {passage: spans.count(passage) for passage in spans} and len(copies) >= 3
    assert len(duckdb.sql(queries[2]).fetchall()) == len(records)
    # the one-liners in their shell form: the same query, and it runs
    shells = [b for b in doc_blocks("sh") if "import duckdb" in b]
    assert shells
    for shell in shells:
        [query] = re.findall(r'duckdb\.sql\(\\"(.*?)\\"\)', shell)
        assert query == queries[0].strip().rstrip(";")
        assert duckdb.sql(query).fetchall() == duckdb.sql(queries[0]).fetchall()


def test_readme_python_snippets_run_on_the_parts(site: Path) -> None:
    snippets = doc_blocks("python")
    assert any("pd.read_json" in s for s in snippets) and any("last_run_id" in s for s in snippets)
    for snippet in snippets:  # each as a new user pastes it, in a fresh interpreter namespace
        namespace: dict = {}
        exec(compile(snippet, "README snippet", "exec"), namespace)
        if "pd.read_json" in snippet:
            df = namespace["df"]
        if "last_run_id" in snippet:
            assert namespace["previous_cursor"] == "run-2"
    records = list(read_records("processed"))
    assert sorted(df["id"]) == sorted(r["id"] for r in records)
    row = df.set_index("id").loc[records[2]["id"]]
    assert row["paragraphs"] == records[2]["paragraphs"] and row["published"] == records[2]["published"]


def test_export_jsonl_is_the_records_output(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["export", "processed", "--format", "jsonl", "--out", "out/records.jsonl"])
    assert "exported 6 record(s)" in capsys.readouterr().err
    text = Path("out/records.jsonl").read_text(encoding="utf-8")
    assert text.splitlines() == list(iter_record_lines("processed"))
    assert [p.name for p in Path("out").iterdir()] == ["records.jsonl"]  # no temporary file left
    assert export_records("processed", "jsonl", "out/records.jsonl", since="run-1") == 6  # 4 new, 2 rewritten
    assert export_records("processed", "jsonl", "out/records.jsonl", since="run-2") == 0
    assert Path("out/records.jsonl").read_text(encoding="utf-8") == ""


def test_export_parquet(site: Path) -> None:
    assert export_records("processed", "parquet", "snap.parquet") == 6
    table = pq.read_table("snap.parquet")
    assert table.schema.names == list(RECORD_FIELDS) and table.schema == arrow_schema()
    rows = table.to_pylist()
    records = list(read_records("processed"))
    for row, record in zip(rows, records, strict=True):
        expected = {**record, "extra": json.dumps(record["extra"]) if "extra" in record else None}
        expected["source"] = {"item": None, **record["source"]}
        assert row == expected
    # and through pandas and DuckDB, as a consumer reads it
    df = pd.read_parquet("snap.parquet")
    assert len(df) == 6 and df["repeats"].sum() == sum(r["repeats"] for r in records)
    spans = duckdb.sql("SELECT p.repeat_of.span FROM (SELECT unnest(paragraphs) AS p FROM 'snap.parquet') "
                       "WHERE p.repeat_of IS NOT NULL").fetchall()
    assert len(spans) == sum(r["repeats"] for r in records)


def test_export_csv(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_records("processed", "csv", "snap.csv") == 6
    with open("snap.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    records = list(read_records("processed"))
    for row, record in zip(rows, records, strict=True):
        assert row["id"] == record["id"] and row["text"] == record["text"]
        assert json.loads(row["paragraphs"]) == record["paragraphs"]
        assert row["source_path"] == record["source"]["path"]
        assert (json.loads(row["extra"]) if row["extra"] else None) == record.get("extra")
    df = pd.read_csv("snap.csv", dtype=str, keep_default_na=False)
    assert list(df["id"]) == [r["id"] for r in records]
    with pytest.raises(SystemExit):
        cli_main(["export", "processed", "--format", "csv", "--out", "-"])
    assert capsys.readouterr().out == Path("snap.csv").read_text(encoding="utf-8")


def test_export_errors(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["export", "processed", "--format", "parquet", "--out", "-"])
    assert exit_info.value.code == 2 and "standard output" in capsys.readouterr().err
    with pytest.raises(ValueError):
        export_records("processed", "xml", "x.xml")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["export", "nowhere", "--out", "x.jsonl"])
    assert exit_info.value.code == 2 and not Path("x.jsonl").exists()
