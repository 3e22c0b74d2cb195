"""The HTML report (pipeline.report, `newsdedup report`): its figures, its page in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main as cli_main
from pipeline.catalog import PASSAGE_FIELDS, read_passages
from pipeline.ingest import run_ingest
from pipeline.records import read_records
from pipeline.report import NO_OUTLET, collect, write_report
from tests.conftest import SEEDS, make_raw

S000, S001, S002, S003, S004 = sorted(p.name for p in SEEDS.glob("*.txt"))
# ../shared/seeds/EXPECTED.md: the four background paragraphs of 000 that 002 and 004 repeat.
SEED_BACKGROUND = (
    "Armenian armed forces launched a large-scale military attack",
    "Back in July 2020, Armenian Armed Forces violated the ceasefire",
    "The conflict between the two South Caucasus countries began in 1988",
    "The 1994 ceasefire agreement was followed by peace negotiations",
)
SCREENSHOT_ENV = "NEWSDEDUP_REPORT_SCREENSHOT"  # a path: the browser test also writes the README's picture there


@pytest.fixture(scope="module")
def seeds_processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    processed = tmp_path_factory.mktemp("report") / "processed"
    run_ingest(SEEDS, processed)
    return processed


@pytest.fixture(scope="module")
def seeds_report(seeds_processed: Path) -> Path:
    out = seeds_processed.parent / "report.html"
    write_report(seeds_processed, out)
    return out


def _repeated_chars(paragraph: dict[str, Any]) -> int:
    if paragraph["repeat_of"] is not None:
        return len(paragraph["text"])
    return sum(span["end"] - span["start"] for span in paragraph["repeated_spans"])


def test_figures_agree_with_the_readers(seeds_processed: Path) -> None:
    data = collect(seeds_processed)
    # The top passages carry the catalog's own figures (the report reads them its faster way).
    catalog = sorted(read_passages(seeds_processed), key=lambda p: -p["copies"])
    assert [{k: p[k] for k in PASSAGE_FIELDS} for p in data.passages] == catalog
    assert data.passage_count == len(catalog) == 3
    # Corpus figures: what the records say, the deduplicated text plus what it drops.
    records = list(read_records(seeds_processed))
    repeated = sum(_repeated_chars(p) for r in records for p in r["paragraphs"] if p["kind"] == "body")
    assert (data.total.articles, data.total.paragraphs) == (len(records), sum(len(r["paragraphs"]) for r in records))
    assert data.total.repeated_chars == repeated > 0
    assert data.total.body_chars == sum(len(r["text"]) for r in records) + repeated
    outlets = {r["outlet"] or NO_OUTLET for r in records}
    assert set(data.by_outlet) == outlets == {"Trend", NO_OUTLET}
    assert data.by_outlet["Trend"].repeated_chars == data.total.repeated_chars  # only 002 and 004 repeat
    assert set(data.by_month) == {"2020-09", "2020-10", "undated"}  # 003 states no date
    # Shown: the two articles that repeat 000's background, and 000, the paragraphs they link to.
    assert sorted(r["source"]["path"] for r in data.articles) == [S002, S004]
    assert [r["source"]["path"] for r in data.sources.values()] == [S000]
    assert data.repeated_paragraphs == 6 and data.spans == 2
    assert data.copies == [] and data.quarantine == [] and len(data.runs) == 1


def test_variant_is_the_most_edited_copy_with_differences_marked(seeds_report: Path, seeds_processed: Path) -> None:
    page = seeds_report.read_text(encoding="utf-8")
    launched = page[page.index("Armenian armed forces launched"):]
    launched = launched[:launched.index("</section>")]
    # 002 prints the passage edited (similarity below 1); its words differ from 000's and are marked.
    assert "most different copy: Azerbaijani army seized great victory" in launched
    assert "<del>" in launched and "<ins>" in launched


def test_syndicated_copies_and_quarantine_are_listed(tmp_path: Path) -> None:
    raw = make_raw(tmp_path, S000)
    text = (SEEDS / S000).read_text(encoding="utf-8").replace("2020-09-28", "2020-09-30", 1)
    (raw / "900_copy_of_000.txt").write_text(text, encoding="utf-8")  # republished two days later
    (raw / "901_binary.txt").write_bytes(bytes(range(256)) * 40)
    processed = tmp_path / "processed"
    run_ingest(raw, processed)
    out = tmp_path / "report.html"
    written = write_report(processed, out)
    page = out.read_text(encoding="utf-8")
    copies = page[page.index('<section id="copies">'):page.index('<section id="articles">')]
    assert written["records"] == 2
    assert "900_copy_of_000.txt" in copies and f"{S000}" in copies and "<table>" in copies
    quarantine = page[page.index('<section id="quarantine">'):page.index('<section id="runs">')]
    [entry] = [json.loads(line) for line in (processed / "quarantine.jsonl").read_text().splitlines()]
    assert "901_binary.txt" in quarantine and entry["reason"] in quarantine


def test_page_loads_nothing(seeds_report: Path) -> None:
    page = seeds_report.read_text(encoding="utf-8")
    assert "default-src 'none'" in page  # the browser refuses any load, should one slip in
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"] * page.count("<svg")


def test_cli_report(seeds_processed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([str(seeds_processed)], ["--processed-dir", str(seeds_processed)]):
        out = tmp_path / f"report{len(args)}.html"
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["report", *args, "--out", str(out)])
        assert exit_info.value.code == 0
        assert "Top passages" in out.read_text(encoding="utf-8")
        assert f"written to {out}" in capsys.readouterr().err
    for args in ([str(tmp_path / "nothing-here")], [str(seeds_processed), "--processed-dir", str(tmp_path)]):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["report", *args, "--out", str(tmp_path / "never.html")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("newsdedup")
    assert not (tmp_path / "never.html").exists()


# --- the page in headless Chromium ---------------------------------------------------------


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(html_file: Path, screenshot: Path, width: int = 1000, height: int = 1000) -> dict[str, Any]:
    """Load the page in the system's Chromium (Playwright drives it), take a screenshot of the top of the page,
    and return what the page did: console errors, requests, and facts read from its DOM."""
    from playwright.sync_api import sync_playwright

    url = html_file.resolve().as_uri()
    seen: dict[str, Any] = {"errors": [], "requests": []}
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to start as root (CI, containers) otherwise.
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(url, wait_until="load")
            seen["dom"] = page.evaluate(_READ_DOM)
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    seen["requests"] = [u for u in seen["requests"] if u != url]
    return seen


_READ_DOM = """() => {
  const drawn = el => { const b = el.getBBox(); return b.width > 0 && b.height > 0; };
  const charts = [...document.querySelectorAll('svg.chart')].map(svg => ({
    label: svg.getAttribute('aria-label'), width: svg.getBoundingClientRect().width,
    marks: [...svg.querySelectorAll('.bar, .first')].filter(drawn).length}));
  const passages = [...document.querySelectorAll('#passages .passage .canonical')].map(p => p.textContent);
  const articles = {};
  for (const article of document.querySelectorAll('#articles article.shown')) {
    const marks = [...article.querySelectorAll('mark.repeat')];
    articles[article.dataset.path.slice(0, 3)] = marks.map(m => {
      const link = m.querySelector('a'), target = link && document.getElementById(link.hash.slice(1));
      const source = target && target.closest('article.source');
      return {text: m.textContent, visible: m.getBoundingClientRect().height > 0,
              background: getComputedStyle(m).backgroundColor, target: target ? target.textContent : null,
              source: source ? source.querySelector('code').textContent : null};
    });
  }
  return {charts, passages, articles};
}"""


def test_report_in_chromium(seeds_report: Path, tmp_path: Path) -> None:
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[dev]'")
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (make test installs it with apt-get when run as root; "
                    "otherwise: sudo apt-get install chromium)")
    screenshot = tmp_path / "report.png"
    seen = open_in_chromium(seeds_report, screenshot)
    assert seen["errors"] == []
    assert seen["requests"] == []
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = seen["dom"]
    # Two corpus charts and one timeline per passage, each drawn with visible marks.
    labels = [c["label"] for c in dom["charts"]]
    assert labels[:2] == ["share of body text repeated, by outlet", "body text by month, repeated part in red"]
    assert sum(label.startswith("copies over time") for label in labels) == 3
    assert all(c["width"] > 100 and c["marks"] > 0 for c in dom["charts"])
    # The seeds' four background passages of 000 (EXPECTED.md) are in the listed passages' text.
    listed = " ".join(dom["passages"]).casefold()
    assert all(start.casefold() in listed for start in SEED_BACKGROUND)
    # 002 and 004 (and only they) are shown, their repeated spans highlighted, each linking to 000's paragraph.
    assert sorted(dom["articles"]) == ["002", "004"]
    for marks in dom["articles"].values():
        assert len(marks) >= 3
        for mark in marks:
            assert mark["visible"] and mark["background"] not in ("rgba(0, 0, 0, 0)", "transparent")
            assert mark["source"] == S000
            first_words = " ".join(mark["text"].split()[:4]).casefold()
            assert mark["target"] and first_words[:12] in mark["target"].casefold()
    picture = os.environ.get(SCREENSHOT_ENV)
    if picture:  # the README's picture: the same code path, the same page
        shutil.copyfile(screenshot, picture)


# --- the report beside each flow run in Prefect ----------------------------------------------


@pytest.mark.e2e
def test_flow_run_carries_the_report(seed_raw: Path, tmp_path: Path, prefect_harness: None) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from tests.test_flow_ingest import _artifacts, _run

    processed = tmp_path / "processed"
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        state, _ = _run(seed_raw, processed)
    artifacts = _artifacts(state.state_details.flow_run_id)
    link = artifacts["ingest-report-html"]
    assert link["type"] == "markdown"  # Prefect 3 stores a link artifact as markdown: [text](url)
    assert (processed / "report.html").resolve().as_uri() in link["data"]
    assert "Top passages" in (processed / "report.html").read_text(encoding="utf-8")
    table = artifacts["ingest-top-passages"]
    assert table["type"] == "table"
    rows = json.loads(table["data"])
    catalog = sorted(read_passages(processed), key=lambda p: -p["copies"])
    assert [(r["passage"], r["copies"], r["articles"]) for r in rows] == [
        (p["passage"], p["copies"], p["articles"]) for p in catalog]


def test_report_of_a_state_in_postgresql(seeds_processed: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.state_backend import STATE_URL_ENV
    from tests.postgres_server import SKIP_REASON, fresh_database, postgres_server, server_bin

    if server_bin() is None:
        pytest.skip(SKIP_REASON)
    on_sqlite = collect(seeds_processed)
    with postgres_server() as server:
        monkeypatch.setenv(STATE_URL_ENV, fresh_database(server, "report"))
        processed = tmp_path / "processed"
        run_ingest(SEEDS, processed)
        on_postgres = collect(processed)
        write_report(processed, tmp_path / "report.html")
    assert (on_postgres.total, on_postgres.by_outlet, on_postgres.by_month) == (
        on_sqlite.total, on_sqlite.by_outlet, on_sqlite.by_month)
    assert [{k: p[k] for k in PASSAGE_FIELDS} for p in on_postgres.passages] == [
        {k: p[k] for k in PASSAGE_FIELDS} for p in on_sqlite.passages]
    assert [r["source"]["path"] for r in on_postgres.articles] == [S002, S004]
    assert (on_postgres.repeated_paragraphs, on_postgres.spans) == (on_sqlite.repeated_paragraphs, on_sqlite.spans)
    assert "Top passages" in (tmp_path / "report.html").read_text(encoding="utf-8")
