"""Score the pipeline's full-page HTML extraction.

Two kinds of page sets (neither is in this repository: they are third-party pages):

* snippet sets, default ``../shared/html_pages`` (``expected.json`` maps a page file to
  ``{"with": [...], "without": [...]}``)::

      python bench/html_extraction.py [--pages DIR] [--expected FILE.json] [--compare]

  A snippet counts as found when it occurs in the extracted text after collapsing whitespace.
  "with" found = TP, "with" missing = FN, "without" found = FP, "without" absent = TN
  (trafilatura's evaluation protocol); precision = TP/(TP+FP), recall = TP/(TP+FN).

* full ground-truth sets, e.g. ``../shared/html_dev/zyte`` (``ground-truth.json`` maps a page
  hash to ``{"articleBody": ...}``, pages in ``html/<hash>.html.gz``)::

      python bench/html_extraction.py --truth ../shared/html_dev/zyte [--compare] [--worst N]

  Token-level scoring as in the Web Content Extraction Benchmark: each text is a bag of
  lower-cased ``\\w+`` tokens; per page precision = shared tokens / extracted tokens, recall =
  shared tokens / true tokens, F1; reported as mean and median over pages. ``dup`` counts pages
  whose output repeats a block of 8+ words more often than the true text does (the symptom
  of a table walked twice).

``--compare`` also scores trafilatura alone (``include_comments=False``) and readability-lxml
alone (the pipeline's second opinion), and with ``--truth`` compares ours page by page with each
(pages won and lost by more than 0.05, lost by more than 0.2, ours < 0.5 where it is > 0.9).
Rates are printed per wall-clock second and per CPU-second (cpu=; the steady one on a shared machine);
``--all`` adds a bs4 ``get_text()`` and ``<p>``-joining baseline and further trafilatura settings.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(ROOT))

from pipeline.html import collapse, decode_html, extract_article  # noqa: E402

Extractor = Callable[[str], str]
DEFAULT_PAGES = ROOT.parent / "shared" / "html_pages"
_TOKEN = re.compile(r"\w+")


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
    cpu_seconds: float = 0.0

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
            f"f1={self.f1:.3f} pages/s={self.pages_per_second:.1f} cpu={_rate(self.pages, self.cpu_seconds)} "
            f"pages={self.pages} "
            f"tp={self.tp} fp={self.fp} fn={self.fn} tn={self.tn} errors={self.errors}"
        )


@dataclass
class TokenScore:
    """Per-page token precision/recall/F1 of one extractor on a ground-truth set."""

    name: str
    per_page: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    duplicated: list[str] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def mean(self, i: int) -> float:
        values = [v[i] for v in self.per_page.values()]
        return statistics.fmean(values) if values else 0.0

    @property
    def median_f1(self) -> float:
        values = [v[2] for v in self.per_page.values()]
        return statistics.median(values) if values else 0.0

    def below(self, threshold: float) -> int:
        return sum(1 for v in self.per_page.values() if v[2] < threshold)

    def line(self) -> str:
        pages = len(self.per_page)
        rate = pages / self.seconds if self.seconds else 0.0
        return (
            f"{self.name:<34} mean P={self.mean(0):.3f} R={self.mean(1):.3f} F1={self.mean(2):.3f} "
            f"median F1={self.median_f1:.3f} F1<0.5={self.below(0.5)} dup={len(self.duplicated)} "
            f"pages/s={rate:.1f} cpu={_rate(pages, self.cpu_seconds)} pages={pages} errors={self.errors}"
        )


def tokens(text: str) -> Counter[str]:
    return Counter(_TOKEN.findall(text.lower()))


def token_prf(predicted: str, truth: str) -> tuple[float, float, float]:
    """Bag-of-tokens precision, recall, F1 (both empty: a perfect score)."""
    pred, true = tokens(predicted), tokens(truth)
    if not pred and not true:
        return 1.0, 1.0, 1.0
    shared = sum((pred & true).values())
    p = shared / sum(pred.values()) if pred else 0.0
    r = shared / sum(true.values()) if true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def repeats_a_block(text: str, truth: str | None = None, min_words: int = 8) -> bool:
    """True when a line of ``min_words``+ words occurs twice in the output (more often than in
    the true text, when given: a page may repeat a line itself)."""
    seen: Counter[str] = Counter()
    true_text = collapse(truth) if truth is not None else None
    for line in text.splitlines():
        line = collapse(line)
        if len(line.split()) < min_words:
            continue
        seen[line] += 1
        if seen[line] > 1 and (true_text is None or seen[line] > true_text.count(line)):
            return True
    return False


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


def load_truth(truth_dir: Path) -> list[tuple[str, str, str]]:
    """[(page id, decoded html, true body)] from ``ground-truth.json`` and ``html/<id>.html(.gz)``."""
    truth = json.loads((truth_dir / "ground-truth.json").read_text(encoding="utf-8"))
    docs = []
    for key in sorted(truth):
        for name in (f"{key}.html.gz", f"{key}.html"):
            path = truth_dir / "html" / name
            if path.exists():
                break
        else:
            raise SystemExit(f"missing page: {truth_dir / 'html' / key}.html(.gz)")
        docs.append((key, decode_html(path.read_bytes()), truth[key].get("articleBody") or ""))
    return docs


def pipeline_text(html: str) -> str:
    """What the pipeline keeps of a page: its body and heading blocks (the title is stored apart)."""
    try:
        return "\n".join(text for _, text in extract_article(html).blocks)
    except Exception as exc:
        if type(exc).__name__ == "BadInput":  # "no article text": the pipeline keeps nothing
            return ""
        raise


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


def _rate(pages: int, seconds: float) -> str:
    """Pages per CPU-second: on a shared machine wall-clock rates follow the others' load."""
    return f"{pages / seconds:.1f}" if seconds else "-"


def _run(name: str, fn: Extractor, html: str, page: str) -> tuple[str, float, float, bool]:
    start, cpu = time.perf_counter(), time.process_time()
    try:
        text = fn(html) or ""
        ok = True
    except Exception as exc:  # noqa: BLE001 - a crash costs recall, reported in the counts
        print(f"  {name}: {page}: {type(exc).__name__}: {exc}", file=sys.stderr)
        text, ok = "", False
    return text, time.perf_counter() - start, time.process_time() - cpu, ok


def score(name: str, fn: Extractor, docs: list[tuple[str, str]], expected: dict) -> Score:
    s = Score(name)
    for page, html in docs:
        item = expected[page]
        raw, seconds, cpu, ok = _run(name, fn, html, page)
        text = collapse(raw)
        s.seconds += seconds
        s.cpu_seconds += cpu
        s.errors += not ok
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


def score_tokens(name: str, fn: Extractor, docs: list[tuple[str, str, str]]) -> TokenScore:
    s = TokenScore(name)
    for page, html, truth in docs:
        text, seconds, cpu, ok = _run(name, fn, html, page)
        s.seconds += seconds
        s.cpu_seconds += cpu
        s.errors += not ok
        s.per_page[page] = token_prf(text, truth)
        if repeats_a_block(text, truth):
            s.duplicated.append(page)
    return s


def per_page_comparison(ours: TokenScore, other: TokenScore, margin: float = 0.2) -> str:
    """Where ours and another extractor part ways, page by page: pages won and lost by more than
    0.05 F1, pages lost by more than ``margin`` (listed), and pages where ours is below 0.5
    while the other is above 0.9 (the regression the project guards against)."""
    pairs = [(page, f, other.per_page[page][2]) for page, (_, _, f) in ours.per_page.items() if page in other.per_page]
    won = sum(1 for _, f, g in pairs if f > g + 0.05)
    lost = sum(1 for _, f, g in pairs if f < g - 0.05)
    lost_big = sorted((f - g, page) for page, f, g in pairs if f < g - margin)
    collapsed = sum(1 for _, f, g in pairs if f < 0.5 and g > 0.9)
    listed = " ".join(f"{page[:16]}({diff:+.2f})" for diff, page in lost_big)
    return (
        f"  vs {other.name}: better on {won} pages, worse on {lost} (by >0.05); "
        f"worse by >{margin}: {len(lost_big)}{' ' + listed if listed else ''}; "
        f"ours <0.5 where it is >0.9: {collapsed}"
    )


def trafilatura_alone(html: str) -> str:
    import trafilatura

    return trafilatura.extract(html, include_comments=False) or ""


def readability_extractor() -> Extractor | None:
    try:
        from lxml import html as lxml_html
        from readability import Document
    except ImportError:
        return None

    def run(html: str) -> str:
        summary = Document(html).summary(html_partial=True)
        return "\n".join(collapse(t) for t in lxml_html.fromstring(summary).itertext() if t.strip())

    return run


def compare_extractors(everything: bool) -> dict[str, Extractor | None]:
    """Other extractors to print beside ours; ``None`` marks one that is not installed."""
    out: dict[str, Extractor | None] = {
        "trafilatura alone (no comments)": trafilatura_alone,
        "readability-lxml": readability_extractor(),
    }
    if everything:
        import trafilatura

        out["trafilatura defaults"] = lambda html: trafilatura.extract(html) or ""
        out["trafilatura favor_precision"] = lambda html: (
            trafilatura.extract(html, include_comments=False, favor_precision=True) or ""
        )
        out["bs4 naive get_text"] = naive_get_text
        out["bs4 <p>-joining"] = p_join
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=Path, default=DEFAULT_PAGES, help="directory of .html / .html.gz pages")
    parser.add_argument("--expected", type=Path, help="snippet file (default: PAGES/expected.json)")
    parser.add_argument("--truth", type=Path, help="a full ground-truth set: ground-truth.json + html/ (token scores)")
    parser.add_argument("--compare", action="store_true", help="also score trafilatura alone and readability-lxml")
    parser.add_argument("--all", action="store_true", help="with --compare: baselines and more trafilatura settings")
    parser.add_argument("--worst", type=int, default=0, help="with --truth: list the N lowest-F1 pages of ours")
    args = parser.parse_args(argv)

    candidates: dict[str, Extractor | None] = {"newsdedup extract_article": pipeline_text}
    if args.compare:
        candidates.update(compare_extractors(args.all))

    if args.truth:
        truth_docs = load_truth(args.truth)
        print(f"pages={len(truth_docs)} truth={args.truth}")
        results = []
        for name, fn in candidates.items():
            if fn is None:
                print(f"{name:<34} skipped (not installed)")
                continue
            result = score_tokens(name, fn, truth_docs)
            results.append(result)
            print(result.line(), flush=True)
        ours = results[0]
        if ours.duplicated:
            print("duplicated blocks:", " ".join(ours.duplicated))
        for other in results[1:]:
            print(per_page_comparison(ours, other))
        if args.worst:
            others = {r.name: r for r in results[1:]}
            for page, (p, r, f) in sorted(ours.per_page.items(), key=lambda kv: kv[1][2])[: args.worst]:
                rest = " ".join(f"{n.split()[0]}={o.per_page[page][2]:.2f}" for n, o in others.items())
                print(f"  {page[:16]} P={p:.2f} R={r:.2f} F1={f:.2f} {rest}")
        return 0

    expected_path = args.expected or args.pages / "expected.json"
    if not expected_path.exists():
        raise SystemExit(f"no snippet file {expected_path} (pass --pages/--expected, or --truth DIR)")
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    docs = load_pages(args.pages, expected)
    n_with = sum(len(v.get("with", [])) for v in expected.values())
    n_without = sum(len(v.get("without", [])) for v in expected.values())
    print(f"pages={len(docs)} with-snippets={n_with} without-snippets={n_without}")
    snippet_results = []
    for name, fn in candidates.items():
        if fn is None:
            print(f"{name:<34} skipped (not installed)")
            continue
        snippet_result = score(name, fn, docs, expected)
        snippet_results.append(snippet_result)
        print(snippet_result.line(), flush=True)
    main_result = snippet_results[0]
    print(
        f"precision: {main_result.precision:.4f}\nrecall: {main_result.recall:.4f}\n"
        f"F1: {main_result.f1:.4f}\npages/second: {main_result.pages_per_second:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
