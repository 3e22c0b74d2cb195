"""HTML handling: main-content extraction from full pages, fragments, page metadata.

Full web pages go through trafilatura (measured against bs4 heuristics, readability-lxml,
jusText, resiliparse and boilerpy3 with ``bench/html_extraction.py``; see that file).
beautifulsoup4 is used for HTML fragments inside text/JSON fields and for the page's
``<meta>``/``<link>``/``<title>``/JSON-LD metadata.

Nothing here touches the network: trafilatura only gets the markup we pass in.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import trafilatura
from bs4 import BeautifulSoup, SoupStrainer
from bs4.element import NavigableString, Tag
from lxml import etree

logger = logging.getLogger(__name__)

BlockList = list[tuple[str, str]]

_WS = re.compile(r"\s+")

# Main-content extraction settings (chosen with bench/html_extraction.py --compare).
_TRAFILATURA_OPTS: dict[str, Any] = {
    "output_format": "xml",
    "include_comments": False,
    "include_tables": True,
    "include_images": False,
    "include_formatting": False,
    "include_links": False,
    "with_metadata": False,  # metadata comes from markup only (see page_metadata)
    "deduplicate": False,
    "fast": False,
}


@dataclass
class HtmlArticle:
    # ordered (kind, text); kind is "body" or "heading"; text whitespace collapsed
    blocks: list[tuple[str, str]]
    # only keys actually stated by the page (see page_metadata)
    meta: dict[str, str] = field(default_factory=dict)


def collapse(text: str) -> str:
    """Collapse runs of whitespace (incl. NBSP) to one space and strip."""
    return _WS.sub(" ", text.replace("\xa0", " ")).strip()


def decode_html(data: bytes) -> str:
    """Bytes of a page (optionally gzip-compressed) -> str: UTF-8, else the declared/detected charset."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", data[:4096], re.IGNORECASE)
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is not None:
            return str(best)
    except Exception:  # pragma: no cover - defensive
        logger.warning("charset detection failed", exc_info=True)
    return data.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- full pages


def looks_like_full_page(html: str) -> bool:
    """True for a whole document (<html>/<body>/<head> present, or many nav/header/footer elements)."""
    head = html[:5000].lower()
    if re.search(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", head):
        return True
    if re.search(r"<body[\s>]|</body>|</html>", html.lower()):
        return True
    chrome = re.findall(r"<(?:nav|header|footer|aside)[\s>]", html, re.IGNORECASE)
    return len(chrome) >= 3


def extract_article(html: str, url: str | None = None) -> HtmlArticle:
    """Full web page -> main article body blocks (paragraphs + sub-headings, no nav/ads/comments/
    related/cookie text) and page metadata from <meta>/<link>/<title>/JSON-LD.

    Never raises on bad markup: a page that cannot be parsed gives empty blocks (and whatever
    metadata could be read)."""
    if not isinstance(html, str) or not html.strip():
        return HtmlArticle(blocks=[], meta={})
    try:
        meta = page_metadata(html, url)
    except Exception:  # malformed markup must not stop the pipeline
        logger.warning("metadata extraction failed", exc_info=True)
        meta = {}
    blocks = _main_content_blocks(html, url)
    if not any(kind == "body" for kind, _ in blocks):
        fallback = _paragraph_fallback(html)
        if fallback:
            blocks = fallback
    blocks = _drop_leading_title(blocks, meta.get("title"))
    return HtmlArticle(blocks=blocks, meta=meta)


def _main_content_blocks(html: str, url: str | None) -> BlockList:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xml = trafilatura.extract(html, url=url, **_TRAFILATURA_OPTS)
        if not xml:
            return []
        root = etree.fromstring(xml.encode("utf-8"), parser=etree.XMLParser(recover=True, huge_tree=True))
    except Exception:
        logger.warning("main-content extraction failed", exc_info=True)
        return []
    if root is None:
        return []
    main = root.find("main")
    if main is None:
        return []
    blocks: BlockList = []
    _xml_blocks(main, blocks)
    return blocks


def _xml_text(el: Any) -> str:
    return collapse(" ".join(t for t in el.itertext()))


def _xml_blocks(parent: Any, out: BlockList) -> None:
    """Walk trafilatura's XML (<head>, <p>, <list>/<item>, <quote>, <table>/<row>/<cell>, ...)."""
    if parent.text and parent.text.strip() and parent.tag not in ("main",):
        out.append(("body", collapse(parent.text)))
    for child in parent:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag == "head":
            text = _xml_text(child)
            if text:
                out.append(("heading", text))
        elif tag in ("list", "quote", "div") and any(
            isinstance(c.tag, str) and c.tag in _XML_BLOCK_TAGS for c in child
        ):
            _xml_blocks(child, out)
        elif tag == "table":
            _xml_table(child, out)
        elif tag == "graphic":
            pass
        elif tag:
            text = _xml_text(child)
            if text:
                out.append(("body", text))
        if child.tail and child.tail.strip():
            out.append(("body", collapse(child.tail)))


def _xml_table(table: Any, out: BlockList) -> None:
    """A data table row becomes one block; a layout table (cells holding paragraphs or
    headings) is walked cell by cell so its paragraphs and headings stay separate."""
    for row in table.iter("row"):
        cells: list[str] = []
        for cell in row:
            if any(isinstance(c.tag, str) and c.tag in _XML_BLOCK_TAGS for c in cell):
                if cells:
                    out.append(("body", collapse(" ".join(cells))))
                    cells = []
                _xml_blocks(cell, out)
            else:
                text = _xml_text(cell)
                if text:
                    cells.append(text)
        if cells:
            out.append(("body", collapse(" ".join(cells))))


_XML_BLOCK_TAGS = {"p", "head", "list", "item", "quote", "table", "code", "div"}


def _paragraph_fallback(html: str) -> BlockList:
    """<p>/<h2>-<h6> text outside obvious page chrome, for pages where trafilatura finds nothing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            soup = BeautifulSoup(html, "lxml")
    except Exception:
        logger.warning("fallback parsing failed", exc_info=True)
        return []
    for tag in soup(["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form"]):
        tag.decompose()
    blocks: BlockList = []
    for el in soup.find_all(["p", "h2", "h3", "h4", "h5", "h6"]):
        if el.find_parent(["p"]) is not None:
            continue
        text = collapse(el.get_text(" "))
        if not text:
            continue
        blocks.append(("heading" if el.name != "p" else "body", text))
    return blocks


def _drop_leading_title(blocks: BlockList, title: str | None) -> BlockList:
    """Drop the first block when it repeats the page title (stored separately by the caller)."""
    if len(blocks) < 2 or not title:
        return blocks
    kind, first = blocks[0]
    first = first.casefold()
    if kind != "heading" and len(first) > 300:
        return blocks
    title = collapse(title)
    candidates = {title.casefold()}
    # "<title>Headline | Outlet</title>": any part of at least 10 characters
    parts = re.split(r"\s+(?:[|\-–—»·:]|::)\s+", title)
    candidates.update(p.casefold() for p in parts if len(p) >= 10)
    if first in candidates:
        return blocks[1:]
    return blocks


# --------------------------------------------------------------------------- fragments

_FRAGMENT_BLOCK = {
    "p",
    "div",
    "li",
    "blockquote",
    "dd",
    "dt",
    "figcaption",
    "pre",
    "td",
    "th",
    "section",
    "article",
    "address",
    "caption",
}
_FRAGMENT_HEADING = {"h1", "h2", "h3", "h4", "h5", "h6"}
_FRAGMENT_DROP = ["script", "style", "noscript", "template", "iframe", "svg", "head", "button", "select", "object"]


def fragment_blocks(html: str) -> BlockList:
    """An HTML fragment -> blocks, keeping paragraph structure: <p>, <div>, <li>, <blockquote>
    become body blocks, <h1>-<h6> heading blocks, <br><br> splits paragraphs; scripts/styles
    dropped. Uses beautifulsoup4."""
    if not isinstance(html, str) or not html.strip():
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            soup = BeautifulSoup(html, "lxml")
    except Exception:
        logger.warning("fragment parsing failed", exc_info=True)
        return [("body", t) for t in _split_plain(html)]
    for tag in soup(_FRAGMENT_DROP):
        tag.decompose()
    root = soup.body or soup
    blocks: BlockList = []
    buf: list[str] = []

    def flush(kind: str = "body") -> None:
        text = collapse("".join(buf))
        buf.clear()
        if not text:
            return
        for part in text.split("\x00"):
            part = collapse(part)
            if part:
                blocks.append((kind, part))

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # skip comments, CDATA, doctype
                    buf.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name == "br":
                # two consecutive <br> (ignoring whitespace) split paragraphs
                prev = child.previous_sibling
                while isinstance(prev, NavigableString) and not prev.strip():
                    prev = prev.previous_sibling
                if isinstance(prev, Tag) and prev.name == "br":
                    buf.append("\x00")
                else:
                    buf.append(" ")
            elif name in _FRAGMENT_HEADING:
                flush()
                buf.append(child.get_text(" "))
                flush("heading")
            elif name in _FRAGMENT_BLOCK or name in (
                "ul",
                "ol",
                "dl",
                "table",
                "tr",
                "tbody",
                "thead",
                "hr",
                "body",
                "html",
            ):
                flush()
                walk(child)
                flush()
            else:
                walk(child)

    walk(root)
    flush()
    return blocks


def _split_plain(text: str) -> list[str]:
    return [collapse(p) for p in re.split(r"\n\s*\n", text) if collapse(p)]


# --------------------------------------------------------------------------- metadata

_META_TAGS = SoupStrainer(["meta", "link", "title", "script", "time", "a"])
# Pieces of markup that can carry metadata; only these are handed to beautifulsoup4, which is
# several times faster than letting it tokenize the whole page.
_ATTRS = r"""(?:[^>"']|"[^"]*"|'[^']*')*"""
_META_MARKUP = re.compile(
    rf"<meta\b{_ATTRS}>"
    rf"|<link\b{_ATTRS}>"
    r"|<title\b[^>]*>.{0,2000}?</title\s*>"
    r"|<script\b[^>]*ld\+json[^>]*>.*?</script\s*>"
    rf"|<time\b{_ATTRS}>"
    r"|<a\b(?=[^>]*\brel\s*=\s*[\"']?[^\"'>]*author)"
    rf"{_ATTRS}>.{{0,500}}?</a\s*>",
    re.IGNORECASE | re.DOTALL,
)
_HTML_OPEN = re.compile(r"<html\b[^>]*>", re.IGNORECASE)

_ARTICLE_TYPES = re.compile(r"(Article|BlogPosting|Posting|Report|NewsArticle)$")


def _meta_values(metas: list[Tag]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for m in metas:
        key = m.get("property") or m.get("name") or m.get("itemprop") or m.get("http-equiv")
        content = m.get("content")
        if not isinstance(key, str) or not isinstance(content, str):
            continue
        content = collapse(content)
        if content:
            values.setdefault(key.strip().lower(), []).append(content)
    return values


def _first(values: dict[str, list[str]], *keys: str) -> str | None:
    for key in keys:
        for value in values.get(key, []):
            if value:
                return value
    return None


def _looks_like_url(value: str) -> bool:
    return bool(re.match(r"^(https?:)?//|^www\.", value.strip(), re.IGNORECASE))


def _jsonld_objects(scripts: list[Tag]) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []

    def add(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                add(item)
        elif isinstance(node, dict):
            objs.append(node)
            if "@graph" in node:
                add(node["@graph"])

    for script in scripts:
        raw = script.string or script.get_text()
        if not raw or not raw.strip():
            continue
        raw = raw.strip().removeprefix("<!--").removesuffix("-->").strip()
        try:
            add(json.loads(raw, strict=False))
        except (ValueError, RecursionError):
            continue
    return objs


def _types(obj: dict[str, Any]) -> list[str]:
    t = obj.get("@type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list):
        return [x for x in t if isinstance(x, str)]
    return []


def _ld_names(value: Any) -> list[str]:
    """JSON-LD person/organization value(s) -> names (strings, {"name": ...}, lists)."""
    if isinstance(value, str):
        v = collapse(value)
        return [v] if v and not _looks_like_url(v) else []
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str) and collapse(name):
            return [collapse(name)]
        return []
    if isinstance(value, list):
        names: list[str] = []
        for item in value:
            for n in _ld_names(item):
                if n not in names:
                    names.append(n)
        return names
    return []


def _ld_str(value: Any) -> str | None:
    if isinstance(value, str) and collapse(value):
        return collapse(value)
    if isinstance(value, list):
        for item in value:
            s = _ld_str(item)
            if s:
                return s
    if isinstance(value, dict):
        for key in ("name", "@id", "url"):
            s = value.get(key)
            if isinstance(s, str) and collapse(s):
                return collapse(s)
    return None


def page_metadata(html: str, url: str | None = None) -> dict[str, str]:
    """Metadata the page states in <meta>, <link>, <title>, <html lang>, <time> and JSON-LD.

    Keys (present only when stated): title, author, published, outlet, section, url, language,
    description. Values are raw strings as in the page (whitespace collapsed); nothing is
    inferred from body text."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pieces = "\n".join(m.group(0) for m in _META_MARKUP.finditer(html))
        soup = BeautifulSoup(pieces, "lxml", parse_only=_META_TAGS)
    metas = _meta_values(soup.find_all("meta"))
    article: dict[str, Any] = {}
    webpage: dict[str, Any] = {}
    for obj in _jsonld_objects(soup.find_all("script", attrs={"type": re.compile(r"ld\+json", re.IGNORECASE)})):
        types = _types(obj)
        if not article and any(_ARTICLE_TYPES.search(t) for t in types):
            article = obj
        elif not webpage and any(t.endswith("WebPage") for t in types):
            webpage = obj
    ld = article or webpage
    meta: dict[str, str] = {}

    # title
    title = _first(metas, "og:title", "twitter:title", "dc.title", "headline")
    if not title and ld:
        title = _ld_str(ld.get("headline")) or _ld_str(ld.get("name"))
    if not title and soup.title is not None:
        title = collapse(soup.title.get_text()) or None
    if title:
        meta["title"] = title

    # author: JSON-LD author, author meta tags, rel=author
    authors = _ld_names(ld.get("author")) if ld else []
    if not authors:
        for key in (
            "author",
            "article:author",
            "dc.creator",
            "dcterms.creator",
            "parsely-author",
            "sailthru.author",
            "byl",
            "twitter:creator",
        ):
            vals = [v for v in metas.get(key, []) if not _looks_like_url(v)]
            if key == "twitter:creator":
                vals = []  # a handle, not a name
            if key == "byl":
                vals = [re.sub(r"^by\s+", "", v, flags=re.IGNORECASE) for v in vals]
            if vals:
                authors = list(dict.fromkeys(vals))
                break
    if not authors:
        for a in soup.find_all(["a", "link"], rel=True):
            rel = a.get("rel")
            rels = rel if isinstance(rel, list) else [str(rel)]
            if "author" in [r.lower() for r in rels] and a.name == "a":
                name = collapse(a.get_text(" "))
                if name and not _looks_like_url(name) and len(name) <= 100 and name not in authors:
                    authors.append(name)
    if authors:
        meta["author"] = ", ".join(authors)

    # published
    published = _first(
        metas,
        "article:published_time",
        "og:published_time",
        "datepublished",
        "date",
        "pubdate",
        "publishdate",
        "publish-date",
        "dc.date.issued",
        "dcterms.issued",
        "dc.date",
        "dcterms.date",
        "sailthru.date",
        "parsely-pub-date",
    )
    if not published and ld:
        published = _ld_str(ld.get("datePublished")) or _ld_str(ld.get("dateCreated"))
    if not published:
        for t in soup.find_all("time"):
            cls = " ".join(t.get("class") or []) if isinstance(t.get("class"), list) else str(t.get("class") or "")
            stated = (
                t.has_attr("pubdate")
                or str(t.get("itemprop", "")).lower() == "datepublished"
                or re.search(r"\b(published|entry-date|pubdate)\b", cls)
            )
            value = t.get("datetime")
            if stated and isinstance(value, str) and value.strip():
                published = value.strip()
                break
    if published:
        meta["published"] = published

    # outlet
    outlet = _first(metas, "og:site_name", "application-name", "publisher", "dc.publisher", "dcterms.publisher")
    if not outlet and ld:
        names = _ld_names(ld.get("publisher"))
        outlet = names[0] if names else None
    if outlet and not _looks_like_url(outlet):
        meta["outlet"] = outlet

    # section
    section = _first(metas, "article:section", "section", "parsely-section")
    if not section and ld:
        section = _ld_str(ld.get("articleSection"))
    if section:
        meta["section"] = section

    # canonical url
    canonical = None
    for link in soup.find_all("link", rel=True, href=True):
        rel = link.get("rel")
        rels = rel if isinstance(rel, list) else [str(rel)]
        if "canonical" in [r.lower() for r in rels]:
            canonical = collapse(str(link["href"]))
            if canonical:
                break
    canonical = canonical or _first(metas, "og:url", "twitter:url")
    if not canonical and ld:
        canonical = _ld_str(ld.get("url")) or _ld_str(ld.get("mainEntityOfPage"))
    if canonical:
        meta["url"] = urljoin(url, canonical) if url else canonical

    # language
    lang: str | None = None
    opening = _HTML_OPEN.search(html)
    if opening:
        html_tag = BeautifulSoup(opening.group(0) + "</html>", "lxml").find("html")
        if isinstance(html_tag, Tag):
            value = html_tag.get("lang") or html_tag.get("xml:lang")
            lang = value if isinstance(value, str) else None
    if not isinstance(lang, str) or not lang.strip():
        lang = _first(metas, "og:locale", "content-language", "language", "dc.language")
    if not lang and ld:
        lang = _ld_str(ld.get("inLanguage"))
    if isinstance(lang, str) and lang.strip():
        meta["language"] = lang.strip()

    # description
    description = _first(metas, "description", "og:description", "twitter:description", "dc.description")
    if not description and ld:
        description = _ld_str(ld.get("description"))
    if description:
        meta["description"] = description

    return meta
