"""Stage 3: the metadata an article states, and nothing it does not.

Sources, best first: fields the container states (JSON fields, HTML meta tags), then the
furniture lines found by ``clean``. A value is only ever parsed from what is written:
no date from the clock, no year for "Sept. 28" unless the same article's dated header
gives it, no outlet from "told Reuters" inside the body.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from pipeline.clean import MONTHS, CleanDocument, Furniture
from pipeline.read import Document

_MONTH_NUMBERS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}
_DMY_RE = re.compile(rf"^(?P<d>\d{{1,2}})\s+(?P<m>{MONTHS})\.?,?\s+(?P<y>\d{{4}})$", re.IGNORECASE)
_MDY_RE = re.compile(rf"^(?P<m>{MONTHS})\.?\s+(?P<d>\d{{1,2}}),?\s+(?P<y>\d{{4}})$", re.IGNORECASE)
_MD_RE = re.compile(rf"^(?P<m>{MONTHS})\.?\s+(?P<d>\d{{1,2}})$", re.IGNORECASE)
_TIME_RE = re.compile(r"^(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?\s*(?P<ampm>[AaPp])?\.?[Mm]?\.?$")
_TZ_RE = re.compile(r"(?:UTC|GMT)?\s*(?P<sign>[+\-−])\s*(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?")
_EPOCH_RE = re.compile(r"^\d{10}(?:\.\d+)?$")

# Agencies and outlets that sign as "By <name>"; a one-word signature is an outlet too.
KNOWN_OUTLETS = {
    "trend", "reuters", "ap", "associated press", "afp", "agence france-presse", "tass", "ria novosti", "interfax",
    "anadolu agency", "anadolu", "aa", "xinhua", "bloomberg", "dpa", "efe", "ansa", "kyodo", "yonhap", "pti", "ani",
    "ians", "upi", "apa", "azertac", "report.az", "news.az", "bbc", "cnn", "al jazeera", "trt world",
}


@dataclass
class Metadata:
    title: str | None = None
    published: str | None = None  # "YYYY-MM-DD", or ISO datetime with the offset it states
    author: str | None = None
    outlet: str | None = None
    section: str | None = None
    dateline: str | None = None
    url: str | None = None
    language: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def _month(name: str) -> int:
    return _MONTH_NUMBERS[name[:3].lower()]


def _parse_tz(text: str | None) -> timezone | None:
    if not text:
        return None
    cleaned = text.strip("() ")
    if cleaned.upper() in {"UTC", "GMT", "Z"}:
        return timezone.utc
    m = _TZ_RE.search(cleaned)
    if not m:
        return None
    minutes = int(m["h"]) * 60 + int(m["m"] or 0)
    return timezone(timedelta(minutes=-minutes if m["sign"] in "-−" else minutes))


def _parse_time(text: str) -> tuple[int, int, int] | None:
    m = _TIME_RE.match(text.strip())
    if not m:
        return None
    hour = int(m["h"])
    if m["ampm"]:
        hour = hour % 12 + (12 if m["ampm"].lower() == "p" else 0)
    if hour > 23 or int(m["mi"]) > 59:
        return None
    return hour, int(m["mi"]), int(m["s"] or 0)


def parse_date(text: str) -> date | None:
    """A full date as written (ISO, "27 September 2020", "Sept. 28, 2020"); None otherwise."""
    text = text.strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    for regex in (_DMY_RE, _MDY_RE):
        if m := regex.match(text):
            try:
                return date(int(m["y"]), _month(m["m"]), int(m["d"]))
            except ValueError:
                return None
    return None


def format_published(day: date, time: tuple[int, int, int] | None = None, tz: timezone | None = None) -> str:
    """A date-only value stays a date; a time keeps its offset (or none, if none was stated)."""
    if time is None:
        return day.isoformat()
    return datetime(day.year, day.month, day.day, *time, tzinfo=tz).isoformat()


def parse_published(text: str) -> str | None:
    """A stated publication time in any common machine or agency format, normalised."""
    text = text.strip()
    if not text:
        return None
    if _EPOCH_RE.match(text):
        return datetime.fromtimestamp(float(text), tz=timezone.utc).isoformat()
    iso = text.replace("Z", "+00:00") if re.match(r"^\d{4}-\d{2}-\d{2}T", text) else text
    if re.match(r"^\d{4}-\d{2}-\d{2}$", iso):
        day = parse_date(iso)
        return day.isoformat() if day else None
    if re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", iso):
        try:
            return datetime.fromisoformat(iso).isoformat()
        except ValueError:
            pass
    try:
        return parsedate_to_datetime(text).isoformat()  # RSS pubDate (RFC 2822)
    except (TypeError, ValueError, IndexError):
        pass
    day = parse_date(text)
    if day:
        return day.isoformat()
    # "10 October 2020 15:09 (UTC+04:00)" and similar: date, then time, then zone.
    m = re.match(rf"^(?P<date>.+?\d{{4}}),?\s+(?:at\s+)?(?P<time>\d{{1,2}}:\d{{2}}(?::\d{{2}})?(?:\s*[AaPp]\.?[Mm]\.?)?)\s*(?P<tz>.*)$", text)
    if m and (day := parse_date(m["date"])) and (clock := _parse_time(m["time"])):
        return format_published(day, clock, _parse_tz(m["tz"]))
    return None


def _published_from_furniture(furniture: list[Furniture]) -> str | None:
    header_day: date | None = None
    for item in furniture:
        if item.role == "date_header":
            header_day = parse_date(item.fields["date"])
    # A stamp with a time is the most precise statement in the text.
    for item in furniture:
        if item.role in {"stamp", "byline"} and "date" in item.fields:
            day = parse_date(item.fields["date"])
            if day is None:
                continue
            clock = _parse_time(item.fields["time"]) if "time" in item.fields else None
            return format_published(day, clock, _parse_tz(item.fields.get("tz")) if clock else None)
    if header_day:
        return header_day.isoformat()
    return None


def _normalise_language(value: str | None) -> str | None:
    if not value:
        return None
    code = re.split(r"[-_]", value.strip().lower())[0]
    return code if re.fullmatch(r"[a-z]{2,3}", code) else None


def _who_is_outlet(who: str) -> bool:
    return who.casefold() in KNOWN_OUTLETS or (len(who.split()) == 1 and "," not in who)


def extract_metadata(doc: Document, cleaned: CleanDocument) -> Metadata:
    """What the container and the text state about one article."""
    meta = Metadata()
    stated = doc.meta
    meta.title = stated.get("title")
    meta.url = stated.get("url")
    meta.author = stated.get("author")
    meta.outlet = stated.get("outlet")
    meta.section = stated.get("section")
    meta.language = _normalise_language(stated.get("language"))
    if stated.get("published"):
        meta.published = parse_published(stated["published"])

    furniture = cleaned.furniture
    for item in furniture:
        f = item.fields
        if item.role == "title" and not meta.title:
            meta.title = f["title"]
        elif item.role in {"stamp", "byline"}:
            if "section" in f and not meta.section:
                meta.section = f["section"]
            if "author" in f and not meta.author:
                meta.author = f["author"]
            if "by" in f:
                if _who_is_outlet(f["by"]):
                    meta.outlet = meta.outlet or f["by"]
                else:
                    meta.author = meta.author or f["by"]
        elif item.role == "dateline":
            meta.dateline = meta.dateline or f["place"]
            if "outlet" in f:
                meta.outlet = meta.outlet or f["outlet"]
        elif item.role == "credit":
            meta.outlet = meta.outlet or f["outlet"]

    if meta.published is None:
        meta.published = _published_from_furniture(furniture)
    if meta.published is None:
        meta.published = _published_from_dateline(furniture)
    if meta.language is None:
        meta.language = detect_language(" ".join(p.text for p in cleaned.paragraphs))
    return meta


def _published_from_dateline(furniture: list[Furniture]) -> str | None:
    """"Sept. 28" takes its year only from a dated header of the same article."""
    header_year = None
    for item in furniture:
        if item.role == "date_header" and (day := parse_date(item.fields["date"])):
            header_year = day.year
    if header_year is None:
        return None
    for item in furniture:
        if item.role == "dateline" and "monthday" in item.fields and (m := _MD_RE.match(item.fields["monthday"])):
            try:
                return date(header_year, _month(m["m"]), int(m["d"])).isoformat()
            except ValueError:
                return None
    return None


# --- language -------------------------------------------------------------------------

_STOPWORDS: dict[str, set[str]] = {
    "en": {"the", "and", "of", "to", "in", "is", "that", "for", "was", "with", "on", "as", "by", "it", "said", "has"},
    "ru": {"и", "в", "не", "на", "что", "с", "по", "это", "как", "из", "к", "о", "для", "от", "также", "был"},
    "uk": {"і", "в", "не", "на", "що", "з", "це", "як", "та", "до", "про", "для", "від", "також", "був", "у"},
    "tr": {"ve", "bir", "bu", "için", "ile", "da", "de", "olarak", "olan", "çok", "daha", "ne", "gibi", "sonra", "dedi"},
    "az": {"və", "bir", "bu", "üçün", "ilə", "da", "də", "olaraq", "olan", "çox", "daha", "ki", "kimi", "sonra", "edib"},
    "de": {"der", "die", "und", "das", "ist", "nicht", "mit", "den", "von", "zu", "sich", "auf", "für", "ein", "eine"},
    "fr": {"le", "la", "les", "et", "des", "est", "une", "un", "du", "que", "pour", "dans", "qui", "sur", "pas"},
    "es": {"el", "la", "los", "las", "y", "que", "en", "del", "por", "una", "un", "para", "con", "se", "es"},
    "ar": {"في", "من", "على", "أن", "إلى", "عن", "التي", "الذي", "مع", "هذا", "كان", "قال", "ما", "لا", "هذه"},
}
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def detect_language(text: str, min_hits: int = 3) -> str | None:
    """ISO 639-1 code by stopword counts per script; None when the text is too short to tell."""
    words = _WORD_RE.findall(text.casefold()[:20000])
    if not words:
        return None
    counts = {lang: sum(1 for w in words if w in stops) for lang, stops in _STOPWORDS.items()}
    # The schwa is written only in Azerbaijani among these languages.
    if "ə" in text:
        counts["az"] += len(words) // 10 + min_hits
    lang, hits = max(counts.items(), key=lambda kv: kv[1])
    return lang if hits >= min_hits else None
