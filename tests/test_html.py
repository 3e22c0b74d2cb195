"""Tests for pipeline.html: full-page extraction, fragments, metadata, and the fixture benchmark."""

from __future__ import annotations

import gzip
import importlib.util
import json
import socket
import sys
from pathlib import Path

import pytest

from pipeline import html as H
from pipeline.html import (
    HtmlArticle,
    decode_html,
    extract_article,
    fragment_blocks,
    looks_like_full_page,
    page_metadata,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "html_pages"

# Measured F1 on the committed fixture set (70 pages, trafilatura 2.3.1): 0.954. The floor is the
# issue's bar (0.92), leaving a margin for library-version noise on this small set.
FIXTURE_F1_FLOOR = 0.92

BODY_1 = (
    "The city council voted on Tuesday evening to expand the riverside tram line by four stops, "
    "ending a dispute that had delayed the project for almost three years and cost the city an "
    "estimated two million euros in planning fees."
)
BODY_2 = (
    "Construction is expected to begin next spring. The transport department said the new stops "
    "would serve roughly twelve thousand residents who currently rely on a single bus route that "
    "is frequently overcrowded during the morning rush."
)
SUBHEAD = "What happens to the old depot"
BODY_3 = (
    "The former tram depot on Mill Street will be converted into a community workshop, according "
    "to the plan approved by the council. Local associations will be able to rent the space at a "
    "reduced rate for the first five years of operation."
)
BODY_4 = (
    "Opposition members criticised the timetable but said they would not challenge the decision "
    "in court. A final review of the budget is scheduled for the council meeting in November."
)

NAV = "Home Politics Business Sport Culture Weather"
COOKIE = "We use cookies to improve your experience. Accept all cookies"
RELATED = "Ten things you did not know about the old harbour bridge"
COMMENT = "Great article, I have been waiting for this tram for ages!"
FOOTER = "Copyright 2024 Riverside Daily Media Group. All rights reserved."
TITLE = "Council approves tram line expansion"


def news_page(head: str = "", byline_in_body: bool = False) -> str:
    byline = "<p>By Jane Reporter</p>" if byline_in_body else ""
    return f"""<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<title>{TITLE} | Riverside Daily</title>
{head}
</head>
<body>
<div id="cookie-banner" class="cookie-consent"><p>{COOKIE}</p><button>OK</button></div>
<header class="site-header"><nav class="main-nav"><ul>
<li><a href="/">Home</a></li><li><a href="/politics">Politics</a></li><li><a href="/business">Business</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/culture">Culture</a></li><li><a href="/weather">Weather</a></li>
</ul></nav></header>
<main>
<article class="post">
<h1>{TITLE}</h1>
{byline}
<p>{BODY_1}</p>
<div class="ad-slot advertisement"><a href="https://ads.example.com">Buy cheap flights now</a></div>
<p>{BODY_2}</p>
<h2>{SUBHEAD}</h2>
<p>{BODY_3}</p>
<p>{BODY_4}</p>
</article>
<aside class="related-articles"><h3>Related</h3><ul>
<li><a href="/a">{RELATED}</a></li><li><a href="/b">Weekend weather: sun returns to the valley</a></li>
</ul></aside>
<section id="comments" class="comments"><h3>3 comments</h3>
<div class="comment"><p class="comment-author">tramfan</p><p>{COMMENT}</p></div>
</section>
</main>
<footer class="site-footer"><p>{FOOTER}</p><a href="/imprint">Imprint</a></footer>
</body></html>"""


def texts(article: HtmlArticle) -> str:
    return "\n".join(t for _, t in article.blocks)


# --------------------------------------------------------------------------- full pages


def test_body_kept_and_boilerplate_removed() -> None:
    article = extract_article(news_page())
    text = texts(article)
    for body in (BODY_1, BODY_2, BODY_3, BODY_4):
        assert body in text
    for junk in (NAV, "Politics", COOKIE, RELATED, COMMENT, FOOTER, "Buy cheap flights now"):
        assert junk not in text
    assert all(kind in ("body", "heading") for kind, _ in article.blocks)
    assert all(t == " ".join(t.split()) and t for _, t in article.blocks)


def test_subheadings_are_heading_blocks_in_order() -> None:
    blocks = extract_article(news_page()).blocks
    assert ("heading", SUBHEAD) in blocks
    order = [t for _, t in blocks]
    assert order.index(BODY_2) < order.index(SUBHEAD) < order.index(BODY_3)
    assert ("body", BODY_1) in blocks


def test_repeated_title_is_not_a_block() -> None:
    blocks = extract_article(news_page()).blocks
    assert TITLE not in [t for _, t in blocks]
    assert blocks[0] == ("body", BODY_1)


def test_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    article = extract_article(news_page(), url="https://news.example.com/tram")
    assert BODY_1 in texts(article)


@pytest.mark.parametrize(
    "markup",
    [
        "",
        "   ",
        "<html><body><p>unclosed paragraph <b>bold <i>italic",
        news_page()[: len(news_page()) // 2],
        news_page()[:300],
        "<<<>>>&&&;;<html<<body>>>",
        "\x00\x01\x02 binary \xff\xfe junk",
        "<html>" + "<div>" * 3000 + "deep" + "</div>" * 10 + "</html>",
        '<html><head><script type="application/ld+json">{"@type": "NewsArticle", "author": </script></head></html>',
        '<html><head><meta property="og:title"><meta name="author" content=""></head><body></body></html>',
    ],
)
def test_malformed_or_truncated_html_does_not_crash(markup: str) -> None:
    article = extract_article(markup)
    assert isinstance(article, HtmlArticle)
    assert isinstance(article.blocks, list)
    assert isinstance(article.meta, dict)


def test_truncated_page_keeps_what_is_there() -> None:
    page = news_page()
    cut = page[: page.index(BODY_3) + 40]
    article = extract_article(cut)
    assert BODY_1 in texts(article)


def test_fallback_to_paragraphs_when_extractor_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(H.trafilatura, "extract", lambda *a, **k: None)
    article = extract_article(news_page())
    text = texts(article)
    assert BODY_1 in text and BODY_4 in text
    assert ("heading", SUBHEAD) in article.blocks
    assert NAV not in text and FOOTER not in text


def test_extractor_crash_gives_empty_or_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(H.trafilatura, "extract", boom)
    article = extract_article("<html><body><div>no paragraphs here</div></body></html>")
    assert article.blocks == []


# --------------------------------------------------------------------------- metadata


def test_metadata_from_meta_tags() -> None:
    head = """
<meta property="og:title" content="Council approves tram line expansion">
<meta name="author" content="Jane Reporter">
<meta property="article:published_time" content="2024-03-05T18:30:00+01:00">
<meta property="og:site_name" content="Riverside Daily">
<meta property="article:section" content="Local politics">
<meta name="description" content="Four new stops for the riverside line.">
<link rel="canonical" href="/2024/03/tram-expansion">
"""
    meta = extract_article(news_page(head), url="https://riverside.example/x?utm=1").meta
    assert meta == {
        "title": "Council approves tram line expansion",
        "author": "Jane Reporter",
        "published": "2024-03-05T18:30:00+01:00",
        "outlet": "Riverside Daily",
        "section": "Local politics",
        "url": "https://riverside.example/2024/03/tram-expansion",
        "language": "en-GB",
        "description": "Four new stops for the riverside line.",
    }


def test_metadata_from_json_ld() -> None:
    ld = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebSite", "name": "Riverside Daily Website", "url": "https://riverside.example/"},
            {
                "@type": "NewsArticle",
                "headline": "Tram line to grow by four stops",
                "author": [{"@type": "Person", "name": "Jane Reporter"}, {"@type": "Person", "name": "Max Muster"}],
                "datePublished": "2024-03-05",
                "publisher": {"@type": "Organization", "name": "Riverside Media"},
                "articleSection": ["Local", "Transport"],
                "inLanguage": "en",
                "url": "https://riverside.example/tram",
                "description": "The council voted for the expansion.",
            },
        ],
    }
    page = f"""<html><head><script type="application/ld+json">{json.dumps(ld)}</script></head>
<body><article><p>{BODY_1}</p><p>{BODY_2}</p></article></body></html>"""
    meta = page_metadata(page)
    assert meta == {
        "title": "Tram line to grow by four stops",
        "author": "Jane Reporter, Max Muster",
        "published": "2024-03-05",
        "outlet": "Riverside Media",
        "section": "Local",
        "url": "https://riverside.example/tram",
        "language": "en",
        "description": "The council voted for the expansion.",
    }


def test_author_from_rel_author_and_time_pubdate() -> None:
    page = f"""<html><body><article>
<p>Written by <a rel="author" href="/staff/jane">Jane Reporter</a>,
<time class="entry-date published" datetime="2023-11-02T08:00:00Z">2 November</time></p>
<p>{BODY_1}</p></article></body></html>"""
    meta = page_metadata(page)
    assert meta["author"] == "Jane Reporter"
    assert meta["published"] == "2023-11-02T08:00:00Z"


def test_nothing_invented_when_absent() -> None:
    page = f"""<html><body><article>
<p>By Jane Reporter, Riverside Daily, 5 March 2024</p>
<p>Posted <time datetime="2024-03-05">5 March</time></p>
<p>{BODY_1}</p><p>{BODY_2}</p></article></body></html>"""
    article = extract_article(page)
    assert article.meta == {}
    assert BODY_1 in texts(article)


def test_url_like_author_and_site_are_ignored() -> None:
    head = """<meta property="article:author" content="https://www.facebook.com/janereporter">"""
    meta = page_metadata(f"<html><head>{head}</head><body></body></html>")
    assert "author" not in meta


def test_title_only_from_title_tag() -> None:
    meta = page_metadata("<html><head><title> A  plain\n title </title></head><body><p>x</p></body></html>")
    assert meta == {"title": "A plain title"}


# --------------------------------------------------------------------------- fragments


def test_fragment_paragraphs_and_headings() -> None:
    frag = """<h2>Background</h2><p>First paragraph with <b>bold</b>
text.</p><p>Second paragraph.</p><script>var x = 1;</script><style>p {color: red}</style>
<ul><li>Item one</li><li>Item two</li></ul><blockquote>A quote.</blockquote><div>A div.</div>"""
    assert fragment_blocks(frag) == [
        ("heading", "Background"),
        ("body", "First paragraph with bold text."),
        ("body", "Second paragraph."),
        ("body", "Item one"),
        ("body", "Item two"),
        ("body", "A quote."),
        ("body", "A div."),
    ]


def test_fragment_double_br_splits_single_br_joins() -> None:
    frag = "Line one<br>continues here<br><br>Second paragraph<br/>\n<br/>Third"
    assert fragment_blocks(frag) == [
        ("body", "Line one continues here"),
        ("body", "Second paragraph"),
        ("body", "Third"),
    ]


def test_fragment_plain_text_and_entities() -> None:
    assert fragment_blocks("Just some text &amp; more") == [("body", "Just some text & more")]
    assert fragment_blocks("") == []
    assert fragment_blocks("<script>alert(1)</script>") == []


def test_fragment_nested_divs_keep_structure() -> None:
    frag = "<div><div><p>One</p>loose text<p>Two</p></div></div><!-- comment -->"
    assert fragment_blocks(frag) == [("body", "One"), ("body", "loose text"), ("body", "Two")]


def test_looks_like_full_page() -> None:
    assert looks_like_full_page(news_page())
    assert looks_like_full_page("<html><p>x</p></html>")
    assert looks_like_full_page("<body><p>x</p></body>")
    assert looks_like_full_page("<nav>a</nav><header>b</header><footer>c</footer><p>x</p>")
    assert not looks_like_full_page("<p>One</p><p>Two</p>")
    assert not looks_like_full_page("plain text, no markup")
    assert not looks_like_full_page("<div><h2>Sub</h2><p>text</p></div>")


def test_decode_html_gzip_and_legacy_charset() -> None:
    latin = '<html><head><meta charset="iso-8859-1"></head><body><p>Gr\xfc\xdfe</p></body></html>'.encode("latin-1")
    assert "Grüße" in decode_html(latin)
    assert "Grüße" in decode_html(gzip.compress(latin))
    assert decode_html("<p>é</p>".encode()) == "<p>é</p>"


# --------------------------------------------------------------------------- benchmark


def _load_bench():
    spec = importlib.util.spec_from_file_location("html_extraction_bench", ROOT / "bench" / "html_extraction.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


def test_fixture_set_f1_above_floor() -> None:
    bench = _load_bench()
    expected = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
    assert len(expected) >= 50
    docs = bench.load_pages(FIXTURES, expected)
    result = bench.score("pipeline", bench.pipeline_text, docs, expected)
    baseline = bench.score("p-join", bench.p_join, docs, expected)
    assert result.errors == 0
    assert result.f1 >= FIXTURE_F1_FLOOR, result.line()
    assert result.f1 > baseline.f1 + 0.05, (result.line(), baseline.line())
