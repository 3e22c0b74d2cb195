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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
}
_KNOWN_JSON_KEYS = {k for keys in JSON_META_FIELDS.values() for k in keys} | set(JSON_TEXT_FIELDS) | set(JSON_HTML_FIELDS)
_MARKUP_RE = re.compile(r"<(p|br|div|h[1-6]|li|blockquote|span|a|strong|em)\b[^>]*>", re.IGNORECASE)


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
                problems.append(Problem(rel, "symlink not followed: raw files must be regular files inside the raw dir"))
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
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise BadInput(f"undecodable: starts with a {encoding} byte-order mark but {exc.reason}") from exc
    utf16 = _sniff_utf16(data)
    if utf16:
        try:
            return data.decode(utf16)
        except UnicodeDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = _detect_and_decode(data)
    if _looks_binary(text):
        raise BadInput("binary content: not a text, HTML or JSON file")
    return text


def _sniff_utf16(data: bytes) -> str | None:
    # UTF-16 without BOM: every other byte is NUL in ASCII-heavy text.
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even_nul = sample[0::2].count(0) / len(sample[0::2])
    odd_nul = sample[1::2].count(0) / len(sample[1::2])
    if odd_nul > 0.4 and even_nul < 0.05:
        return "utf-16-le"
    if even_nul > 0.4 and odd_nul < 0.05:
        return "utf-16-be"
    return None


def _detect_and_decode(data: bytes) -> str:
    if data.count(0) > max(1, len(data) // 100):
        raise BadInput("binary content: not a text, HTML or JSON file")
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise BadInput("undecodable: not UTF-8 and no text encoding fits")
    return str(best)


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    if not sample:
        return False
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    return "\x00" in sample or controls / len(sample) > 0.05


def parse(entry: RawEntry, data: bytes) -> tuple[list[Document], list[Problem]]:
    """Decode and parse one raw file; raises ``BadInput`` when nothing in it is usable."""
    sha = sha256_bytes(data)
    text = decode_text(data)
    suffix = entry.abs_path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        return [_html_document(entry.path, None, sha, text, {})], []
    if suffix in JSON_SUFFIXES | JSONL_SUFFIXES:
        return _json_documents(entry.path, sha, text, lines=suffix in JSONL_SUFFIXES)
    return [Document(entry.path, None, sha, "text", text=text)], []


def _html_document(path: str, item: int | None, sha: str, markup: str, meta: dict[str, str]) -> Document:
    if html_extract.looks_like_full_page(markup):
        article = html_extract.extract_article(markup, meta.get("url"))
        page_meta = dict(article.meta)
        page_meta.update(meta)  # fields stated by a JSON export win over the page's own
        return Document(path, item, sha, "html" if item is None else "json", blocks=article.blocks, meta=page_meta)
    return Document(path, item, sha, "html" if item is None else "json",
                    blocks=html_extract.fragment_blocks(markup), meta=dict(meta))


def _iter_json_objects(text: str, lines: bool) -> Iterator[tuple[int, Any, str | None]]:
    """(item, object, error) for each article object of a JSON or JSON Lines file."""
    if lines:
        item = 0
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                yield item, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield item, None, f"malformed JSON on this line: {exc.msg} at column {exc.colno}"
            item += 1
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if isinstance(value, dict):
        for key in ("articles", "items", "data", "results", "entries", "posts"):
            if isinstance(value.get(key), list):
                value = value[key]
                break
    objects = value if isinstance(value, list) else [value]
    for item, obj in enumerate(objects):
        yield item, obj, None


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


def json_object_document(path: str, item: int, sha: str, obj: dict[str, Any]) -> Document:
    """One scraper object -> document, mapping the common field names."""
    meta: dict[str, str] = {}
    for name, keys in JSON_META_FIELDS.items():
        for key in keys:
            value = _stringify(obj.get(key))
            if value:
                meta[name] = value
                break
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_JSON_KEYS}
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
