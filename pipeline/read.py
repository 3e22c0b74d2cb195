"""Stage 1: raw files on disk -> documents.

A raw file yields zero or more documents (a JSON Lines export holds many). Anything that
cannot be read becomes a ``Problem`` with a reason; nothing is silently dropped and the
raw file itself is never changed.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ftfy
from ftfy.badness import is_bad

from pipeline import html as html_extract

DEFAULT_MAX_BYTES = 20 * 1024 * 1024

TEXT_SUFFIXES = {".txt", ".text", ".md"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | JSON_SUFFIXES | JSONL_SUFFIXES

# Scraper exports name the same thing many ways; the first present wins.
JSON_TEXT_FIELDS = ("text", "content", "body", "article", "full_text", "fulltext", "maintext", "description")
JSON_HTML_FIELDS = ("html", "content_html", "body_html", "raw_html", "html_content")
JSON_META_FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title", "headline", "name"),
    "url": ("url", "link", "canonical_url", "source_url", "permalink"),
    "published": ("published", "date", "pubDate", "pubdate", "published_at", "publishedAt", "datePublished",
                  "date_publish", "publish_date", "pub_date", "created_at", "timestamp"),
    "author": ("author", "byline", "authors", "creator", "dc:creator"),
    "outlet": ("outlet", "source", "publisher", "site_name", "sitename", "source_name", "media", "feed"),
    "section": ("section", "category", "categories", "articleSection"),
    "language": ("language", "lang", "inLanguage"),
    "dateline": ("dateline",),
}
_BODY_KEYS = set(JSON_TEXT_FIELDS) | set(JSON_HTML_FIELDS)
# Only the encoding repairs: quotes, widths, ligatures and HTML entities stay as written.
_MOJIBAKE_FIX = ftfy.TextFixerConfig(
    unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False, fix_character_width=False,
    uncurl_quotes=False, fix_line_breaks=False, fix_surrogates=False, remove_control_chars=False,
    normalization=None, explain=False,
)
_MARKUP_RE = re.compile(r"<(p|br|div|h[1-6]|li|blockquote|span|a|strong|em)\b[^>]*>", re.IGNORECASE)


class RawDirError(OSError):
    """The raw dir itself is missing or unreadable (an unmounted share, a typo): not "no files"."""


class BadInput(Exception):
    """A raw file (or one object in it) that cannot become a document; the message says why."""


@dataclass(frozen=True)
class RawEntry:
    """A file found under the raw directory."""

    path: str  # relative to the raw dir, POSIX separators
    abs_path: Path
    size: int


@dataclass(frozen=True)
class Problem:
    """Something that could not be read, with the reason shown to the user."""

    path: str
    reason: str
    item: int | None = None
    sha256: str | None = None


@dataclass
class Document:
    """One article as the container states it, before cleaning."""

    path: str
    item: int | None  # position inside a JSON/JSONL file, None for single-article files
    sha256: str  # of the whole raw file's bytes
    format: str  # "text" | "html" | "json"
    text: str | None = None  # plain text, paragraphs still to be found
    blocks: list[tuple[str, str]] | None = None  # (kind, text) from markup
    meta: dict[str, str] = field(default_factory=dict)  # stated by the container
    extra: dict[str, Any] = field(default_factory=dict)  # unknown JSON fields, kept as given


def scan_raw(raw_dir: Path) -> tuple[list[RawEntry], list[Problem]]:
    """Every regular file under ``raw_dir``, sorted by path.

    Symlinks are never followed (they could lead outside the raw dir); hidden files
    (``.gitkeep``, editor swap files) are skipped; other suffixes are reported.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise RawDirError(f"raw dir {raw_dir} does not exist or is not a directory")
    root = raw_dir.resolve()
    entries: list[RawEntry] = []
    problems: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            abs_path = Path(dirpath) / name
            rel = abs_path.relative_to(root).as_posix()
            if abs_path.is_symlink():
                problems.append(Problem(rel, "symlink not followed: raw files must be regular files "
                                             "inside the raw dir"))
                continue
            if not abs_path.is_file():
                problems.append(Problem(rel, "not a regular file"))
                continue
            if abs_path.suffix.lower() not in SUPPORTED_SUFFIXES:
                problems.append(Problem(rel, f"unsupported file type {abs_path.suffix or '(none)'!r}: "
                                             f"expected one of {', '.join(sorted(SUPPORTED_SUFFIXES))}"))
                continue
            entries.append(RawEntry(rel, abs_path, abs_path.stat().st_size))
    # os.walk dirnames ordering above keeps this stable; sort once more for clarity.
    entries.sort(key=lambda e: e.path)
    return entries, problems


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(entry: RawEntry, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes; refuses oversized files before reading them whole."""
    if entry.size > max_bytes:
        raise BadInput(f"file too large: {entry.size} bytes, limit is {max_bytes} (max_file_bytes setting)")
    # O_NOFOLLOW: a file swapped for a symlink after the scan is refused, not followed.
    fd = os.open(entry.abs_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadInput(f"file too large: over {max_bytes} bytes (max_file_bytes setting)")
    return data


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode_text(data: bytes) -> str:
    """Bytes -> text: BOM, then strict UTF-8, then charset detection; binary is refused."""
    if not data.strip():
        raise BadInput("empty file")
    text = _decode_bom(data)
    if text is None and (utf16 := _sniff_utf16(data)):
        try:
            text = data.decode(utf16)
        except UnicodeDecodeError:
            text = None
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _detect_and_decode(data)
    if _looks_binary(text):
        raise BadInput("binary content: not a text, HTML or JSON file")
    if _implausible(text):
        raise BadInput("undecodable: the bytes decode only to replacement or unassigned characters")
    return text


def _decode_bom(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise BadInput(f"undecodable: starts with a {encoding} byte-order mark but {exc.reason}") from exc
    return None


# A cheap pre-check before ftfy's own (slower) test: a lead character of UTF-8 read as
# Latin-1/cp1252 ("Ã", "â") or cp1251 ("Р", "С") followed by what a continuation byte becomes.
_MOJIBAKE_HINT_RE = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
    "|[\u0420\u0421][\u00a0-\u00bf\u0401-\u040f\u0451-\u045f\u0490\u0491\u2013\u2014\u2018-\u201e"
    "\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2116\u2122]"
)


def repair_mojibake(text: str) -> str:
    """UTF-8 that was once decoded as Latin-1/Windows-125x ("CafÃ©", "â€™") repaired; text
    without such sequences is returned unchanged."""
    if not text or text.isascii() or not _MOJIBAKE_HINT_RE.search(text) or not is_bad(text):
        return text
    return ftfy.fix_text(text, _MOJIBAKE_FIX)


def _sniff_utf16(data: bytes) -> str | None:
    """UTF-16 without BOM: one byte of each pair takes few values (0x00 for spaces and ASCII,
    0x04 for Cyrillic, 0x06 for Arabic, ...), the other many."""
    sample = data[:4096]
    if len(sample) < 4 or len(data) % 2 or b"\x00" not in sample:  # spaces are 0x20 0x00: NULs abound
        return None
    for encoding, high, low in (("utf-16-le", sample[1::2], sample[0::2]), ("utf-16-be", sample[0::2], sample[1::2])):
        top = Counter(high).most_common(2)
        covered = sum(count for _, count in top) / len(high)
        if covered >= 0.95 and 0 in dict(top) and low.count(0) / len(low) < 0.05:
            return encoding
    return None


_SUSPECT_RE = re.compile("[\ufffd\ue000-\uf8ff\ud800-\udfff\U000f0000-\U0010ffff]")
_NON_ASCII_RE = re.compile("[^\x00-\x7f]")


def _implausible(text: str) -> bool:
    """Decoded text full of replacement marks, private-use or unassigned code points is not text."""
    sample = text[:8192]
    if not sample:
        return False
    odd = len(_SUSPECT_RE.findall(sample))
    if odd / len(sample) > 0.02:
        return True
    # Unassigned code points need a per-character lookup: only over the non-ASCII ones.
    odd += sum(1 for ch in _NON_ASCII_RE.findall(sample) if unicodedata.category(ch) == "Cn")
    return odd / len(sample) > 0.02


def _detect_and_decode(data: bytes) -> str:
    if _binary_bytes(data):
        raise BadInput("binary content: not a text, HTML or JSON file")
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise BadInput("undecodable: not UTF-8 and no text encoding fits")
    return str(best)


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\v")


def _binary_bytes(data: bytes) -> bool:
    """NUL or other control bytes in the opening (UTF-16 was already ruled out)."""
    sample = data[:8192]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return b"\x00" in sample or controls / len(sample) > 0.05


_CONTROL_CHARS_RE = re.compile("[\x00-\x08\x0e-\x1f]")


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    if not sample:
        return False
    controls = len(_CONTROL_CHARS_RE.findall(sample))
    return "\x00" in sample or controls / len(sample) > 0.05


def parse(entry: RawEntry, data: bytes) -> tuple[list[Document], list[Problem]]:
    """Decode and parse one raw file; raises ``BadInput`` when nothing in it is usable."""
    sha = sha256_bytes(data)
    text = decode_text(data)
    suffix = entry.abs_path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        documents, problems = [_html_document(entry.path, None, sha, text, {})], []
    elif suffix in JSON_SUFFIXES | JSONL_SUFFIXES:
        documents, problems = _json_documents(entry.path, sha, text, lines=suffix in JSONL_SUFFIXES)
    else:
        documents, problems = [Document(entry.path, None, sha, "text", text=text)], []
    for doc in documents:
        _repair_document(doc)
    return documents, problems


def _repair_document(doc: Document) -> None:
    """Mojibake repaired wherever the document carries text (body, blocks, stated fields)."""
    if doc.text is not None:
        doc.text = repair_mojibake(doc.text)
    if doc.blocks is not None:
        doc.blocks = [(kind, repair_mojibake(text)) for kind, text in doc.blocks]
    doc.meta = {key: repair_mojibake(value) for key, value in doc.meta.items()}


def _html_document(path: str, item: int | None, sha: str, markup: str, meta: dict[str, str]) -> Document:
    if html_extract.looks_like_full_page(markup):
        article = html_extract.extract_article(markup, meta.get("url"))
        page_meta = dict(article.meta)
        page_meta.update(meta)  # fields stated by a JSON export win over the page's own
        return Document(path, item, sha, "html" if item is None else "json", blocks=article.blocks, meta=page_meta)
    return Document(path, item, sha, "html" if item is None else "json",
                    blocks=html_extract.fragment_blocks(markup), meta=dict(meta))


_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _clean_json(value: Any) -> Any:
    """JSON that Python parses but UTF-8 and strict JSON cannot hold: an escaped lone
    surrogate ("\\ud800") becomes U+FFFD, NaN and Infinity become null."""
    if isinstance(value, str):
        return _LONE_SURROGATE_RE.sub("\ufffd", value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    if isinstance(value, dict):
        return {_clean_json(k): _clean_json(v) for k, v in value.items()}
    return value


def _loads(text: str) -> Any:
    """json.loads with the failures of hostile input (nesting, huge numbers) as BadInput."""
    try:
        return _clean_json(json.loads(text))
    except RecursionError as exc:
        raise BadInput("malformed JSON: nested too deeply") from exc
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise BadInput(f"malformed JSON: {str(exc)[:200]}") from exc


def _iter_json_objects(text: str, lines: bool) -> Iterator[tuple[int, Any, str | None]]:
    """(item, object, error) for each article object of a JSON or JSON Lines file."""
    if lines:
        yield from _iter_json_lines(text)
        return
    try:
        value = _loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _is_json_lines(text):
            yield from _iter_json_lines(text)  # a JSON Lines export saved as .json
            return
        raise BadInput(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if isinstance(value, dict):
        for key in ("articles", "items", "data", "results", "entries", "posts"):
            if isinstance(value.get(key), list):
                value = value[key]
                break
    objects = value if isinstance(value, list) else [value]
    for item, obj in enumerate(objects):
        yield item, obj, None


def _iter_json_lines(text: str) -> Iterator[tuple[int, Any, str | None]]:
    """Items count non-blank lines from 0; a bad line is reported and the others still read."""
    item = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield item, _loads(line), None
        except json.JSONDecodeError as exc:
            yield item, None, f"malformed JSON on line {lineno}, column {exc.colno}: {exc.msg}"
        except BadInput as exc:
            yield item, None, f"{exc} (line {lineno})"
        item += 1


def _is_json_lines(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _json_documents(path: str, sha: str, text: str, lines: bool) -> tuple[list[Document], list[Problem]]:
    documents: list[Document] = []
    problems: list[Problem] = []
    for item, obj, error in _iter_json_objects(text, lines):
        if error is None and not isinstance(obj, dict):
            error = f"expected a JSON object per article, found {type(obj).__name__}"
        if error is not None:
            problems.append(Problem(path, error, item, sha))
            continue
        try:
            documents.append(json_object_document(path, item, sha, obj))
        except BadInput as exc:
            problems.append(Problem(path, str(exc), item, sha))
    if not documents and not problems:
        raise BadInput("JSON holds no article objects")
    return documents, problems


def _stringify(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        for key in ("name", "title", "@value", "value"):
            if isinstance(value.get(key), str):
                return _stringify(value[key])
        return None
    if isinstance(value, list):
        parts = [p for p in (_stringify(v) for v in value) if p]
        return ", ".join(parts) or None
    return None


def _stated_fields(obj: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Metadata under its common names, and the keys it was taken from."""
    meta: dict[str, str] = {}
    used: set[str] = set()
    for name, keys in JSON_META_FIELDS.items():
        for key in keys:
            value = _stringify(obj.get(key))
            if value:
                meta[name] = value
                used.add(key)
                break
    return meta, used


def json_object_document(path: str, item: int, sha: str, obj: dict[str, Any]) -> Document:
    """One scraper object -> document, mapping the common field names.

    Fields that were not used (unknown names, a second date field) are kept under ``extra``;
    alternative body fields are not, since they repeat the body."""
    meta, used = _stated_fields(obj)
    extra = {k: v for k, v in obj.items() if k not in used and k not in _BODY_KEYS}
    for key in JSON_HTML_FIELDS:
        markup = obj.get(key)
        if isinstance(markup, str) and markup.strip():
            doc = _html_document(path, item, sha, markup, meta)
            doc.extra = extra
            if doc.blocks:
                return doc
    for key in JSON_TEXT_FIELDS:
        body = obj.get(key)
        if isinstance(body, str) and body.strip():
            if _MARKUP_RE.search(body):
                doc = _html_document(path, item, sha, body, meta)
                doc.extra = extra
                return doc
            return Document(path, item, sha, "json", text=body, meta=meta, extra=extra)
    raise BadInput("object holds no article text (none of: " + ", ".join(JSON_TEXT_FIELDS + JSON_HTML_FIELDS) + ")")
