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

TEXT_SUFFIXES = {".txt", ".text"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | JSON_SUFFIXES | JSONL_SUFFIXES

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
# An item's own identifier, first present wins; then its url (JSON_META_FIELDS["url"]).
JSON_ID_FIELDS = ("id", "guid", "uuid", "_id", "article_id", "item_id", "doc_id", "@id")
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
    mtime_ns: int | None = None  # as the scan found it (None: not known, stat the file)

    def modified_ns(self) -> int:
        return self.mtime_ns if self.mtime_ns is not None else self.abs_path.stat().st_mtime_ns


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
    key: str | None = None  # names a JSON item inside its file whatever its position (item_key)


def scan_raw(raw_dir: Path) -> tuple[list[RawEntry], list[Problem]]:
    """Every regular file under ``raw_dir``, sorted by path, and a ``Problem`` for each thing
    found there that is not read.

    - Hidden names (a leading ".": ``.gitkeep``, editor swap files, a scraper's partial
      download, ``.git/``) are skipped on purpose, files and directories alike, without a
      quarantine entry: they are temporary or tool files, never articles.
    - Symlinks are never followed (they could lead outside the raw dir): a symlink to a file
      or to a directory is reported, and so is a directory the run may not read.
    - A name that is not valid UTF-8 is reported under its escaped form (``caf\\xe9.txt``):
      paths are stored as UTF-8 in records, reports and the state database.
    - Other suffixes are reported.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise RawDirError(f"raw dir {raw_dir} does not exist or is not a directory")
    root = raw_dir.resolve()
    entries: list[RawEntry] = []
    problems: list[Problem] = []
    _walk(str(root), entries, problems)
    entries.sort(key=lambda e: e.path)
    return entries, problems


def printable_path(rel: str) -> str:
    """A path as it can be stored and shown: bytes that are not UTF-8 (which ``os`` hands over
    as lone surrogates) written as ``\\xNN``."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _walk(root: str, entries: list[RawEntry], problems: list[Problem]) -> None:
    stack = [(root, "")]  # a stack, not recursion: a hostile tree may nest thousands deep
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as listing:
                items = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if not prefix:
                raise RawDirError(f"raw dir {root} cannot be read: {exc.strerror or exc}") from exc
            problems.append(Problem(printable_path(prefix.rstrip("/")),
                                    f"unreadable directory: {exc.strerror or exc}; the files in it were not read "
                                    "(give the run read and search permission on it)"))
            continue
        subdirs = []
        for item in items:
            if item.name.startswith("."):
                continue  # hidden: skipped on purpose (see scan_raw)
            rel = prefix + item.name
            shown = printable_path(rel)
            try:
                if item.is_symlink():
                    to_dir = item.is_dir()  # follows the link, only to say what it points to
                    problems.append(Problem(shown, "symlink not followed: raw files must be regular files inside the "
                                                   "raw dir" + (" (this one points to a directory, whose files were "
                                                                "not read)" if to_dir else "")))
                    continue
                if item.is_dir(follow_symlinks=False):
                    subdirs.append((item.path, rel + "/"))
                    continue
                if not item.is_file(follow_symlinks=False):
                    problems.append(Problem(shown, "not a regular file"))
                    continue
                found = item.stat(follow_symlinks=False)  # one stat: a plan needs size and mtime
            except OSError as exc:
                problems.append(Problem(shown, f"unreadable: {exc.strerror or exc}"))
                continue
            if shown != rel:
                problems.append(Problem(shown, "file name is not valid UTF-8 (shown here with \\xNN escapes); paths "
                                               "are stored as UTF-8, so the file is not read: rename it to UTF-8 "
                                               "(e.g. `convmv -f latin1 -t utf-8`) and the next run reads it"))
                continue
            suffix = Path(item.name).suffix
            if suffix.lower() not in SUPPORTED_SUFFIXES:
                problems.append(Problem(rel, f"unsupported file type {suffix or '(none)'!r}: "
                                             f"expected one of {', '.join(sorted(SUPPORTED_SUFFIXES))}"))
                continue
            entries.append(RawEntry(rel, Path(item.path), found.st_size, found.st_mtime_ns))
        stack.extend(reversed(subdirs))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(entry: RawEntry, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes; refuses oversized files before reading them whole."""
    if entry.size > max_bytes:
        raise BadInput(f"file too large: {entry.size} bytes, limit is {max_bytes} (max_file_bytes setting)")
    # O_NOFOLLOW: a file swapped for a symlink after the scan is refused, not followed.
    fd = os.open(entry.abs_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        # read(n) allocates n bytes up front: ask for the scanned size (plus one byte, to see a
        # file that grew since), and only a grown file for more, up to the limit.
        data = fh.read(min(entry.size, max_bytes) + 1)
        if len(data) > entry.size:
            data += fh.read(max_bytes + 1 - len(data))
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
    """Bytes -> text: BOM, then UTF-8 (repairing a few stray bytes), then the single-byte code
    page whose letters fit a language; binary is refused. NUL characters are dropped."""
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
            text = _decode_not_utf8(data)
    if _looks_binary(text):
        raise BadInput("binary content: not a text, HTML or JSON file")
    if _implausible(text):
        raise BadInput("undecodable: the bytes decode only to replacement or unassigned characters")
    text = text.replace("\x00", "")
    if not _VISIBLE_RE.search(text):
        raise BadInput("empty file: nothing but spaces or invisible characters")
    return text


# A character that shows something: not a space of any kind, zero-width mark, BOM or NUL (a
# search stops at the first; removing every invisible run to test for emptiness copied the text).
_VISIBLE_RE = re.compile("[^\\s\x00\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]")


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


# --- bytes that are not UTF-8 ----------------------------------------------------------------

_ESCAPED_RE = re.compile("[\udc80-\udcff]")


def _cp1252_byte(exc: UnicodeError) -> tuple[str, int]:
    """Error handler: each byte that is not UTF-8 read as Windows-1252 (a stray "\\xe9" is é)."""
    assert isinstance(exc, UnicodeDecodeError)
    return exc.object[exc.start:exc.end].decode("cp1252", "replace"), exc.end


codecs.register_error("newsdedup-cp1252", _cp1252_byte)


def _utf8_counts(data: bytes) -> tuple[int, int]:
    """(valid multi-byte UTF-8 characters, bytes that are not UTF-8)."""
    text = data.decode("utf-8", "surrogateescape")
    invalid = len(_ESCAPED_RE.findall(text))
    non_ascii = len(text) - len(text.encode("ascii", "ignore").decode("ascii"))
    return non_ascii - invalid, invalid


def _mostly_utf8(data: bytes) -> bool:
    """UTF-8 with a few stray bytes (a pasted Windows-1252 word, a cut character): at least as
    many valid multi-byte characters as invalid bytes. Text in a single-byte code page almost
    never forms a valid multi-byte sequence (that needs a capital such as "Ã" followed by a
    symbol), so this does not mistake it for UTF-8."""
    valid, invalid = _utf8_counts(data)
    return valid > 0 and invalid <= valid


def _decode_not_utf8(data: bytes) -> str:
    if _mostly_utf8(data):
        return data.decode("utf-8", "newsdedup-cp1252")
    if _binary_bytes(data):
        raise BadInput("binary content: not a text, HTML or JSON file")
    encoding = _single_byte_encoding(data)
    if encoding is None:
        raise BadInput("undecodable: not UTF-8 and no text encoding fits")
    return data.decode(encoding)


# The letters beyond ASCII of languages written in the Latin script (lower case). A decoding
# whose letters all belong to one of these reads as a language; a wrong code page mixes
# letters of several ("ministčre": French è read as Czech č).
_LATIN_LANGUAGES = (
    "àâæçéèêëîïôœùûüÿ",  # French
    "äöüß",  # German
    "áéíóúñü",  # Spanish
    "áâãàçéêíóôõú",  # Portuguese
    "àèéìíîòóù",  # Italian
    "àçèéíïòóúü",  # Catalan
    "ëïéèöüáóú",  # Dutch
    "åæøäöéü",  # Danish, Norwegian, Swedish
    "áðéíóúýþæö",  # Icelandic
    "äöåšž",  # Finnish
    "áčďéěíňóřšťúůýž",  # Czech
    "áäčďéíĺľňóôŕšťúýž",  # Slovak
    "ąćęłńóśźż",  # Polish
    "áéíóöőúüű",  # Hungarian
    "ăâîșțşţ",  # Romanian
    "čćđšž",  # Croatian, Serbian (Latin), Bosnian, Slovene
    "çğıöşüâî",  # Turkish
    "ąčęėįšųūž",  # Lithuanian
    "āčēģīķļņšūž",  # Latvian
    "äõöüšž",  # Estonian
    "çë",  # Albanian
)
# Single-byte code pages tried for Latin-script text, Windows-1252 first: it wins ties.
_LATIN_CODE_PAGES = ("cp1252", "cp1250", "cp1254", "cp1257")
_SCORE_SAMPLE = 65536


def _script(ch: str) -> str:
    try:
        return unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return "?"


def _fit(text: str) -> float:
    """How well the characters beyond ASCII read as one language (1.0: all of them).

    Counted: letters, symbols inside words ("Wa³êsa"), C1 controls and U+FFFD. A letter of a
    non-Latin script fits its script as a whole (Cyrillic, Greek, CJK...)."""
    letters: Counter[str] = Counter()
    odd = 0
    for m in _NON_ASCII_RE.finditer(text):
        ch = m.group()
        if ch.isalpha():
            low = ch.lower()
            letters[low if len(low) == 1 else ch] += 1  # "İ".lower() is two characters
        elif ch == "\ufffd" or "\x80" <= ch <= "\x9f" or unicodedata.category(ch) == "Cn":
            odd += 1
        else:
            i = m.start()
            if 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha():
                odd += 1  # a symbol where a letter belongs
    total = sum(letters.values()) + odd
    if total == 0:
        return 1.0
    by_script: Counter[str] = Counter()
    for ch, count in letters.items():
        script = _script(ch)
        by_script["CJK" if script in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL") else script] += count
    best = max((count for script, count in by_script.items() if script != "LATIN"), default=0)
    for alphabet in _LATIN_LANGUAGES:
        best = max(best, sum(count for ch, count in letters.items() if ch in alphabet))
    return best / total


def _single_byte_encoding(data: bytes) -> str | None:
    """The encoding whose decoding reads best as one language: charset_normalizer's guess
    and the Latin-script Windows code pages, compared on their letters; Windows-1252 wins
    ties, then the guess."""
    from charset_normalizer import from_bytes

    guess = from_bytes(data).best()
    candidates = list(dict.fromkeys(
        [_LATIN_CODE_PAGES[0]] + ([guess.encoding] if guess is not None else []) + list(_LATIN_CODE_PAGES[1:])))
    sample = data[:_SCORE_SAMPLE]
    scored = []
    for rank, encoding in enumerate(candidates):
        try:
            data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        scored.append((_fit(sample.decode(encoding, "ignore")), -rank, encoding))
    return max(scored)[2] if scored else None


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\v")


def _binary_bytes(data: bytes) -> bool:
    """NUL or other control bytes make up much of the opening (UTF-16 was already ruled out).
    One stray NUL does not make a file binary: NUL characters are dropped from text."""
    sample = data[:8192]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    nuls = sample.count(0)
    return (nuls > 2 and nuls / len(sample) > 0.01) or controls / len(sample) > 0.05


_CONTROL_CHARS_RE = re.compile("[\x00-\x08\x0e-\x1f]")


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    if not sample:
        return False
    controls = len(_CONTROL_CHARS_RE.findall(sample))
    nuls = sample.count("\x00")
    return (nuls > 2 and nuls / len(sample) > 0.01) or controls / len(sample) > 0.05


def parse(entry: RawEntry, data: bytes) -> tuple[list[Document], list[Problem]]:
    """Decode and parse one raw file; raises ``BadInput`` when nothing in it is usable."""
    sha = sha256_bytes(data)
    suffix = entry.abs_path.suffix.lower()
    if suffix in JSONL_SUFFIXES:  # decoded line by line: one bad line costs only its item
        documents, problems = _json_documents(entry.path, sha, decode_json_lines(data), lines=True)
    else:
        text = decode_text(data)
        if suffix in HTML_SUFFIXES:
            documents, problems = [_html_document(entry.path, None, sha, text, {})], []
            if not _has_text(documents[0].blocks or []):
                raise BadInput("no article text: the HTML holds no visible text")
        elif suffix in JSON_SUFFIXES:
            documents, problems = _json_documents(entry.path, sha, text, lines=False)
        elif suffix in MARKDOWN_SUFFIXES:
            documents, problems = [markdown_document(entry.path, sha, text)], []
            if not _has_text(documents[0].blocks or []):
                raise BadInput("no article text: the Markdown holds no paragraphs")
        else:
            documents, problems = [Document(entry.path, None, sha, "text", text=text)], []
    for doc in documents:
        _repair_document(doc)
    return documents, problems


# YAML front matter some static-site exports open with: "---", "key: value" lines, "---".
_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\n(?P<body>(?:.*\n)*?)(?:---|\.\.\.)[ \t]*(?:\n|\Z)")


def markdown_document(path: str, sha: str, text: str) -> Document:
    """A Markdown article: a first ``# Title`` is the title it states, later headings are
    sub-headings, and paragraphs, list items and quotes are body text with their markup
    (emphasis, links, images, code marks) taken off. Front matter states fields like JSON does."""
    from markdown_it import MarkdownIt  # only for Markdown files

    meta: dict[str, str] = {}
    if front := _FRONT_MATTER_RE.match(text):
        fields = {}
        for line in front["body"].splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() and not key.startswith((" ", "\t", "#", "-")):
                fields[key.strip()] = value.strip().strip("'\"")
        meta, _ = _stated_fields(fields)
        text = text[front.end():]
    blocks: list[tuple[str, str]] = []
    tokens = MarkdownIt("commonmark").parse(text)
    for i, token in enumerate(tokens):
        if token.type == "fence" or token.type == "code_block":
            if token.content.strip():
                blocks.append(("body", " ".join(token.content.split())))
            continue
        if token.type != "inline":
            continue
        inline = _markdown_inline(token.children or [])
        if not inline:
            continue
        opener = tokens[i - 1] if i else None
        if opener is not None and opener.type == "heading_open":
            if opener.tag == "h1" and not blocks and "title" not in meta:
                meta["title"] = inline
            else:
                blocks.append(("heading", inline))
        else:
            blocks.append(("body", inline))
    return Document(path, None, sha, "text", blocks=blocks, meta=meta)


def _markdown_inline(children: list[Any]) -> str:
    """The text of an inline run: markup tokens dropped, images left out, line breaks as spaces."""
    parts = []
    for child in children:  # raw tags (html_inline) and images carry no words of the text
        if child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type in ("text", "code_inline"):
            parts.append(child.content)
    return " ".join("".join(parts).split())


def _has_text(blocks: list[tuple[str, str]]) -> bool:
    return any(_VISIBLE_RE.search(text) for _, text in blocks)


def decode_json_lines(data: bytes) -> Lines:
    """(line, error) for each line of a JSON Lines file, decoded line by line.

    A file that is UTF-8 except for some lines keeps its good lines: a line with a few stray
    bytes is repaired (read as Windows-1252), a line of binary or otherwise undecodable bytes
    gets an error, and costs only its own item. A file in a single-byte code page is read
    in the one that fits its (non-binary) lines."""
    if not data.strip():
        raise BadInput("empty file")
    if any(data.startswith(bom) for bom, _ in _BOMS) or _sniff_utf16(data):
        return [(line, None) for line in decode_text(data).splitlines()]
    try:
        return [(line.replace("\x00", ""), None) for line in data.decode("utf-8").splitlines()]
    except UnicodeDecodeError:
        pass
    raw_lines = data.split(b"\n")
    filled = [raw for raw in raw_lines if raw.strip()]
    failing = 0
    for raw in filled:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            failing += 1
    utf8 = _mostly_utf8(data) or failing * 2 < len(filled)
    encoding = None
    if not utf8:
        readable = [raw for raw in filled if not _binary_bytes(raw)]
        encoding = _single_byte_encoding(b"\n".join(readable)) if readable else None
    lines: Lines = []
    for lineno, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            lines.append(("", None))
            continue
        try:
            lines.append((_decode_line(raw, utf8, encoding).replace("\x00", ""), None))
        except BadInput as exc:
            lines.append(("", f"undecodable line {lineno}: {exc}"))
    return lines


def _decode_line(raw: bytes, utf8: bool, encoding: str | None) -> str:
    if utf8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        valid, invalid = _utf8_counts(raw)
        if _binary_bytes(raw) or invalid > max(valid, len(raw) * 0.05):
            raise BadInput("not UTF-8 like the rest of the file (nor UTF-8 with a few stray bytes)")
        text = raw.decode("utf-8", "newsdedup-cp1252")
    else:
        if _binary_bytes(raw) or encoding is None:
            raise BadInput("binary content, in no text encoding")
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise BadInput(f"not {encoding} like the rest of the file") from exc
    if _looks_binary(text) or _implausible(text):
        raise BadInput("binary or undecodable content")
    return text


def _repair_document(doc: Document) -> None:
    """Mojibake repaired and NUL characters dropped wherever the document carries text
    (body, blocks, stated fields)."""
    if doc.text is not None:
        doc.text = repair_mojibake(doc.text.replace("\x00", ""))
    if doc.blocks is not None:
        doc.blocks = [(kind, repair_mojibake(text.replace("\x00", ""))) for kind, text in doc.blocks]
    doc.meta = {key: repair_mojibake(value.replace("\x00", "")) for key, value in doc.meta.items()}


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
    surrogate ("\\ud800") becomes U+FFFD, NUL is dropped, NaN and Infinity become null."""
    if isinstance(value, str):  # NUL ("\\u0000") is dropped: no record text may hold it
        return _LONE_SURROGATE_RE.sub("\ufffd", value).replace("\x00", "")
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


Lines = list[tuple[str, str | None]]  # (line, error) per line of a JSON Lines file


def _iter_json_objects(source: str | Lines, lines: bool) -> Iterator[tuple[int | None, Any, str | None]]:
    """(item, object, error) for each article object of a JSON file (``source`` its text) or a
    JSON Lines file (``source`` its decoded lines, see ``decode_json_lines``); item None for a
    file that holds one object, not a list."""
    if lines or not isinstance(source, str):
        yield from _iter_json_lines(source if not isinstance(source, str) else [(s, None) for s in source.splitlines()])
        return
    text = source
    try:
        value = _loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _is_json_lines(text):
            yield from _iter_json_lines([(line, None) for line in text.splitlines()])  # JSON Lines saved as .json
            return
        raise BadInput(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if isinstance(value, dict):
        for key in ("articles", "items", "data", "results", "entries", "posts"):
            if isinstance(value.get(key), list):
                value = value[key]
                break
    if not isinstance(value, list):
        yield None, value, None  # one article in the file: named by the file, like a text file
        return
    for item, obj in enumerate(value):
        yield item, obj, None


def _iter_json_lines(lines: Lines) -> Iterator[tuple[int, Any, str | None]]:
    """Items count non-blank lines from 0; a bad line is reported and the others still read."""
    item = 0
    for lineno, (line, error) in enumerate(lines, 1):
        if error is not None:
            yield item, None, error
            item += 1
            continue
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


def _json_documents(path: str, sha: str, text: str | Lines, lines: bool) -> tuple[list[Document], list[Problem]]:
    documents: list[Document] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for position, obj, error in _iter_json_objects(text, lines):
        item = 0 if position is None else position
        if error is None and not isinstance(obj, dict):
            error = f"expected a JSON object per article, found {type(obj).__name__}"
        if error is not None:
            problems.append(Problem(path, error, item, sha))
            continue
        try:
            doc = json_object_document(path, item, sha, obj)
        except BadInput as exc:
            problems.append(Problem(path, str(exc), item, sha))
            continue
        if position is not None:
            key = item_key(obj)
            seen[key] = seen.get(key, 0) + 1
            doc.key = key if seen[key] == 1 else f"{key}#{seen[key]}"  # the same key twice: by occurrence
        documents.append(doc)
    if not documents and not problems:
        raise BadInput("JSON holds no article objects")
    return documents, problems


def item_key(obj: dict[str, Any]) -> str:
    """What names a JSON item inside its file, wherever it stands: its own id (``id``, ``guid``,
    ...), else its url, else a hash of its content (title and body fields, so a scraper's
    changing fetch time does not make it another item). Reordering a file changes no key."""
    for name in JSON_ID_FIELDS:
        value = obj.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return f"id:{str(value).strip()}"
    for name in JSON_META_FIELDS["url"]:
        if isinstance(obj.get(name), str) and obj[name].strip():
            return f"url:{obj[name].strip()}"
    content = {k: v for k, v in obj.items() if k in _BODY_KEYS or k in JSON_META_FIELDS["title"]}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8", "replace")
    return "content:" + hashlib.sha256(canonical).hexdigest()[:32]


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
    html_problem: BadInput | None = None
    for key in JSON_HTML_FIELDS:
        markup = obj.get(key)
        if isinstance(markup, str) and markup.strip():
            try:
                doc = _html_document(path, item, sha, markup, meta)
            except BadInput as exc:  # a script-only page: the object's text fields may still hold the article
                html_problem = exc
                continue
            doc.extra = extra
            if doc.blocks and _has_text(doc.blocks):
                return doc
    for key in JSON_TEXT_FIELDS:
        body = obj.get(key)
        if isinstance(body, str) and body.strip():
            if _MARKUP_RE.search(body):
                doc = _html_document(path, item, sha, body, meta)
                doc.extra = extra
                return doc
            return Document(path, item, sha, "json", text=body, meta=meta, extra=extra)
    if html_problem is not None:
        raise html_problem
    raise BadInput("object holds no article text (none of: " + ", ".join(JSON_TEXT_FIELDS + JSON_HTML_FIELDS) + ")")
