"""HTML handling: main-content extraction from full pages, fragments, page metadata.

Full web pages are pre-cleaned here, then go through trafilatura, with readability-lxml as a
second opinion where the two disagree strongly (measured against bs4 heuristics, each of the
two alone, jusText, resiliparse and boilerpy3 with ``bench/html_extraction.py``; see that file).
beautifulsoup4 is used for HTML fragments inside text/JSON fields and for the page's
``<meta>``/``<link>``/``<title>``/JSON-LD metadata.

Nothing here touches the network: trafilatura only gets the markup we pass in.
"""

from __future__ import annotations

import copy
import gzip
import html as html_lib
import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlparse

import trafilatura
from bs4 import BeautifulSoup, SoupStrainer
from bs4.element import NavigableString, Tag
from lxml import etree
from lxml import html as lxml_html
from lxml.html import HtmlElement

logger = logging.getLogger(__name__)
# readability-lxml logs a traceback for every page it cannot score; that page simply gets no
# second opinion here (see _readability_blocks), so its log stays quiet
logging.getLogger("readability").setLevel(logging.CRITICAL)

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

    Raises ``pipeline.read.BadInput`` ("page holds no article text (script-loaded or framed)")
    when the page yields no body text at all; bad markup otherwise never raises."""
    if not isinstance(html, str) or not html.strip():
        _no_article_text("")
    titles: list[str] = []
    try:
        meta, titles = _page_metadata(html, url)
    except Exception:  # malformed markup must not stop the pipeline
        logger.warning("metadata extraction failed", exc_info=True)
        meta = {}
    blocks = _main_content_blocks(html, url)
    if not any(kind == "body" for kind, _ in blocks):
        fallback = _paragraph_fallback(html)
        if fallback:
            blocks = fallback
    # a block that is only a URL is a permalink/share line, never article text
    blocks = [_retype_block(kind, text) for kind, text in blocks if not _BARE_URL.fullmatch(text)]
    blocks = _drop_leading_title(blocks, meta.get("title"), titles, meta.get("outlet"))
    if not any(kind == "body" for kind, _ in blocks):
        _no_article_text(html)
    return HtmlArticle(blocks=blocks, meta=meta)


_FRAME = re.compile(r"<(?:frame|iframe)\b[^>]*?\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.IGNORECASE)
_SCRIPT = re.compile(r"<script\b", re.IGNORECASE)
_FRAMESET = re.compile(r"<frameset\b", re.IGNORECASE)


def _no_article_text(html: str) -> None:
    """Raise the quarantine reason for a whole page that yields no body text: the text is
    loaded by script or sits in frames, so the saved file holds none. Said here, not later as
    "no body text left after cleaning", so a user knows to save the rendered or framed page."""
    # imported here: pipeline.read imports this module, and defines the exception the pipeline catches
    from pipeline.read import BadInput

    reason = "page holds no article text (script-loaded or framed)"
    frames = [src for src in _FRAME.findall(html) if not src.lower().startswith(("javascript:", "about:"))]
    if _FRAMESET.search(html) or (frames and len(frames) >= 1 and not _SCRIPT.search(html)):
        shown = ", ".join(dict.fromkeys(frames[:3]))
        hint = f"it frames other pages ({shown}); save the framed page itself" if shown else "it is a frameset"
    elif _SCRIPT.search(html):
        hint = "its text is loaded by script; save the page as rendered by a browser"
    else:
        hint = "save the page as rendered by a browser, or the page it frames"
    raise BadInput(f"{reason}: {hint}")


_BARE_URL = re.compile(r"(?:https?://|www\.)\S+")


def _retype_block(kind: str, text: str) -> tuple[str, str]:
    """A "heading" that reads like a sentence (long, or ending with a period) is body text."""
    if kind == "heading" and (len(text.split()) > 25 or text.endswith(".")):
        return ("body", text)
    return (kind, text)


def _main_content_blocks(html: str, url: str | None) -> BlockList:
    tree: HtmlElement | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            document: str | HtmlElement = html
            try:
                from trafilatura.utils import load_html

                tree = load_html(html)
                if tree is not None:
                    remove_boilerplate(tree)
                    mark_double_breaks(tree)
                    document = tree
            except Exception:
                logger.warning("boilerplate pre-cleaning failed", exc_info=True)
                document, tree = html, None
            # trafilatura works on its own copy of the tree: the pre-cleaned tree stays whole
            xml = trafilatura.extract(document, url=url, **_TRAFILATURA_OPTS)
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
    blocks = _split_marked(blocks)
    if blocks and tree is not None:
        blocks = combine_opinions(blocks, _split_marked(_readability_blocks(tree)), tree)
    return blocks


# Both extractors turn "<br><br>" into one line break (trafilatura: <lb/>), which a single
# <br> also gives, so paragraphs set apart only by blank lines came out as one block. A mark
# after the pair survives both and says where to split: printable (trafilatura drops
# private-use and control characters) and never written in a page (an asterism and a pilcrow).
_PARAGRAPH_MARK = "\u2042\u00b6"


def mark_double_breaks(tree: HtmlElement) -> int:
    """Put _PARAGRAPH_MARK after every <br><br> (only whitespace between); returns how many."""
    marked = 0
    for br in tree.iter("br"):
        following = br.getnext()
        if following is None or following.tag != "br" or (br.tail or "").strip():
            continue
        prev = br.getprevious()
        if prev is not None and prev.tag == "br" and not (prev.tail or "").strip():
            continue  # the third <br> of a run: the run is marked once
        following.tail = f" {_PARAGRAPH_MARK} {following.tail or ''}"
        marked += 1
    return marked


def _split_marked(blocks: BlockList) -> BlockList:
    """Blocks split where mark_double_breaks marked a paragraph end (the mark dropped)."""
    if not any(_PARAGRAPH_MARK in text for _, text in blocks):
        return blocks
    out: BlockList = []
    for kind, text in blocks:
        out.extend((kind, part) for part in map(collapse, text.split(_PARAGRAPH_MARK)) if part)
    return out


# --------------------------------------------------------------------------- second opinion
#
# readability-lxml finds the article by scoring paragraphs and their containers, a method
# unlike trafilatura's, so the two fail on different pages. Where they disagree strongly,
# measured on the Zyte development pages (bench/html_extraction.py --truth): trafilatura
# missing most of a long article while readability holds it as prose paragraphs (a swap), and
# trafilatura running on past the article's end into "Order Reprints"/"To read the full story"
# lines, subscription blurbs and teaser lists that readability leaves out, or starting with a
# layout table's menu column (a trim). Blocks only trafilatura keeps inside the article
# (embedded posts, tables) stay: there it is right more often than readability.

_OPINION_TOKEN = re.compile(r"\w+")
# a block counts as held by the other extractor when half of its 3-word shingles are there
_HELD = 0.5
# swap: readability holds 90 % of our text ...
_SWAP_MIN_OURS_HELD = 0.9
# ... and readability has prose paragraphs (12+ words) we lack, 80 % of our length or more
_SWAP_PROSE_WORDS = 12
_SWAP_EXTRA_SHARE = 0.8
# trim: readability's text is mostly ours, and half of ours is readability's (below that the
# two chose different parts of the page, and readability's end says nothing about ours)
_TRIM_MIN_SECOND_HELD = 0.8
_TRIM_MIN_OURS_HELD = 0.5
_TRIM_LEAD_WORDS = 8
# apart: each holds under a fifth of the other's text, they chose different parts of the page
# (not one of the Zyte pages; nearest, at 0.24 each, a Korean page whose \w+ runs differ by block)
_APART = 0.2


def _starts(page: HtmlElement, candidates: list[list[list[str]]]) -> tuple[int, ...] | None:
    """Word positions in the page's visible text of its headline (the first words of <title>,
    else of <h1>) and of each candidate's first block of 3+ words; None when one is not found."""
    head = next(page.iter("title"), None)
    if head is None or len(_OPINION_TOKEN.findall(head.text_content())) < 3:
        head = next(page.iter("h1"), None)
    if head is None:
        return None
    body = page.find("body")
    texts = (body if body is not None else page).xpath(".//text()[not(ancestor::script) and not(ancestor::style)]")
    words = _OPINION_TOKEN.findall(" ".join(texts).lower())
    first: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - 2):
        first.setdefault((words[i], words[i + 1], words[i + 2]), i)
    keys = [tuple(_OPINION_TOKEN.findall(head.text_content().lower())[:3])]
    for blocks in candidates:
        lead = next((w for w in blocks if len(w) >= 3), None)
        if lead is None:
            return None
        keys.append(tuple(lead[:3]))
    found = [first.get(key) for key in keys]
    return None if any(pos is None for pos in found) else tuple(found)  # type: ignore[misc]


def _shingles(words: list[str]) -> set[tuple[str, ...]]:
    if len(words) < 3:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def _held(blocks: list[list[str]], other: set[tuple[str, ...]]) -> list[float]:
    """Per block: the share of its shingles that occur in the other extractor's text."""
    out = []
    for words in blocks:
        grams = _shingles(words)
        out.append(len(grams & other) / len(grams) if grams else 1.0)
    return out


def combine_opinions(ours: BlockList, second: BlockList, page: HtmlElement | None = None) -> BlockList:
    """Our blocks checked against a second extractor's (readability-lxml): where they agree,
    ours; where ours is about half of an article or less that the second holds as prose, the
    second's; where ours runs on past the last block the second also holds, ours up to that
    block, from its first block that is confirmed or long; where the two share almost nothing,
    the one that starts between the headline of ``page`` and the other's start (the article
    comes first under its headline; comments and teaser lists follow). Blocks re-rendering
    earlier ones are dropped first. See the section comment for the measurements behind each
    case."""
    ours = drop_repeated_blocks(ours)
    if not ours or not second:
        return ours
    our_words = [_OPINION_TOKEN.findall(text.lower()) for _, text in ours]
    second_words = [_OPINION_TOKEN.findall(text.lower()) for _, text in second]
    our_grams: set[tuple[str, ...]] = set().union(*map(_shingles, our_words))
    second_grams: set[tuple[str, ...]] = set().union(*map(_shingles, second_words))
    ours_held = _held(our_words, second_grams)
    second_held = _held(second_words, our_grams)
    our_total = sum(map(len, our_words)) or 1
    second_total = sum(map(len, second_words)) or 1
    ours_share = sum(len(w) * h for w, h in zip(our_words, ours_held, strict=True)) / our_total
    second_share = sum(len(w) * h for w, h in zip(second_words, second_held, strict=True)) / second_total
    missing_prose = sum(
        len(w) for w, h in zip(second_words, second_held, strict=True) if h < _HELD and len(w) >= _SWAP_PROSE_WORDS
    )
    if ours_share >= _SWAP_MIN_OURS_HELD and missing_prose >= _SWAP_EXTRA_SHARE * our_total:
        return drop_repeated_blocks(second)
    if ours_share < _APART and second_share < _APART and page is not None:
        starts = _starts(page, [our_words, second_words])
        if starts is not None:
            headline, our_start, second_start = starts
            if headline <= second_start and (our_start < headline or second_start < our_start):
                return drop_repeated_blocks(second)
        return ours
    if second_share >= _TRIM_MIN_SECOND_HELD and ours_share >= _TRIM_MIN_OURS_HELD:
        confirmed = [i for i, h in enumerate(ours_held) if h >= _HELD]
        if confirmed:
            # before the first confirmed block, a run of short unconfirmed lines is a menu or a
            # kicker (a long block there may be a standfirst: it stays)
            first = 0
            while first < confirmed[0] and len(our_words[first]) < _TRIM_LEAD_WORDS:
                first += 1
            return ours[first : confirmed[-1] + 1]
    return ours


# a block of 20+ words made of text the blocks before it already gave, from two or more of them
# (a layout rendering the story a second time as one block, a summary box quoting it). A block
# repeating one earlier block stays: pages repeat a line, a question or a recipe step on purpose.
_REPEAT_MIN_WORDS = 20
_REPEAT_SHARE = 0.9


def drop_repeated_blocks(blocks: BlockList) -> BlockList:
    """Blocks without those that re-render text of several earlier blocks (see above)."""
    seen: set[tuple[str, ...]] = set()
    earlier: list[set[tuple[str, ...]]] = []
    kept: BlockList = []
    for kind, text in blocks:
        words = _OPINION_TOKEN.findall(text.lower())
        grams = _shingles(words)
        if (
            len(words) >= _REPEAT_MIN_WORDS
            and len(grams & seen) >= _REPEAT_SHARE * len(grams)
            and all(len(grams & one) < _REPEAT_SHARE * len(grams) for one in earlier)
        ):
            continue
        seen |= grams
        earlier.append(grams)
        kept.append((kind, text))
    return kept


@lru_cache(maxsize=1)
def _readability_document() -> type:
    """readability-lxml's Document, reading a tree parsed here. Its own clean-up of the tree
    (lxml_html_clean over every element, attribute and link: as long as its scoring) is
    replaced by stripping the same scripts, styles, links and comments in one C call; the
    scores it gives are the same. A fresh copy per pass: its second, lenient pass needs the
    tree its first pass pruned."""
    from readability import Document

    class TreeDocument(Document):  # type: ignore[misc]
        def _parse(self, input: Any) -> Any:
            doc = copy.deepcopy(input)
            etree.strip_elements(
                doc, etree.Comment, etree.ProcessingInstruction, "script", "style", "link", with_tail=False
            )
            self.encoding = "utf-8"
            return doc

    return TreeDocument


def _readability_blocks(tree: HtmlElement) -> BlockList:
    """readability-lxml's article of the pre-cleaned page, as blocks (fragment_blocks of its HTML)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = _readability_document()(tree).summary(html_partial=True)
    except Exception:  # its "Unparseable" and any crash: no second opinion for this page
        logger.debug("readability-lxml failed", exc_info=True)
        return []
    return _summary_blocks(summary)


def _summary_blocks(markup: str) -> BlockList:
    """readability's article HTML -> blocks, by fragment_blocks' rules (block elements and
    <br><br> split paragraphs, <h1>-<h6> and a lone bold line are headings), walked with lxml:
    the markup is clean, and beautifulsoup4 took as long as readability's scoring."""
    try:
        root = lxml_html.fragment_fromstring(markup, create_parent="div")
    except (etree.ParserError, ValueError):
        return []
    blocks: BlockList = []
    buf: list[str] = []

    def flush(kind: str = "body") -> None:
        for part in "".join(buf).split("\x00"):
            text = collapse(part)
            if text:
                blocks.append((kind, text))
        buf.clear()

    def walk(node: Any) -> None:
        for child in node:
            tag = child.tag if isinstance(child.tag, str) else ""
            if tag == "br":
                prev = child.getprevious()
                doubled = prev is not None and prev.tag == "br" and not (prev.tail or "").strip()
                buf.append("\x00" if doubled else " ")
            elif tag in _FRAGMENT_HEADING or (tag == "p" and _bold_line(child)):
                flush()
                buf.append(" ".join(child.itertext()))  # as bs4's get_text(" ")
                flush("heading")
            elif tag in _FRAGMENT_BLOCK or tag in _FRAGMENT_CONTAINERS:
                flush()
                buf.append(child.text or "")
                walk(child)
                flush()
            elif tag and tag not in _FRAGMENT_DROP:
                buf.append(child.text or "")
                walk(child)
            buf.append(child.tail or "")

    buf.append(root.text or "")
    walk(root)
    flush()
    return blocks


def _bold_line(p: Any) -> bool:
    """lxml twin of _bold_heading: <p><strong>Short label</strong></p>."""
    if len(p) != 1 or (p.text or "").strip() or (p[0].tail or "").strip() or p[0].tag not in ("strong", "b"):
        return False
    text = collapse(p[0].text_content())
    return bool(text) and len(text.split()) < 12 and not text.endswith((".", ":", ",", ";"))


# --------------------------------------------------------------------------- pre-cleaning

# class/id words marking page furniture around an article. A class/id token is split into words
# ("related-posts", "sidebar_left", "socialShare" -> related|posts, sidebar|left, social|share) and
# a word must be one of these, optionally glued to another of them or to a component suffix
# ("teaserbox", "sharebar", "socialshare"); a word merely starting with one ("shareholders",
# "promotion", "relatedness") is content.
_BOILERPLATE_WORDS = frozenset(
    "related teaser teasers sidebar aside paywall payant rating ratings newsletter newsletters share shares"
    " sharing social promo promos rollover hovercard tooltip toc tagline slogan breadcrumb breadcrumbs crumbs"
    " authorbio biocard authorcard authorbox mehrzumthema mostviewed mostread mostpopular sendtofriend".split()
)
_COMPONENT_SUFFIXES = frozenset(
    "s box bar list links block widget wrap wrapper container area module buttons button icons tools item items"
    " card panel".split()
)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_ATTR_SPLIT = re.compile(r"[^A-Za-z0-9]+")


def _attr_words(token: str) -> list[str]:
    return [w.lower() for w in _ATTR_SPLIT.split(_CAMEL.sub("-", token)) if w]


def _alternatives(words: frozenset[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


# a marker word, alone or glued to a suffix or a second marker ("teaserbox", "socialshare")
_BOILERPLATE_WORD = re.compile(
    rf"(?:{_alternatives(_BOILERPLATE_WORDS)})(?:{_alternatives(_COMPONENT_SUFFIXES | _BOILERPLATE_WORDS)})?"
)


@lru_cache(maxsize=65536)
def _boilerplate_marks(value: str) -> bool:
    """True when a class/id value names page furniture (see _BOILERPLATE_WORDS)."""
    return any(_boilerplate_token(token) for token in value.split())


@lru_cache(maxsize=65536)
def _boilerplate_token(token: str) -> bool:
    # cached per token: class names repeat across a page and across pages
    words = _attr_words(token)
    if any(_BOILERPLATE_WORD.fullmatch(w) for w in words):
        return True
    # adjacent words glued ("author-bio" -> "authorbio", "most-viewed" -> "mostviewed")
    glued = ("".join(words[i : i + n]) for n in (2, 3) for i in range(len(words) - n + 1))
    return any(g in _BOILERPLATE_WORDS for g in glued)


# layout classes that mention a sidebar but wrap the content ("has-sidebar", "content-with-sidebar")
_LAYOUT_ATTR = re.compile(r"(?:has|with|no|without|one|two|left|right)[-_]?sidebar", re.IGNORECASE)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# headings of "related content" boxes
_RELATED_LABEL = re.compile(
    r"^(?:mehr zum thema|mehr zu diesem thema|das könnte sie auch interessieren|lesen sie auch"
    r"|weitere artikel|related(?: articles| stories| posts| content| news| links)?"
    r"|more on this (?:story|topic)|you (?:may|might) also like|top stories|partner news"
    r"|more stories|recommended(?: for you)?|à lire aussi|lire aussi|sur le même sujet"
    r"|noticias relacionadas|artículos relacionados|te puede interesar|leggi anche|articoli correlati"
    r"|most (?:viewed|read|popular|shared|commented)(?: articles| stories| news| posts)?|trending(?: now)?"
    r"|popular (?:articles|stories|posts|news)|meistgelesen|meistgelesene artikel|les plus lus"
    r"|lo más leído|más leídas|più letti)"
    r"\W*$",
    re.IGNORECASE,
)
_PROTECTED_TAGS = {"html", "body", "main", "article"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_INLINE_CONTEXT = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li"}


def _chars(text: str) -> int:
    """Length of the text without its whitespace (a cheap stand-in for len(collapse(text)))."""
    return sum(map(len, text.split()))


def _p_len(el: Any) -> int:
    return sum(_chars(p.text_content()) for p in el.iter("p"))


def _text_len(el: Any) -> int:
    return _chars(el.text_content())


def _heading_anchor(el: Any) -> bool:
    """An id made from the slug of the element's own heading ("sharing-with-a-single-developer"
    on a section headed "Sharing with a single developer", or "...-what-broke" on a subsection
    headed "What broke"), around prose rather than links, names content, not furniture."""
    key = _letters(el.get("id") or "")
    head = next(el.iter(*_HEADINGS), None)
    if len(key) < 8 or head is None:
        return False
    text = _letters(head.text_content())
    if len(text) < 6 or not (key.startswith(text) or key.endswith(text) or text.startswith(key)):
        return False
    total = _text_len(el)
    links = sum(len(collapse(a.text_content())) for a in el.iter("a"))
    prose = any(len(collapse(p.text_content()).split()) >= 20 for p in el.iter("p"))
    return prose and links * 3 < total


# separators between the links of a breadcrumb or a tools bar ("NATIONAL > General",
# "View all news | Send to a friend | Print")
_BAR_SEPARATORS = re.compile(r"[\s|>»›/·•:\-–—]*")
_BAR_TAGS = {"div", "td", "p", "span", "li", "ul", "ol", "nav", "section", "font", "center"}


def _link_bar(el: Any) -> bool:
    """A short element made only of 2+ short links and separators: a breadcrumb trail, a
    print/send/share bar or a menu row, never article text."""
    if el.tag not in _BAR_TAGS:
        return False
    if el.tag == "td" and el.getparent() is not None and len(el.getparent()) > 1:
        return False  # a cell among others is data ("Arsenal - Chelsea" in a results table)
    words = el.text_content().split()
    if not words or len(words) > 20:
        return False
    links = [a.text_content().split() for a in el.iter("a")]
    links = [t for t in links if t]
    if len(links) < 2 or any(len(t) > 5 for t in links):
        return False
    rest = " ".join(words)
    for t in links:
        rest = rest.replace(" ".join(t), " ", 1)
    return bool(_BAR_SEPARATORS.fullmatch(rest))


def _teaser_grid(el: Any) -> bool:
    """3+ items, each a card whose heading is entirely a link (the headline of another story)
    with at most a short subline: a "latest news" grid, never the article."""
    items = [c for c in el if isinstance(c.tag, str) and c.tag not in _HEADINGS]
    if len(items) < 3:
        return False
    for item in items:
        head = next(item.iter(*_HEADINGS), None)
        if head is None or len(item.text_content().split()) > 40:
            return False
        words = head.text_content().split()
        linked = sum(len(a.text_content().split()) for a in head.iter("a"))
        if not words or linked < len(words):
            return False
    return True


def remove_boilerplate(tree: HtmlElement) -> int:
    """Drop (in place) related/teaser/sidebar/paywall/share/... boxes, breadcrumb and tools bars
    and hidden elements before main-content extraction; returns how many elements were removed.

    Never removes <html>, <body>, <main>, <article>, an ancestor of <main> or of the element
    holding the most paragraph text, or an element holding half of the page's text; elements
    flagged by their class/id together never take more than half of the page's <p> text (a
    matching pattern that would is wrong for this page). Inside a paragraph, a matching element
    that only wraps a few words (a name with a hover card) stays."""
    total_p = _p_len(tree)
    total_text = _text_len(tree)
    # the element with the most direct <p> text: the article body on almost every page
    weights: dict[Any, int] = {}
    for p in tree.iter("p"):
        parent = p.getparent()
        if parent is not None:
            weights[parent] = weights.get(parent, 0) + _chars(p.text_content())
    anchors = [max(weights, key=weights.__getitem__)] if weights else []
    anchors += [el for el in tree.iter("main")]
    anchors += tree.xpath('//*[@role="main" or @itemprop="articleBody"]')
    protected: set[Any] = set()
    for anchor in anchors:
        protected.add(anchor)
        protected.update(anchor.iterancestors())

    def removable(el: Any) -> bool:
        if el.tag in _PROTECTED_TAGS or el in protected:
            return False
        if total_p >= 200 and _p_len(el) * 2 >= total_p:
            return False
        return not (total_text >= 400 and _text_len(el) * 2 >= total_text)

    related = dict(_related_boxes(tree))
    # a bar is at most three levels above its links: only those elements are measured
    link_parents: dict[Any, int] = {}
    for a in tree.iter("a"):
        for level, up in enumerate(a.iterancestors()):
            if level >= 3:
                break
            link_parents[up] = link_parents.get(up, 0) + 1
    bar_scope = {el for el, n in link_parents.items() if n >= 2}
    # (element, hidden, flagged by class/id only)
    candidates: list[tuple[Any, bool, bool]] = []
    for el in tree.iter():
        if not isinstance(el.tag, str):
            continue
        if el in related or (el.tag == "noscript" and len(collapse(el.text_content()).split()) <= 30):
            # a short <noscript> is a "please enable JavaScript" notice, never the article
            candidates.append((el, False, False))
            continue
        hidden = (
            el.get("hidden") is not None
            or (el.get("aria-hidden") or "").strip().lower() == "true"
            or bool(_HIDDEN_STYLE.search(el.get("style") or ""))
        )
        cls, ident = el.get("class"), el.get("id")
        marks = f"{cls or ''} {ident or ''}" if cls or ident else ""
        flagged = (
            bool(marks)
            and el.tag not in _HEADINGS
            and _boilerplate_marks(marks)
            and not _LAYOUT_ATTR.search(marks)
            and not (ident and _boilerplate_marks(ident) and _heading_anchor(el))
        )
        if hidden or flagged:
            candidates.append((el, hidden, not hidden))
        elif el in bar_scope and (_link_bar(el) or _teaser_grid(el)):
            candidates.append((el, False, False))
    removed = 0
    flagged_p = 0
    # deepest/last first, so an inline wrapper is judged after its hover card is gone
    for el, hidden, by_marks in reversed(candidates):
        if el.getparent() is None or not removable(el):
            continue
        if not hidden and any(a.tag in _INLINE_CONTEXT for a in el.iterancestors()):
            if len(collapse(el.text_content()).split()) <= 4:
                continue
        if by_marks:
            p_len = _p_len(el)
            if total_p >= 200 and (flagged_p + p_len) * 2 >= total_p:
                continue
            flagged_p += p_len
        el.drop_tree()
        removed += 1
    return removed


def _related_boxes(tree: Any) -> list[tuple[Any, bool]]:
    """Containers introduced by a "Mehr zum Thema" / "Related stories" heading and made of short
    linked items."""
    boxes: list[tuple[Any, bool]] = []
    for head in tree.iter("h1", "h2", "h3", "h4", "h5", "h6", "strong", "b", "span", "div", "p"):
        if len(head) > 2:
            continue
        label = collapse(head.text_content())
        if not label or len(label) > 40 or not _RELATED_LABEL.match(label):
            continue
        box = head.getparent()
        while box is not None and collapse(box.text_content()) == label:
            box = box.getparent()
        if box is None or box.tag in _PROTECTED_TAGS:
            continue
        text = collapse(box.text_content())
        rest = text[len(label) :] if text.startswith(label) else text
        link_text = sum(len(collapse(a.text_content())) for a in box.iter("a"))
        if not rest.strip() or link_text * 3 < len(rest):
            continue
        # every item is a short teaser with a link (not an explanatory sentence)
        items = [x for x in box.iter("p", "li") if collapse(x.text_content())]
        if any(len(collapse(x.text_content()).split()) > 30 or next(x.iter("a"), None) is None for x in items):
            continue
        boxes.append((box, False))
    return boxes


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
        elif tag in ("list", "quote", "div", "cell") and any(
            isinstance(c.tag, str) and c.tag in _XML_BLOCK_TAGS for c in child
        ):
            _xml_blocks(child, out)
        elif tag == "table":
            _xml_table(child, out)
        elif tag == "row":
            # a row without its table (trafilatura's fallback returns a layout row as the body)
            _xml_row(child, out)
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
    headings) is walked cell by cell so its paragraphs and headings stay separate.

    Only the table's own rows: a table nested in a cell is read when that cell is walked
    (descending into it here too gave the nested text once per nesting level)."""
    for row in table:
        if isinstance(row.tag, str) and row.tag == "row":
            _xml_row(row, out)


def _xml_row(row: Any, out: BlockList) -> None:
    cells: list[str] = []
    for cell in row:
        if not isinstance(cell.tag, str):
            continue
        if _layout_cell(cell):
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


_XML_BLOCK_TAGS = {"p", "head", "list", "item", "quote", "table", "row", "cell", "code", "div"}


def _layout_cell(cell: Any) -> bool:
    """A cell holding several blocks or long text is page layout; a short one is data."""
    blocks = [c for c in cell if isinstance(c.tag, str) and c.tag in _XML_BLOCK_TAGS]
    if not blocks:
        return False
    return len(blocks) > 1 or len(_xml_text(cell).split()) > 25 or any(c.tag in ("table", "list") for c in blocks)


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


def _letters(text: str) -> str:
    """Letters and digits only, case-folded: "Don’t stop" and "Don't Stop!" compare equal."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


_TITLE_SEP = re.compile(r"\s+(?:[|\-–—»·:]|::)\s+")


def _drop_leading_title(
    blocks: BlockList, title: str | None, variants: list[str] | tuple[str, ...] = (), site: str | None = None
) -> BlockList:
    """Drop the first block (and a second one) when it repeats the page title (stored separately
    by the caller): the title, og:title, <title>, JSON-LD headline or <h1>, compared on letters and
    digits only; also the title with the site name before or after it."""
    if len(blocks) < 2 or not (title or variants):
        return blocks
    candidates: set[str] = set()
    for value in [title or "", *variants]:
        value = collapse(value)
        if not value:
            continue
        candidates.add(_letters(value))
        # "<title>Headline | Outlet</title>": any part of at least 10 characters
        candidates.update(_letters(p) for p in _TITLE_SEP.split(value) if len(p) >= 10)
    candidates.discard("")
    site_key = _letters(site or "")

    def repeats(text: str) -> bool:
        key = _letters(text)
        if not key:
            return False
        if key in candidates:
            return True
        if site_key and site_key != key:
            for cand in candidates:
                if key in (cand + site_key, site_key + cand):
                    return True
        return False

    for _ in range(2):
        if len(blocks) < 2:
            break
        kind, first = blocks[0]
        if kind != "heading" and len(first) > 300:
            break
        if not repeats(first):
            break
        blocks = blocks[1:]
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
# containers that end a paragraph without being one
_FRAGMENT_CONTAINERS = {"ul", "ol", "dl", "table", "tr", "tbody", "thead", "hr", "body", "html"}
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
            elif name in _FRAGMENT_HEADING or (name == "p" and _bold_heading(child)):
                flush()
                buf.append(child.get_text(" "))
                flush("heading")
            elif name in _FRAGMENT_BLOCK or name in _FRAGMENT_CONTAINERS:
                flush()
                walk(child)
                flush()
            else:
                walk(child)

    walk(root)
    flush()
    return blocks


def _bold_heading(p: Tag) -> bool:
    """<p><strong>Short label</strong></p>: one bold element, under 12 words, no final period."""
    children = [c for c in p.children if not (isinstance(c, NavigableString) and not c.strip())]
    if len(children) != 1 or not isinstance(children[0], Tag) or children[0].name not in ("strong", "b"):
        return False
    text = collapse(children[0].get_text(" "))
    return bool(text) and len(text.split()) < 12 and not text.endswith((".", ":", ",", ";"))


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


def _ld_names(value: Any, skip_organizations: bool = False) -> list[str]:
    """JSON-LD person/organization value(s) -> names (strings, {"name": ...}, lists);
    with ``skip_organizations``, values typed as an organisation give no name."""
    if isinstance(value, str):
        v = collapse(value)
        return [v] if v and not _looks_like_url(v) else []
    if isinstance(value, dict):
        if skip_organizations and set(_types(value)) & _ORG_TYPES:
            return []
        name = value.get("name")
        if isinstance(name, str) and collapse(name):
            return [collapse(name)]
        return []
    if isinstance(value, list):
        names: list[str] = []
        for item in value:
            for n in _ld_names(item, skip_organizations):
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


_ORG_TYPES = {"Organization", "NewsMediaOrganization", "Corporation"}
_TZ = re.compile(r"\d[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_CHROME_SPAN = re.compile(r"<(footer|nav)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_H1 = re.compile(r"<h1\b[^>]*>(.{0,1000}?)</h1\s*>", re.IGNORECASE | re.DOTALL)


def _unescape(value: str) -> str:
    """Entities left in attribute values by double encoding ("Redacci&amp;oacute;n")."""
    return collapse(html_lib.unescape(value)) if "&" in value else value


def _date_ok(value: str) -> bool:
    year = _YEAR.search(value)
    return not (year and int(year.group(1)) < 1990)


def _host_keys(*urls: str | None) -> set[str]:
    keys: set[str] = set()
    for u in urls:
        if not u:
            continue
        host = urlparse(u if "//" in u else "//" + u).hostname or ""
        host = host.removeprefix("www.")
        if host:
            keys.add(_letters(host))
            keys.add(_letters(host.rsplit(".", 1)[0]))
    keys.discard("")
    return keys


def _strip_site(title: str, site_keys: set[str]) -> str:
    """ "Headline | Outlet" -> "Headline" when the part is the site name or domain."""
    if not site_keys:
        return title
    parts = _TITLE_SEP.split(title)
    if len(parts) < 2:
        return title
    seps = _TITLE_SEP.findall(title)
    if _letters(parts[-1]) in site_keys:
        stripped = title[: len(title) - len(parts[-1]) - len(seps[-1])]
    elif _letters(parts[0]) in site_keys:
        stripped = title[len(parts[0]) + len(seps[0]) :]
    else:
        return title
    return collapse(stripped) or title


def page_metadata(html: str, url: str | None = None) -> dict[str, str]:
    """Metadata the page states in <meta>, <link>, <title>, <html lang>, <time> and JSON-LD.

    Keys (present only when stated): title, author, published, outlet, section, url, language,
    description. Values are raw strings as in the page (whitespace collapsed, HTML entities
    decoded, the site name cut off the title); nothing is inferred from body text."""
    return _page_metadata(html, url)[0]


def _page_metadata(html: str, url: str | None = None) -> tuple[dict[str, str], list[str]]:
    """page_metadata plus the title variants the page states (og:title, <title>, JSON-LD
    headline, first <h1>), used to recognise a repeated title at the top of the body."""
    chrome = [m.span() for m in _CHROME_SPAN.finditer(html)] if "rel" in html else []

    def in_chrome(pos: int) -> bool:
        return any(a <= pos < b for a, b in chrome)

    pieces_list: list[str] = []
    for m in _META_MARKUP.finditer(html):
        piece = m.group(0)
        if piece[:2].lower() == "<a" and in_chrome(m.start()):
            continue  # rel=author links in footers/menus name the site's staff, not the author
        pieces_list.append(piece)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soup = BeautifulSoup("\n".join(pieces_list), "lxml", parse_only=_META_TAGS)
    metas = _meta_values(soup.find_all("meta"))
    metas = {k: [_unescape(v) for v in vals] for k, vals in metas.items()}
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

    # outlet (first: the title is cut against it)
    outlet = _first(metas, "og:site_name", "application-name", "publisher", "dc.publisher", "dcterms.publisher")
    if not outlet and ld:
        names = _ld_names(ld.get("publisher"))
        outlet = names[0] if names else None
    if outlet and not _looks_like_url(outlet):
        meta["outlet"] = outlet

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

    # title
    headline = (_ld_str(ld.get("headline")) or _ld_str(ld.get("name"))) if ld else None
    title_tag = collapse(soup.title.get_text()) if soup.title is not None else ""
    variants = [v for v in (_first(metas, "og:title"), title_tag, headline) if v]
    h1 = _H1.search(html)
    if h1:
        h1_text = collapse(html_lib.unescape(re.sub(r"<[^>]+>", " ", h1.group(1))))
        if h1_text:
            variants.append(h1_text)
    title = _first(metas, "og:title", "twitter:title", "dc.title", "headline") or headline or title_tag or None
    if title:
        site_keys = {_letters(x) for x in (outlet, _first(metas, "application-name")) if x}
        site_keys |= _host_keys(url, meta.get("url"))
        site_keys.discard("")
        stripped = _strip_site(title, site_keys)
        if stripped == title and headline and headline != title:
            # "Headline - Outlet" where the outlet is spelled differently from og:site_name
            if title.startswith(headline) and _TITLE_SEP.match(title[len(headline) :]):
                stripped = headline
            elif title.endswith(headline) and _TITLE_SEP.search(title[: len(title) - len(headline)] + " "):
                stripped = headline
        meta["title"] = _unescape(stripped)

    # author: JSON-LD author, author meta tags, rel=author
    authors = _ld_names(ld.get("author"), skip_organizations=True) if ld else []
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
        linked: list[str] = []
        for a in soup.find_all("a", rel=True):
            rel = a.get("rel")
            rels = rel if isinstance(rel, list) else [str(rel)]
            if "author" not in [r.lower() for r in rels]:
                continue
            name = collapse(a.get_text(" "))
            href = str(a.get("href") or "")
            if re.search(r"theme", name, re.IGNORECASE) or re.search(r"theme", href, re.IGNORECASE):
                continue  # "Theme by ..." credits name software, not people
            if name and not _looks_like_url(name) and len(name) <= 100 and name not in linked:
                linked.append(name)
        if len(linked) <= 3:
            authors = linked
    if authors:
        meta["author"] = _unescape(", ".join(authors))

    # published: prefer a value with a time zone, in this order of sources
    candidates: list[str | None] = [
        _first(metas, "article:published_time"),
        _first(metas, "og:published_time"),
        _ld_str(ld.get("datePublished")) if ld else None,
    ]
    for key in (
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
    ):
        candidates.extend(metas.get(key, []))
    if ld:
        candidates.append(_ld_str(ld.get("dateCreated")))
    dates = [c for c in candidates if c and _date_ok(c)]
    published = next((d for d in dates if _TZ.search(d)), dates[0] if dates else None)
    if not published:
        published = _time_element_date(soup)
    if published:
        meta["published"] = published

    # section
    section = _first(metas, "article:section", "section", "parsely-section")
    if not section and ld:
        section = _ld_str(ld.get("articleSection"))
    if section:
        meta["section"] = section

    # language: the real <html> tag, not one inside an (IE conditional) comment
    lang: str | None = None
    opening = _HTML_OPEN.search(_COMMENT.sub("", html) if "<!--" in html else html)
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
        meta["description"] = _unescape(description)

    if "outlet" in meta:
        meta["outlet"] = _unescape(meta["outlet"])
    if "section" in meta:
        meta["section"] = _unescape(meta["section"])
    return meta, variants


def _time_element_date(soup: BeautifulSoup) -> str | None:
    """<time datetime> marked as the publication date (pubdate, itemprop, a date/time/publish
    class), or the only distinct <time datetime> on the page."""
    values: list[str] = []
    for t in soup.find_all("time"):
        value = t.get("datetime")
        if not isinstance(value, str) or not value.strip() or not _date_ok(value):
            continue
        value = value.strip()
        raw_cls = t.get("class")
        cls = (" ".join(raw_cls) if isinstance(raw_cls, list) else str(raw_cls or "")).lower()
        stated = (
            t.has_attr("pubdate")
            or str(t.get("itemprop", "")).lower() in ("datepublished", "datecreated")
            or (re.search(r"date|time|publish", cls) and not re.search(r"updat|modif", cls))
        )
        if stated:
            return value
        if value not in values:
            values.append(value)
    return values[0] if len(values) == 1 else None
