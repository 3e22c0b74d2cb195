"""Stage 2: document -> normalised paragraphs, with page furniture set apart.

Furniture (date headers, bylines, datelines, "READ MORE" links, comment trailers, a
title repeated under itself) is not body text. It is kept, with the fields it states,
so that the metadata stage can read them; it never reaches dedup or the record body.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from pipeline.read import Document

# Month names as agencies write them: English (with the short forms "Sept."), and the
# Russian (genitive), Turkish and Azerbaijani names of the region's agencies.
MONTHS_FOREIGN = {
    "января": 1, "февраля": 2, "марта": 3, "апреля": 4, "мая": 5, "июня": 6, "июля": 7, "августа": 8,
    "сентября": 9, "октября": 10, "ноября": 11, "декабря": 12,
    "ocak": 1, "şubat": 2, "mart": 3, "nisan": 4, "mayıs": 5, "haziran": 6, "temmuz": 7, "ağustos": 8,
    "eylül": 9, "ekim": 10, "kasım": 11, "aralık": 12,
    "yanvar": 1, "fevral": 2, "aprel": 4, "iyun": 6, "iyul": 7, "avqust": 8, "sentyabr": 9, "oktyabr": 10,
    "noyabr": 11, "dekabr": 12,
}
MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|(?i:"
          + "|".join(sorted(MONTHS_FOREIGN, key=len, reverse=True)) + "))")
_DAY_MONTH_YEAR = rf"\d{{1,2}}\s+{MONTHS}\.?,?\s+\d{{4}}"
_MONTH_DAY_YEAR = rf"{MONTHS}\.?\s+\d{{1,2}},?\s+\d{{4}}"
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_ANY_DATE = rf"(?:{_DAY_MONTH_YEAR}|{_MONTH_DAY_YEAR}|{_ISO_DATE})"
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?[Mm]\.?)?"
_TZ = r"\(?(?:UTC|GMT)\s*[+\-−]\s*\d{1,2}(?::?\d{2})?\)?|\(?(?:UTC|GMT)\)?|[+-]\d{2}:\d{2}"

# " date 2020-09-28 <rest>": the header line some scrapers prepend.
DATE_HEADER_RE = re.compile(rf"^date\s+(?P<date>{_ISO_DATE})(?:[ T](?P<time>{_TIME}))?\s*(?P<rest>.*)$", re.IGNORECASE)
# "<who or section> 10 October 2020 15:09 (UTC+04:00)"
STAMPED_LINE_RE = re.compile(
    rf"^(?P<prefix>(?:[A-Z][\w'’.-]*\s+){{0,6}}?)(?:on\s+)?(?P<date>{_ANY_DATE})"
    rf"(?:,?\s+(?:at\s+)?(?P<time>{_TIME}))?(?:\s*(?P<tz>{_TZ}))?$"
)
# "BAKU, Azerbaijan, Sept. 28" (agency dateline: the place leads in capitals).
DATELINE_RE = re.compile(
    rf"^(?P<place>[A-Z][A-Z'’.-]+(?:\s[A-Z][A-Z'’.-]+)*(?:,\s[A-Z][\w'’.-]+(?:\s[A-Z][\w'’.-]+)*)?)"
    rf"(?:,\s*(?P<monthday>{MONTHS}\.?\s+\d{{1,2}}))?(?:\s*\((?P<agency>[A-Z][\w&.-]+(?:\s[A-Z][\w&.-]+){{0,2}})\))?$"
)
# "LONDON (Reuters) - ...", "BAKU, Azerbaijan, Oct. 10 (Trend) — ...", "VELMORA, March 6 - ..." opening
# the first paragraph: the place in capitals, then an agency in brackets or a month and day (or both).
INLINE_DATELINE_RE = re.compile(
    rf"^(?P<place>[A-Z][A-Z'’.-]{{2,}}(?:\s[A-Z][A-Z'’.-]+)*(?:,\s[A-Z][\w'’.-]+(?:\s[A-Z][\w'’.-]+)*)?)"
    rf"(?:,\s*(?P<monthday>{MONTHS}\.?\s+\d{{1,2}})(?:,?\s+(?P<year>\d{{4}}))?)?"
    rf"(?:\s*\((?P<agency>[A-Z][\w&.-]+(?:\s[A-Z][\w&.-]+){{0,2}})\))?\s*[-–—:]\s+"
)
# "By Jane Doe, 5 March 2024" (a Markdown byline in emphasis, once stripped): a name, then the date.
BY_DATED_LINE_RE = re.compile(
    rf"^By\s+(?P<who>[A-Z][\w'’.-]*(?:(?:\s+|\s+and\s+)[A-Z][\w'’.-]*){{0,5}})\s*[,|–—-]\s*(?:on\s+)?"
    rf"(?P<date>{_ANY_DATE})(?:,?\s+(?:at\s+)?(?P<time>{_TIME}))?(?:\s*(?P<tz>{_TZ}))?$"
)
BY_LINE_RE = re.compile(r"^By\s+(?P<who>[A-Z][\w'’.-]*(?:(?:\s+|\s*,\s*|\s+and\s+)[A-Z][\w'’.-]*){0,7})$")
CREDIT_LINE_RE = re.compile(r"^(?P<outlet>[A-Z][\w&.-]*(?:\s[A-Z][\w&.-]*){0,2}):$")
LINK_LINE_RE = re.compile(
    r"^(?:READ MORE|Read more|Read More|ALSO READ|Also read|Also Read|RELATED|Related|See also|SEE ALSO|"
    r"More on this|Recommended|WATCH|Watch|"
    # the same links in the languages of the region's and Europe's outlets
    r"(?i:lesen sie (?:auch|mehr)|mehr zum thema|lire aussi(?: sur [\w.]+)?|à lire aussi|"
    r"también puede leer|lea también|leia também|leggi anche|"
    r"читайте также|читать также|смотрите также|ayrıca (?:okuyun|bakınız)|ilgili haber|"
    r"həmçinin oxuyun|daha çox oxu|اقرأ أيضا|اقرأ أيضاً))\s*[:>|»-]+\s*\S.*$"
)
# Short lines that are page furniture in any position: credits, reading times, copyright,
# share prompts; only whole short lines, never a sentence of the body that mentions them.
FURNITURE_LINE_RE = re.compile(
    r"^(?:(?:estimated )?reading time:? .{1,30}|tempo de leitura:? .{1,30}|lesezeit:? .{1,30}|"
    r"temps de lecture:? .{1,30}|\d{1,2} min(?:ute)?s? read|"
    r"(?:main |lead )?(?:image|photo|picture|foto|bild|photos) ?(?:credit|crédit|crédits)s?\s*:.{1,80}|"
    r"crédits? photos?\s*:.{1,80}|(?:©|\(c\)|copyright)\s*\D{0,40}\d{4}.{0,60}|all rights reserved\.?|"
    r"like this story\?.{0,60}|originally published (?:on|in|at) .{1,60}|"
    r"follow (?:us|\w+ \w+) on (?:twitter|facebook|instagram|telegram).{0,60})$",
    re.IGNORECASE,
)
TRAILER_RE = re.compile(
    r"^(?:Discussion about this post|Comments?|\d+ Comments?|Leave a (?:comment|reply)|Share this(?: article| post)?:?|"
    r"Share on (?:Facebook|Twitter|X|LinkedIn|WhatsApp)|Advertisement|ADVERTISEMENT|Sponsored|"
    r"Related (?:posts|articles|news)|"
    r"Follow us on [\w ,&]{1,40}|Subscribe to [\w ]{1,40}|Sign up for [\w ]{1,40}|Tags?:.{0,200}|"
    r"Print|Email|Back to top|Load more|Click here to [\w ]{1,40})\.?$",
    re.IGNORECASE,
)
# Lone "X:" lines that are labels, not agency credits.
_NOT_CREDITS = {"note", "update", "updated", "photo", "video", "source", "sources", "related", "editor's note",
                "advertisement", "watch", "listen", "read more", "comments", "tags", "summary", "background"}
# Words that name a section in bylines like "Orkhan Jalilov Feature 27 September 2020".
SECTIONS = {
    "analysis", "arts", "business", "commentary", "culture", "economy", "editorial", "education", "energy",
    "entertainment", "environment", "feature", "features", "finance", "health", "interview", "lifestyle", "local",
    "markets", "media", "military", "national", "news", "opinion", "politics", "region", "regions", "science",
    "society", "sport", "sports", "technology", "tech", "travel", "world", "nation", "security", "diplomacy",
}
_SENTENCE_END = tuple('.!?…:;,"”’\')»')
# Runs of two or more spaces of any kind, or one odd space: a lone plain space is left alone,
# which keeps the substitution cheap on ordinary text.
_ODD_SPACES = r"\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_SPACE_RE = re.compile(rf"[ {_ODD_SPACES}]{{2,}}|[{_ODD_SPACES}]")
_ZERO_WIDTH_RE = re.compile(r"[\u200b\u2060\ufeff]")
_HEADER_BLOCKS = 6  # furniture like bylines only counts near the top


@dataclass
class Paragraph:
    kind: str  # "body" | "heading"
    text: str


@dataclass
class Furniture:
    """A line that is page furniture, with what it states (raw strings)."""

    role: str  # date_header | byline | stamp | dateline | credit | title | title_repeat | link | trailer
    text: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class CleanDocument:
    paragraphs: list[Paragraph]
    furniture: list[Furniture]


# Control characters other than tab and line breaks: never text (NUL breaks PostgreSQL jsonb,
# others break XML); dropped.
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f]")


def normalize(text: str) -> str:
    """NFC, odd spaces to plain spaces, zero-width marks and control characters dropped,
    whitespace collapsed per line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL_RE.search(text):
        text = _CONTROL_RE.sub("", text)
    if text.isascii():  # the common case: no odd spaces or zero-width marks possible, NFC already
        if "  " in text or "\t" in text:
            text = _SPACE_RE.sub(" ", text)
    else:
        text = unicodedata.normalize("NFC", text)
        text = _SPACE_RE.sub(" ", _ZERO_WIDTH_RE.sub("", text))  # _SPACE_RE spares newlines
    return "\n".join(line.strip() for line in text.split("\n"))


def split_blocks(text: str) -> list[list[str]]:
    """Paragraphs as lists of lines: blocks between blank lines, or single lines when
    the text has no blank lines at all (one paragraph per line)."""
    lines = normalize(text).strip("\n").split("\n")
    if "" not in lines:
        return [[line] for line in lines if line]
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _is_heading(line: str) -> bool:
    words = line.split()
    return (
        0 < len(words) <= 10
        and not line.endswith(_SENTENCE_END)
        and (line[0].isupper() or line[0].isdigit())
    )


def _classify_stamp(line: str) -> Furniture | None:
    m = STAMPED_LINE_RE.match(line)
    if not m:
        return None
    fields = {"date": m["date"]}
    if m["time"]:
        fields["time"] = m["time"]
    if m["tz"]:
        fields["tz"] = m["tz"]
    prefix = m["prefix"].split()
    if prefix and prefix[-1].lower() in SECTIONS:
        fields["section"] = prefix.pop()
    if prefix:
        if prefix[0] == "By":
            prefix = prefix[1:]
        if 2 <= len(prefix) <= 4 and all(w[0].isupper() for w in prefix):
            fields["author"] = " ".join(prefix)
        else:
            return None  # words before the date that name neither a section nor a person
    return Furniture("byline" if "author" in fields else "stamp", line, fields)


# "Published: 12 April 2022 09:15 GMT", "Author: Alex Brown", "Автор: ...": labelled header fields.
LABELLED_DATE_RE = re.compile(
    r"^(?P<label>published|posted|date|dated|publication date|first published|опубликовано|дата|"
    r"yayınlanma(?: tarihi)?|yayın tarihi|tarix|updated|last updated|modified|обновлено|güncellenme(?: tarihi)?)"
    r"(?: on| at)?\s*[:|-]?\s*(?P<value>\S.{4,60})$",
    re.IGNORECASE,
)
LABELLED_AUTHOR_RE = re.compile(
    r"^(?:author|authors|written by|words by|автор|авторы|yazar|müəllif)\s*[:|-]\s*"
    r"(?P<who>[^\W\d_][\w'’.-]*(?:(?:\s+|\s*,\s*|\s+and\s+|\s+и\s+|\s+ve\s+)[^\W\d_][\w'’.-]*){0,7})$",
    re.IGNORECASE,
)
_UPDATED_LABELS = ("updated", "last updated", "modified", "обновлено", "güncellenme", "güncellenme tarihi")


def _classify_labelled(line: str) -> Furniture | None:
    if m := LABELLED_AUTHOR_RE.match(line):
        return Furniture("byline", line, {"author": m["who"]})
    if (m := LABELLED_DATE_RE.match(line)) and re.search(r"\d", m["value"]):
        if m["label"].casefold() in _UPDATED_LABELS:
            return Furniture("updated", line)  # when it changed, not when it was published
        return Furniture("published", line, {"value": m["value"].strip()})
    return None


def _classify_header_line(line: str, title: str | None) -> Furniture | None:
    if title and line.casefold() == title.casefold():
        return Furniture("title_repeat", line)
    if labelled := _classify_labelled(line):
        return labelled
    if m := DATELINE_RE.match(line):
        if m["monthday"] or m["agency"] or line.split(",")[0].isupper():
            if len(line.split()) <= 8 and (m["monthday"] or m["agency"] or "," in line):
                fields = {"place": m["place"]}
                if m["monthday"]:
                    fields["monthday"] = m["monthday"]
                if m["agency"]:
                    fields["outlet"] = m["agency"]
                return Furniture("dateline", line, fields)
    if m := BY_LINE_RE.match(line):
        return Furniture("byline", line, {"by": m["who"]})
    if m := BY_DATED_LINE_RE.match(line):
        fields = {k: v for k, v in m.groupdict().items() if v and k != "who"}
        return Furniture("byline", line, {**fields, "by": m["who"]})
    if stamp := _classify_stamp(line):
        return stamp
    if (m := CREDIT_LINE_RE.match(line)) and m["outlet"].casefold() not in _NOT_CREDITS:
        return Furniture("credit", line, {"outlet": m["outlet"]})
    return None


# "МОСКВА, 5 декабря 2020 года." / "BAKU, 5 December 2020 -": a capitalised place in any
# script, then a full date, opening the first paragraph.
_DATED_DATELINE_RE = re.compile(
    rf"^(?P<place>[^\W\d_][^\W\d_'’.-]+(?:[ -][^\W\d_][^\W\d_'’.-]+){{0,2}}),\s*"
    rf"(?P<date>\d{{1,2}}\s+{MONTHS}\.?\s+\d{{4}})(?:\s*(?:года|г\.|yılı|il))?\s*[.,:—–-]\s"
)


def _inline_dateline(text: str) -> tuple[Furniture, int] | None:
    """The dateline opening a first paragraph, and where the text after it starts."""
    m = INLINE_DATELINE_RE.match(text)
    if not m or not (m["agency"] or m["monthday"]):  # "BAKU - ..." alone could be any capitalised word
        return None
    fields = {"place": m["place"]}
    if m["agency"]:
        fields["outlet"] = m["agency"]
    if m["monthday"] and m["year"]:
        fields["date"] = f"{m['monthday']}, {m['year']}"
    elif m["monthday"]:
        fields["monthday"] = m["monthday"]
    return Furniture("dateline", m.group(0).strip(), fields), m.end()


def _dated_dateline(text: str) -> tuple[Furniture, int] | None:
    m = _DATED_DATELINE_RE.match(text)
    if not m or not m["place"].isupper():
        return None
    return Furniture("dateline", m.group(0).strip(), {"place": m["place"], "date": m["date"]}), m.end()


def _classify_anywhere(line: str) -> Furniture | None:
    if LINK_LINE_RE.match(line):
        return Furniture("link", line)
    if len(line) <= 120 and TRAILER_RE.match(line):
        return Furniture("trailer", line)
    if len(line) <= 140 and FURNITURE_LINE_RE.match(line):
        return Furniture("trailer", line)
    return None


def _date_header(first_line: str) -> tuple[Furniture, str] | None:
    m = DATE_HEADER_RE.match(first_line)
    if not m:
        return None
    fields = {"date": m["date"]}
    if m["time"]:
        fields["time"] = m["time"]
    return Furniture("date_header", first_line, fields), m["rest"].strip()


def _looks_like_title(block: list[str], blocks: list[list[str]]) -> bool:
    # A title line may share its block with header lines (a byline, a date) under it.
    if len(block) != 1 and not all(_classify_header_line(line, None) for line in block[1:]):
        return False
    line = block[0]
    words = line.split()
    if not 2 <= len(words) <= 30 or line.endswith((".", "!", ";", ",", ":")):
        return False
    # A heading-like first line followed by more text is the title the text states.
    return len(blocks) > 1 or len(block) > 1


def clean_document(doc: Document) -> CleanDocument:
    """Paragraphs and furniture of one document."""
    furniture: list[Furniture] = []
    if doc.blocks is not None:
        # Blocks left empty by normalising (a zero-width space, a lone control character) are no paragraph.
        normalized = [(kind, normalize(text).replace("\n", " ").strip()) for kind, text in doc.blocks]
        kept_blocks = [(kind, text) for kind, text in normalized if text]
        blocks = [[text] for _, text in kept_blocks]
        kinds = [kind for kind, _ in kept_blocks]
    else:
        blocks = split_blocks(doc.text or "")
        kinds = ["" for _ in blocks]
    title = doc.meta.get("title")

    # The scraper's " date YYYY-MM-DD <rest>" header: the rest is a dateline, a byline or the title.
    if blocks and doc.blocks is None and (hit := _date_header(blocks[0][0])):
        header, rest = hit
        furniture.append(header)
        blocks[0] = blocks[0][1:]
        if rest:
            if (found := _classify_header_line(rest, title)) is not None:
                furniture.append(found)
            else:
                furniture.append(Furniture("title", rest, {"title": rest}))
                title = title or rest
        if not blocks[0]:
            blocks.pop(0)
            kinds.pop(0)
    elif (blocks and doc.blocks is None and not title and _looks_like_title(blocks[0], blocks)
          and _classify_header_line(blocks[0][0], None) is None):  # a dateline or byline is not a title
        title = blocks[0][0]
        furniture.append(Furniture("title", title, {"title": title}))
        blocks[0] = blocks[0][1:]  # header lines under it are read with the other header lines
        if not blocks[0]:
            blocks.pop(0)
            kinds.pop(0)

    paragraphs: list[Paragraph] = []
    for position, (block, preset_kind) in enumerate(zip(blocks, kinds, strict=True)):
        kept: list[str] = []
        in_header = position < _HEADER_BLOCKS and not any(p.kind == "body" for p in paragraphs)
        for line in block:
            found = _classify_anywhere(line)
            if found is None and in_header and not kept:
                found = _classify_header_line(line, title)
            if found is not None:
                furniture.append(found)
            else:
                kept.append(line)
        if not kept:
            continue
        text = " ".join(kept)
        if not paragraphs and (found_dateline := _inline_dateline(text) or _dated_dateline(text)):
            # The dateline is furniture: the paragraph starts after it.
            dateline, end = found_dateline
            furniture.append(dateline)
            text = text[end:].lstrip(" -–—:.,")
            if not text:
                continue
        kind = preset_kind or ("heading" if len(kept) == 1 and _is_heading(text) else "body")
        paragraphs.append(Paragraph(kind, text))

    # A heading with no body after it is a trailer, not a sub-heading.
    while paragraphs and paragraphs[-1].kind == "heading" and doc.blocks is None:
        furniture.append(Furniture("trailer", paragraphs.pop().text))
    return CleanDocument(paragraphs, furniture)
