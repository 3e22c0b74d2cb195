"""Score the pipeline's full-page HTML extraction on pages with expected snippets.

    python bench/html_extraction.py --pages DIR --expected FILE.json [--compare [--all]]

FILE.json maps a page file name (relative to DIR; ``.html`` or ``.html.gz``) to
``{"with": [...], "without": [...]}``. A snippet counts as found when it occurs in the
extracted text after collapsing whitespace. "with" found = TP, "with" missing = FN,
"without" found = FP, "without" absent = TN (trafilatura's evaluation protocol);
precision = TP/(TP+FP), recall = TP/(TP+FN).

``--compare`` also scores a naive bs4 ``get_text()`` and a bs4 ``<p>``-joining heuristic;
``--all`` adds trafilatura settings and other extractors that happen to be installed
(readability-lxml, jusText, resiliparse, boilerpy3); missing ones are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.html import collapse, decode_html, extract_article  # noqa: E402

Extractor = Callable[[str], str]


@dataclass
class Score:
    name: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    pages: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<34} precision={self.precision:.3f} recall={self.recall:.3f} "
            f"f1={self.f1:.3f} pages/s={self.pages_per_second:.1f} pages={self.pages} "
            f"tp={self.tp} fp={self.fp} fn={self.fn} tn={self.tn} errors={self.errors}"
        )


def load_pages(pages_dir: Path, expected: dict[str, dict[str, list[str]]]) -> list[tuple[str, str]]:
    """[(file name, decoded html)] for every expected page; .html.gz is decompressed."""
    docs = []
    for name in sorted(expected):
        path = pages_dir / name
        if not path.exists() and (pages_dir / (name + ".gz")).exists():
            path = pages_dir / (name + ".gz")
        if not path.exists():
            raise SystemExit(f"missing page: {path}")
        docs.append((name, decode_html(path.read_bytes())))
    return docs


def pipeline_text(html: str) -> str:
    """What the pipeline keeps of a page: its body and heading blocks."""
    return "\n".join(text for _, text in extract_article(html).blocks)


def naive_get_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    return soup.get_text(" ")


def p_join(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    return "\n".join(p.get_text(" ") for p in soup.find_all("p"))


def score(name: str, fn: Extractor, docs: list[tuple[str, str]], expected: dict) -> Score:
    s = Score(name)
    for page, html in docs:
        item = expected[page]
        start = time.perf_counter()
        try:
            text = collapse(fn(html) or "")
        except Exception as exc:  # noqa: BLE001 - a crash costs recall, reported in the counts
            print(f"  {name}: {page}: {type(exc).__name__}: {exc}", file=sys.stderr)
            s.errors += 1
            text = ""
        s.seconds += time.perf_counter() - start
        s.pages += 1
        withs = [collapse(w) for w in item.get("with", [])]
        withouts = [collapse(w) for w in item.get("without", [])]
        found_with = sum(1 for w in withs if w in text)
        found_without = sum(1 for w in withouts if w in text)
        s.tp += found_with
        s.fn += len(withs) - found_with
        s.fp += found_without
        s.tn += len(withouts) - found_without
    return s


def optional_extractors() -> dict[str, Extractor]:
    """trafilatura settings and other libraries, when installed."""
    out: dict[str, Extractor] = {}
    try:
        import trafilatura

        def traf(**kw: object) -> Extractor:
            return lambda html: trafilatura.extract(html, **kw) or ""

        out["trafilatura default"] = traf()
        out["trafilatura no comments"] = traf(include_comments=False)
        out["trafilatura fast no comments"] = traf(include_comments=False, fast=True)
        out["trafilatura favor_precision"] = traf(include_comments=False, favor_precision=True)
        out["trafilatura favor_recall"] = traf(include_comments=False, favor_recall=True)
    except ImportError:
        pass
    try:
        from bs4 import BeautifulSoup
        from readability import Document

        out["readability-lxml"] = lambda html: BeautifulSoup(Document(html).summary(), "lxml").get_text(" ")
    except ImportError:
        pass
    try:
        import justext

        stop = justext.get_stoplist("English")

        def run_justext(html: str) -> str:
            paras = justext.justext(html.encode("utf-8"), stop)
            return "\n".join(p.text for p in paras if not p.is_boilerplate)

        out["justext (English stoplist)"] = run_justext
    except ImportError:
        pass
    try:
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        out["resiliparse main_content"] = lambda html: extract_plain_text(HTMLTree.parse(html), main_content=True)
    except ImportError:
        pass
    try:
        from boilerpy3 import extractors

        article = extractors.ArticleExtractor(raise_on_failure=False)
        out["boilerpy3 ArticleExtractor"] = lambda html: article.get_content(html)
    except ImportError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=Path, required=True, help="directory of .html / .html.gz pages")
    parser.add_argument("--expected", type=Path, required=True, help='{"page.html": {"with": [...], "without": [...]}}')
    parser.add_argument("--compare", action="store_true", help="also score naive get_text and <p>-joining baselines")
    parser.add_argument(
        "--all", action="store_true", help="with --compare: also trafilatura settings and other installed extractors"
    )
    args = parser.parse_args(argv)

    expected = json.loads(args.expected.read_text(encoding="utf-8"))
    docs = load_pages(args.pages, expected)
    n_with = sum(len(v.get("with", [])) for v in expected.values())
    n_without = sum(len(v.get("without", [])) for v in expected.values())
    print(f"pages={len(docs)} with-snippets={n_with} without-snippets={n_without}")

    candidates: dict[str, Extractor] = {"pipeline.html.extract_article": pipeline_text}
    if args.compare:
        candidates["bs4 naive get_text"] = naive_get_text
        candidates["bs4 <p>-joining"] = p_join
        if args.all:
            candidates.update(optional_extractors())
    results = []
    for name, fn in candidates.items():
        result = score(name, fn, docs, expected)
        results.append(result)
        print(result.line(), flush=True)
    main_result = results[0]
    print(
        f"precision: {main_result.precision:.4f}\nrecall: {main_result.recall:.4f}\n"
        f"F1: {main_result.f1:.4f}\npages/second: {main_result.pages_per_second:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
