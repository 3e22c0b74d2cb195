"""Exports, and the DuckDB / pandas reads the README documents, run on the files as they lie."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.cli import main as cli_main
from pipeline.catalog import read_passages
from pipeline.export import CSV_COLUMNS, arrow_schema, export_records
from pipeline.ingest import run_ingest
from pipeline.records import RECORD_FIELDS, iter_record_lines, read_records

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "raw"
S000, S001, S002, S003, S004 = sorted(p.name for p in SEEDS.glob("*.txt"))
DOCS = [ROOT / "processed" / "README.md", ROOT / "README.md"]
# Run ids as a flow's runs take them (Prefect flow run ids): UUIDs.
RUN_1, RUN_2 = "5d0c3a1e-8b7f-4c2e-9a41-0f3b6e2d7c11", "b7e21f90-3c4d-4e5a-8f6b-1a2c3d4e5f60"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project dir as a user has it after two runs (002 and 004, then the rest): processed/ in
    the working directory, with a rewritten record and a JSON Lines source with extra fields."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in (S002, S004):
        shutil.copy2(SEEDS / name, raw / name)
    run_ingest(raw, tmp_path / "processed", run_id=RUN_1)
    for name in (S000, S001, S003):
        shutil.copy2(SEEDS / name, raw / name)
    item = {"title": "Harbour", "text": "Officials met on Monday to discuss the harbour project and its costs.",
            "published": "2021-03-04", "tags": ["port"], "score": 3}
    (raw / "feed.jsonl").write_text(json.dumps(item) + "\n", encoding="utf-8")
    run_ingest(raw, tmp_path / "processed", run_id=RUN_2)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the docs' commands say .venv/bin/...
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
    passages = duckdb.sql(queries[1]).fetchall()
    copies = {row[0]: row[1] for row in passages}
    spans = [sp["passage"] for r in records for p in r["paragraphs"] for sp in p["repeated_spans"]]
    assert copies == {passage: spans.count(passage) for passage in spans} and len(copies) >= 3
    assert len(passages) == len(copies)  # one row per passage
    by_id = {r["id"]: r for r in records}
    catalog = {p["passage"]: p for p in read_passages("processed")}
    for passage, _, first_text in passages:  # the canonical text: the first occurrence's, never a copy's
        record, paragraph = passage.split(":")
        assert first_text == by_id[record]["paragraphs"][int(paragraph)]["text"]
        assert catalog[passage]["text"][:40] in first_text
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
            assert namespace["previous_cursor"] == RUN_2
    records = list(read_records("processed"))
    assert sorted(df["id"]) == sorted(r["id"] for r in records)
    assert df.index.is_unique and list(df.index) == list(range(len(records)))  # one row label per record
    row = df.set_index("id").loc[records[2]["id"]]
    assert row["paragraphs"] == records[2]["paragraphs"] and row["published"] == records[2]["published"]


# A shell block of the docs is a consumer's when each of its commands reads processed/ (the
# others start runs, servers and deployments: tests/test_cli.py and the e2e tests cover those).
_READER_COMMAND_RE = re.compile(r"^(?:\.venv/bin/newsdedup (?:records|passages|export|status) |\.venv/bin/python -c |"
                                r"RUN_ID=|echo )")


def reader_shell_blocks() -> list[tuple[Path, str]]:
    blocks = []
    for doc in DOCS:
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S):
            commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
            if all(_READER_COMMAND_RE.match(line) for line in commands):
                blocks.append((doc, block))
    return blocks


def test_readme_shell_snippets_run_as_printed(site: Path) -> None:
    blocks = reader_shell_blocks()
    contract = [b for d, b in blocks if d.parent.name == "processed"]
    # every shell block of the contract is a reader's, and so are the README's consumer sections
    assert len(contract) == len(re.findall(r"```sh\n", DOCS[0].read_text(encoding="utf-8"))) == 2
    assert len(blocks) >= 5
    env = {k: v for k, v in os.environ.items() if k != "NEWSDEDUP_STATE_URL"}
    seen: set[str] = set()
    for doc, block in blocks:
        # A command both READMEs print runs once (each costs an interpreter start); assignments always.
        lines = [line for line in block.splitlines() if line.split("#")[0].strip() not in seen or "=$(" in line]
        seen.update(line.split("#")[0].strip() for line in lines)
        done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(lines)], cwd=site,
                              capture_output=True, text=True, timeout=300, env=env)
        where = f"{doc.relative_to(ROOT)}:\n{block}"
        assert done.returncode == 0 and "Traceback" not in done.stderr, f"{where}\n{done.stderr}"
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                json.loads(line)  # whole records: no command cuts one mid-line
    assert Path("snapshot.parquet").exists() and len(pd.read_parquet("snapshot.parquet")) == 6
    assert not list(site.glob(".tmp-*"))


def test_export_jsonl_is_the_records_output(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("out").mkdir()
    with pytest.raises(SystemExit):
        cli_main(["export", "processed", "--format", "jsonl", "--out", "out/records.jsonl"])
    assert "exported 6 record(s)" in capsys.readouterr().err
    text = Path("out/records.jsonl").read_text(encoding="utf-8")
    assert text.splitlines() == list(iter_record_lines("processed"))
    assert [p.name for p in Path("out").iterdir()] == ["records.jsonl"]  # no temporary file left
    assert export_records("processed", "jsonl", "out/records.jsonl", since=RUN_1) == 6  # 4 new, 2 rewritten
    assert export_records("processed", "jsonl", "out/records.jsonl", since=RUN_2[:8]) == 0  # the start of an id
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
    capsys.readouterr()
    # an --out in a directory that is not there: one line, nothing created
    for out, says in (("nonexistent/deeper/x.parquet", "does not exist"),
                      ("processed/last_run.json/x.csv", "not a dir"), ("processed", "is a directory")):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["export", "processed", "--format", out.rsplit(".", 1)[-1] if "." in out else "jsonl",
                      "--out", out])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and says in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not Path("nonexistent").exists()
