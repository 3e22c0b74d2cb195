"""Tests for pipeline.html: full-page extraction, fragments, metadata, and the hand-written pages."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
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
from pipeline.read import BadInput, RawEntry, parse

ROOT = Path(__file__).resolve().parent.parent
# pages written for this project (see its README); no third-party pages in the repository
PAGES = Path(__file__).resolve().parent / "fixtures" / "html"
NO_TEXT = "page holds no article text (script-loaded or framed)"

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
    try:
        article = extract_article(markup)
    except BadInput as exc:  # the only exception: nothing of an article in it
        assert str(exc).startswith(NO_TEXT)
        return
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
    with pytest.raises(BadInput, match=re.escape(NO_TEXT)):
        extract_article("<html><body><div>no paragraphs here</div></body></html>")


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
<p>Posted <time datetime="2024-03-05">5 March</time>, updated <time datetime="2024-03-07">7 March</time></p>
<p>{BODY_1}</p><p>{BODY_2}</p></article></body></html>"""
    article = extract_article(page)
    # two different unmarked <time> values: which one is the publication date is not stated
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


# --------------------------------------------------------------------------- audit findings


def _page(body: str, head: str = "", html_open: str = '<html lang="en">') -> str:
    return f"<!DOCTYPE html>\n{html_open}<head>{head}</head><body>{body}</body></html>"


ARTICLE = f"<article><p>{BODY_1}</p><p>{BODY_2}</p><p>{BODY_3}</p><p>{BODY_4}</p></article>"


@pytest.mark.parametrize(
    "junk",
    [
        '<div class="related-posts"><a href="/x">Ten things you did not know about the harbour bridge</a></div>',
        '<div class="teaser-box"><p><a href="/x">Ten things you did not know about the harbour bridge</a></p></div>',
        '<div id="sidebar"><h3>Top stories</h3><p><a href="/x">Ten things you did not know about the '
        "harbour bridge</a></p></div>",
        '<section class="content-form-account-paywall"><h2>Pour lire la suite créez votre compte</h2>'
        "<p>Ten things you did not know about the harbour bridge</p></section>",
        '<div class="newsletter-signup"><p>Ten things you did not know about the harbour bridge</p></div>',
        '<div class="socialShare"><p>Ten things you did not know about the harbour bridge</p></div>',
        '<div class="author-bio-card"><p>Ten things you did not know about the harbour bridge</p></div>',
        "<div hidden><p>Ten things you did not know about the harbour bridge</p></div>",
        '<div aria-hidden="true"><p>Ten things you did not know about the harbour bridge</p></div>',
        '<div style="display: none"><p>Ten things you did not know about the harbour bridge</p></div>',
        '<div class="box"><h6>Mehr zum Thema</h6><p><a href="/a">Grundeinkommen</a> Ten things you did not know</p>'
        '<p><a href="/b">Finnland</a> about the harbour bridge</p></div>',
    ],
)
def test_boilerplate_boxes_removed_before_extraction(junk: str) -> None:
    page = _page(f"<main><article><p>{BODY_1}</p><p>{BODY_2}</p>{junk}<p>{BODY_3}</p><p>{BODY_4}</p></article></main>")
    text = texts(extract_article(page))
    assert BODY_1 in text and BODY_4 in text
    assert "harbour bridge" not in text and "Pour lire" not in text


def test_boilerplate_removal_keeps_article_container() -> None:
    # layout classes mentioning a sidebar/related/share wrap the whole article: never removed
    page = _page(
        '<div class="content-with-sidebar"><div class="share-wrapper">'
        f'<article class="post related-content">{ARTICLE}</article></div></div>',
        html_open='<html lang="en" class="has-sidebar">',
    )
    text = texts(extract_article(page))
    for body in (BODY_1, BODY_2, BODY_3, BODY_4):
        assert body in text


def test_hover_card_removed_but_name_kept_in_sentence() -> None:
    card = (
        '<span class="rollover-people"><a class="rollover-people-link" href="/p/kn">Kristi Noem</a>'
        '<span class="rollover-people-block"><span class="rollover-block"><a class="name" href="/p/kn">'
        'Kristi Lynn Noem</a><a href="/x">South Dakota drops pipeline protest laws after lawsuit</a>'
        "</span></span></span>"
    )
    page = _page(f"<article><p>South Dakota Gov. {card} (R) is defending the campaign.</p>{ARTICLE}</article>")
    text = texts(extract_article(page))
    assert "South Dakota Gov. Kristi Noem (R) is defending the campaign." in text
    assert "Kristi Lynn Noem" not in text and "pipeline protest" not in text


def test_explanatory_paragraph_under_related_heading_is_kept() -> None:
    box = (
        "<div><h2>Mehr zum Thema</h2><p>Einen Überblick über die neue Schnittstelle finden Sie im "
        "Hilfe-Center und weitere Informationen erhalten Sie auf den Seiten des Partners:</p>"
        '<ul><li><a href="/a">Hilfe-Center</a></li></ul></div>'
    )
    page = _page(f"<main><article><p>{BODY_1}</p><p>{BODY_2}</p>{box}</article></main>")
    assert "weitere Informationen erhalten" in texts(extract_article(page))


def test_remove_boilerplate_keeps_tail_text() -> None:
    tree = H.etree.fromstring(
        f"<html><body><article><p>{BODY_1}</p><p>Before <span hidden>secret</span>after.</p></article></body></html>",
        H.etree.HTMLParser(),
    )
    from lxml import html as lxml_html

    doc = lxml_html.fromstring(H.etree.tostring(tree, encoding="unicode"))
    assert H.remove_boilerplate(doc) == 1
    assert "Before after." in doc.text_content()


def test_published_time_element_fallbacks() -> None:
    classed = '<p><time class="post-date" datetime="2021-05-04T10:00:00+02:00">4 May</time></p>'
    assert page_metadata(_page(classed))["published"] == "2021-05-04T10:00:00+02:00"
    only = '<p><time datetime="2021-05-04">4 May</time> <time datetime="2021-05-04">today</time></p>'
    assert page_metadata(_page(only))["published"] == "2021-05-04"
    updated = '<p><time class="updated" datetime="2021-05-06">6 May</time><time datetime="2021-05-04">x</time></p>'
    assert "published" not in page_metadata(_page(updated))


def test_published_prefers_value_with_time_zone_and_ignores_placeholders() -> None:
    head = (
        '<meta name="date" content="2019-11-20 12:32">'
        '<meta name="sailthru.date" content="2019-11-20">'
        '<script type="application/ld+json">{"@type": "NewsArticle", '
        '"datePublished": "2019-11-20T12:32:13+08:00"}</script>'
    )
    assert page_metadata(_page("", head))["published"] == "2019-11-20T12:32:13+08:00"
    placeholder = '<meta property="article:published_time" content="0001-01-01T00:00:00Z">'
    assert "published" not in page_metadata(_page("", placeholder))
    both = placeholder + '<meta name="dc.date" content="2019-11-19">'
    assert page_metadata(_page("", both))["published"] == "2019-11-19"


def test_authors_skip_organizations_and_decode_entities() -> None:
    ld = (
        '<script type="application/ld+json">{"@type": "NewsArticle", "author": '
        '[{"@type": "NewsMediaOrganization", "name": "BBC News"}, {"@type": "Person", "name": "Jane Reporter"}]}'
        "</script>"
    )
    assert page_metadata(_page("", ld))["author"] == "Jane Reporter"
    org_only = (
        '<script type="application/ld+json">{"@type": "NewsArticle", '
        '"author": {"@type": "Organization", "name": "RT"}}</script>'
    )
    assert "author" not in page_metadata(_page("", org_only))
    entity = '<meta name="author" content="Redacci&amp;oacute;n Diario">'
    assert page_metadata(_page("", entity))["author"] == "Redacción Diario"


def test_rel_author_fallback_ignores_footer_many_names_and_themes() -> None:
    footer = '<footer><a rel="author" href="/team/a">Anna Editor</a></footer>'
    article = f'<article><p>By <a rel="author" href="/staff/jane">Jane Reporter</a></p><p>{BODY_1}</p></article>'
    assert page_metadata(_page(article + footer))["author"] == "Jane Reporter"
    assert "author" not in page_metadata(_page(f"<article><p>{BODY_1}</p></article>{footer}"))
    many = "".join(f'<a rel="author" href="/s/{i}">Writer {i}</a> ' for i in range(5))
    assert "author" not in page_metadata(_page(f"<article><p>{many}</p></article>"))
    theme = '<p>Theme: <a rel="author" href="https://themegrill.com/">ColorMag by ThemeGrill</a></p>'
    assert "author" not in page_metadata(_page(theme))
    vendor = '<p><a rel="author" href="https://themeisle.com/">Themeisle</a></p>'
    assert "author" not in page_metadata(_page(vendor))


def test_title_site_name_stripped() -> None:
    head = (
        '<meta property="og:site_name" content="Islamische Zeitung">'
        "<title>Bundespräsident warnt – Islamische Zeitung</title>"
    )
    assert page_metadata(_page("", head))["title"] == "Bundespräsident warnt"
    head = "<title>SimplyScience - Wie entsteht Erdöl?</title>"
    assert page_metadata(_page("", head), "https://www.simplyscience.ch/x.html")["title"] == "Wie entsteht Erdöl?"
    head = (
        "<title>GitHub - golemfactory/yapapi: Python API</title>"
        '<script type="application/ld+json">{"@type": "Article", '
        '"headline": "golemfactory/yapapi: Python API"}</script>'
    )
    assert page_metadata(_page("", head))["title"] == "golemfactory/yapapi: Python API"
    # a "Headline: subtitle" title is not cut when no part is the site name
    head = '<meta property="og:site_name" content="Riverside Daily"><title>Trams: the return</title>'
    assert page_metadata(_page("", head))["title"] == "Trams: the return"


def test_leading_title_block_dropped_ignoring_quotes_and_site_name() -> None:
    head = (
        '<meta property="og:site_name" content="Riverside Daily">'
        '<title>Don\'t stop the "tram" | Riverside Daily</title>'
    )
    for first in ("<h2>Don’t stop the „tram“</h2>", "<h2>Riverside Daily – Don't stop the tram</h2>"):
        page = _page(f"<article>{first}<p>{BODY_1}</p><p>{BODY_2}</p></article>", head)
        blocks = extract_article(page).blocks
        assert blocks[0] == ("body", BODY_1), blocks[:2]
    h1_body = f"<article><h1>Tram line opens</h1><p>{BODY_1}</p><p>{BODY_2}</p></article>"
    h1_page = _page(h1_body, "<title>Other</title>")
    assert extract_article(h1_page).blocks[0] == ("body", BODY_1)


def test_language_ignores_html_tag_in_conditional_comment() -> None:
    page = (
        '<!DOCTYPE html><!--[if IE 8]><html class="ie8" lang="en-us"><![endif]-->'
        '<!--[if !IE]><!--><html lang="de"><!--<![endif]--><head></head><body><p>x</p></body></html>'
    )
    assert page_metadata(page)["language"] == "de"


def test_short_table_cells_join_into_row_blocks() -> None:
    rows = "".join(
        f"<tr><td><p>{party}</p></td><td><p>{n}</p></td><td><p>{note}</p></td></tr>"
        for party, n, note in [("CDU/CSU", 1, "Antwort erhalten"), ("SPD", 0, "keine Antwort"), ("FDP", 0, "")]
    )
    page = _page(f"<article><p>{BODY_1}</p><table>{rows}</table><p>{BODY_2}</p></article>")
    blocks = extract_article(page).blocks
    assert ("body", "CDU/CSU 1 Antwort erhalten") in blocks
    assert ("body", "SPD 0 keine Antwort") in blocks
    assert ("body", "1") not in blocks and ("body", "SPD") not in blocks


def test_layout_table_cells_still_split() -> None:
    page = _page(f"<table><tr><td><p>{BODY_1}</p><p>{BODY_2}</p></td><td><p>{BODY_3}</p></td></tr></table>")
    blocks = extract_article(page).blocks
    assert ("body", BODY_1) in blocks and ("body", BODY_2) in blocks


def test_sentence_like_headings_become_body() -> None:
    long_q = " ".join(["word"] * 30) + " ?"
    page = _page(
        f"<article><p>{BODY_1}</p><h2>This heading ends with a period.</h2><p>{BODY_2}</p>"
        f"<h2>{long_q}</h2><p>{BODY_3}</p><h2>{SUBHEAD}</h2><p>{BODY_4}</p></article>"
    )
    blocks = extract_article(page).blocks
    assert ("body", "This heading ends with a period.") in blocks
    assert ("body", long_q) in blocks
    assert ("heading", SUBHEAD) in blocks


def test_fragment_bold_paragraph_is_heading() -> None:
    blocks = fragment_blocks(
        "<p><strong>What happens next</strong></p><p>Body text here.</p>"
        "<p><b>Not a heading because it is a sentence.</b></p>"
        "<p><strong>Bold</strong> start of a normal paragraph</p>"
    )
    assert blocks == [
        ("heading", "What happens next"),
        ("body", "Body text here."),
        ("body", "Not a heading because it is a sentence."),
        ("body", "Bold start of a normal paragraph"),
    ]


# --------------------------------------------------------------------------- hand-written pages


def _truth() -> dict[str, dict]:
    return json.loads((PAGES / "ground-truth.json").read_text(encoding="utf-8"))


def _written(name: str) -> str:
    return (PAGES / "html" / f"{name}.html").read_text(encoding="utf-8")


def test_written_pages_token_scores() -> None:
    bench = _load_bench()
    truth = _truth()
    docs = bench.load_truth(PAGES)
    assert len(docs) == len(truth) >= 8
    result = bench.score_tokens("pipeline", bench.pipeline_text, docs)
    assert result.errors == 0 and not result.duplicated, result.line()
    assert result.mean(2) >= 0.98, result.line()
    for page, (_, _, f1) in result.per_page.items():
        assert f1 >= 0.95, (page, result.per_page[page])
    for page, html, _ in docs:
        text = bench.pipeline_text(html)
        for junk in truth[page]["without"]:
            assert junk not in text, (page, junk)


def test_nested_tables_give_the_body_once() -> None:
    # the story table holds a fact-box table in one cell: its rows used to come out once per level
    blocks = [t for _, t in extract_article(_written("cms_nested_tables")).blocks]
    body = _truth()["cms_nested_tables"]["articleBody"].split("\n\n")
    for paragraph in body:
        assert blocks.count(paragraph) == 1, paragraph
    assert len(blocks) == len(body)


def test_table_layout_row_is_read_cell_by_cell() -> None:
    # trafilatura returns a bare layout <row>: its paragraphs stay separate blocks, the bars go
    blocks = extract_article(_written("cms_table_layout_tools")).blocks
    body = _truth()["cms_table_layout_tools"]["articleBody"].split("\n\n")
    assert [t for kind, t in blocks if kind == "body"] == body


@pytest.mark.parametrize(
    ("value", "furniture"),
    [
        ("related-posts", True),
        ("sidebar_left", True),
        ("socialShare", True),
        ("post-teaser teaserbox", True),
        ("author-bio-card", True),
        ("mehr-zum-thema", True),
        ("toc", True),
        ("breadcrumbs", True),
        ("site-tagline", True),
        ("most-viewed", True),
        ("shareholders-letter", False),
        ("promotion-results", False),
        ("relatedness", False),
        ("tocbot-content", False),
        ("col-md-8 article-body", False),
    ],
)
def test_boilerplate_marks_match_whole_words(value: str, furniture: bool) -> None:
    assert H._boilerplate_marks(value) is furniture


def test_heading_anchored_sections_are_content() -> None:
    # ids like "sharing-with-a-single-developer" are a heading's slug, not a share bar
    page = _written("devblog_sharing_sections")
    text = "\n".join(t for _, t in extract_article(page).blocks)
    for paragraph in _truth()["devblog_sharing_sections"]["articleBody"].split("\n\n"):
        assert paragraph in text
    assert "Share on Twitter" not in text and "Popular posts" not in text


def test_flagged_elements_never_take_most_of_the_text() -> None:
    # a site whose every story section carries a "share" class: the pattern is wrong for this page
    sections = "".join(
        f'<div class="share-section"><p>{body}</p></div>' for body in (BODY_1, BODY_2, BODY_3, BODY_4)
    )
    text = texts(extract_article(_page(f"<div class='story'>{sections}</div>")))
    kept = sum(len(b) for b in (BODY_1, BODY_2, BODY_3, BODY_4) if b in text)
    assert kept * 2 >= len(BODY_1 + BODY_2 + BODY_3 + BODY_4)


@pytest.mark.parametrize("name", ["regional_news_navbars", "cms_table_layout_tools"])
def test_navigation_bars_removed(name: str) -> None:
    text = texts(extract_article(_written(name)))
    for junk in ("NATIONAL > General", "NEWS > Education", "View all news", "Send to a friend", "Print"):
        assert junk not in text
    for junk in ("Most Viewed Articles", "New cycle lane", "Parking charges", "News you can trust"):
        assert junk not in text


def test_link_bar_rule_keeps_data_cells_and_sentences() -> None:
    rows = (
        '<tr><td><a href="/t/1">Riverside</a> - <a href="/t/2">Harbour</a></td><td>2:1</td></tr>'
        '<tr><td><a href="/t/3">Valley</a> - <a href="/t/4">Mill Town</a></td><td>0:0</td></tr>'
    )
    sentence = '<p>Read the <a href="/r">council report</a> and the <a href="/m">minutes</a> online.</p>'
    page = _page(f"<article><p>{BODY_1}</p><table>{rows}</table>{sentence}<p>{BODY_2}</p></article>")
    text = texts(extract_article(page))
    assert "Riverside - Harbour" in text and "Mill Town" in text
    assert "Read the council report and the minutes online." in text


@pytest.mark.parametrize(
    ("name", "hint"),
    [("script_loaded_app", "loaded by script"), ("framed_page", "frames other pages (/top.html")],
)
def test_page_without_article_text_says_why(name: str, hint: str, tmp_path: Path) -> None:
    page = _written(name)
    with pytest.raises(BadInput, match=r"^page holds no article text \(script-loaded or framed\)") as exc:
        extract_article(page)
    assert hint in str(exc.value)
    # the reason a user sees when the file is read (quarantined with it, not "no body text left")
    path = tmp_path / f"{name}.html"
    path.write_text(page, encoding="utf-8")
    with pytest.raises(BadInput, match="script-loaded or framed"):
        parse(RawEntry(path.name, path, path.stat().st_size), path.read_bytes())


def test_noscript_notice_is_not_body_text() -> None:
    page = _page(f"<noscript><p>Please enable JavaScript to view the comments.</p></noscript>{ARTICLE}")
    text = texts(extract_article(page))
    assert BODY_1 in text and "enable JavaScript" not in text


def test_teaser_grid_and_bare_url_lines_removed() -> None:
    cards = "".join(
        f'<li><a href="/n/{i}"><img src="/i/{i}.jpg"></a><div><h3><a href="/n/{i}">{title}</a></h3>'
        f"<h4>{sub}</h4></div></li>"
        for i, (title, sub) in enumerate(
            [
                ("Harbour ferry gets new timetable", "Boats every forty minutes"),
                ("Mill Street depot to reopen", "A workshop for local groups"),
                ("Valley line closed for repairs", "Buses replace trains in May"),
            ]
        )
    )
    page = _page(
        f"<article><p>{BODY_1}</p><p>{BODY_2}</p><p>https://news.example.com/2024/tram-line-expansion</p>"
        f'<p>{BODY_3}</p><ul class="latest">{cards}</ul><p>{BODY_4}</p></article>'
    )
    text = texts(extract_article(page))
    assert BODY_1 in text and BODY_4 in text
    assert "Mill Street depot" not in text and "Buses replace trains" not in text
    assert "news.example.com" not in text


def test_listicle_with_linked_headings_is_kept() -> None:
    # an article's own linked sub-headings with real paragraphs under them are not a teaser grid
    items = "".join(
        f'<div class="item"><h2><a href="/p/{i}">Tool {i}</a></h2><p>{body}</p></div>'
        for i, body in enumerate((BODY_1, BODY_2, BODY_3))
    )
    text = texts(extract_article(_page(f"<article>{items}<p>{BODY_4}</p></article>")))
    assert BODY_1 in text and BODY_2 in text and BODY_3 in text


# --------------------------------------------------------------------------- second opinion (readability-lxml)

STORY = [
    ("body", BODY_1),
    ("body", BODY_2),
    ("body", BODY_3),
    ("body", BODY_4),
]


def test_text_past_the_article_end_is_dropped_where_readability_stops() -> None:
    # trafilatura runs on into the reprints notice after the story; readability-lxml ends with the story
    page = _written("business_daily_reprints_tail")
    text = texts(extract_article(page))
    assert "Residents of the harbour district remain wary" in text
    assert "non-commercial use only" not in text and "All Rights Reserved" not in text


def test_second_opinion_trims_only_the_unconfirmed_tail() -> None:
    tail = [("body", "Order Reprints"), ("body", "Subscribe to our morning newsletter for the day's top five stories.")]
    inner = ("body", "Senate resolves to observe a minute of silence (@senate_press) October 9")
    ours = [STORY[0], inner, *STORY[1:], *tail]
    # readability holds the story but neither the embedded post inside it nor the tail
    combined = H.combine_opinions(ours, STORY)
    assert combined == [STORY[0], inner, *STORY[1:]]


def test_second_opinion_replaces_a_partial_article() -> None:
    # ours holds only the first paragraph of a long article that readability holds whole
    second = [("heading", "Background"), *STORY, ("body", BODY_1.replace("city council", "regional board"))]
    assert H.combine_opinions([STORY[0]], second) == second


@pytest.mark.parametrize(
    "second",
    [
        [],  # readability found nothing
        [("body", BODY_1)],  # readability picked one paragraph of ours: ours stays whole
        # readability adds only short lines (captions, credits, teaser titles): not a partial article
        [*STORY, ("body", "Photo: Harbour authority"), ("body", "Tram line extension approved")],
    ],
)
def test_second_opinion_keeps_ours_otherwise(second: list[tuple[str, str]]) -> None:
    assert H.combine_opinions(STORY, second) == STORY


def test_a_block_re_rendering_earlier_blocks_is_dropped() -> None:
    summary = ("body", f"{BODY_1} {BODY_2}")
    repeated_step = ("body", BODY_3)  # one block repeated on purpose (a recipe step, a question) stays
    blocks = [*STORY, summary, repeated_step]
    assert H.drop_repeated_blocks(blocks) == [*STORY, repeated_step]


def test_double_br_separates_paragraphs_of_a_full_page() -> None:
    # trafilatura gives <br><br> and <br> alike as one line break: the paragraphs used to merge
    blocks = [t for kind, t in extract_article(_written("lokal_de_br_paragraphs")).blocks if kind == "body"]
    paragraphs = _truth()["lokal_de_br_paragraphs"]["articleBody"].split("\n\n")
    assert all(p in blocks for p in paragraphs), blocks
    # a single <br> inside a paragraph is a line break, not a new paragraph
    page = _page(f"<article><p>{BODY_1}<br>{BODY_2}</p><p>{BODY_3}<br> <br>{BODY_4}</p></article>")
    assert [t for _, t in extract_article(page).blocks] == [f"{BODY_1} {BODY_2}", BODY_3, BODY_4]


def test_menu_lines_before_the_story_are_dropped_where_readability_starts_later() -> None:
    # trafilatura takes the whole layout table, section menu column first; readability starts at the story
    blocks = [t for _, t in extract_article(_written("county_paper_table_layout")).blocks]
    assert not {"Sections", "Local", "Region", "Business", "Obituaries"} & set(blocks)
    assert blocks[1].startswith("Workers at the Riverside paper mill voted")
    assert blocks[-1] == "Production is to restart on the Monday morning shift, the company said."


def test_second_opinion_keeps_a_long_standfirst_before_the_story() -> None:
    standfirst = ("heading", "Twice she came away empty-handed this winter, but on the last day of racing she won")
    ours = [("body", "Local"), ("body", "Region"), standfirst, *STORY]
    assert H.combine_opinions(ours, STORY) == [standfirst, *STORY]


def test_where_the_extractors_share_nothing_the_text_under_the_headline_wins() -> None:
    # trafilatura alone takes the readers' responses (<p>) over the story (<div>s): readability
    # starts under the headline, trafilatura after the story
    text = texts(extract_article(_written("blog_div_story_responses")))
    assert text.startswith("Protected cycle lanes will be built") and "The scheme will cost" in text
    assert "lorries come far too close" not in text and "Reply" not in text


def test_where_the_extractors_share_nothing_ours_stays_unless_the_other_starts_first() -> None:
    other = [("body", "Sixty spaces behind the market hall will not replace what is being lost this summer.")]
    page = lxml_page(f"<h1>Tram line extension approved</h1><div>{BODY_1}</div><p>{other[0][1]}</p>")
    assert H.combine_opinions(STORY[:1], other, page) == STORY[:1]  # ours starts under the headline
    page = lxml_page(f"<h1>Tram line extension approved</h1><p>{other[0][1]}</p><div>{BODY_1}</div>")
    assert H.combine_opinions(STORY[:1], other, page) == other
    assert H.combine_opinions(STORY[:1], other, None) == STORY[:1]  # no page, no positions


def lxml_page(body: str) -> object:
    from lxml import html as lxml_html

    head = "<head><title>Tram line extension approved</title></head>"
    return lxml_html.fromstring(f"<html>{head}<body>{body}</body></html>")
