"""Stage 3: the metadata an article states, and nothing it does not.

Sources, best first: fields the container states (JSON fields, HTML meta tags), then the
furniture lines found by ``clean``. A value is only ever parsed from what is written:
no date from the clock, no year for "Sept. 28" unless the same article's dated header
gives it, no outlet from "told Reuters" inside the body.
"""

from __future__ import annotations

import html as html_lib
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from pipeline.clean import MONTHS, MONTHS_FOREIGN, CleanDocument, Furniture, Paragraph
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
_EPOCH_MS_RE = re.compile(r"^\d{13}$")
# "27.09.2020" (with an optional "15:09"): day first, as agencies writing ru/az/tr/de do.
_DOTTED_RE = re.compile(r"^(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})$")
# "[Saturday, ]10 October 2020[,] [at|-] 15:09 [(UTC+04:00)]"
_DATE_TIME_RE = re.compile(
    r"^(?:\w+,\s+)?(?P<date>.+?\d{4}),?\s+(?:at\s+|[-|]\s+)?"
    r"(?P<time>\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?[Mm]\.?)?)\s*(?P<tz>.*)$"
)
_BY_PREFIX_RE = re.compile(r"^by\s+", re.IGNORECASE)

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
        # Flat string fields: a plain copy (dataclasses.asdict deep-copies recursively, 10x slower).
        return dict(self.__dict__)


def _month(name: str) -> int:
    lowered = name.lower().rstrip(".")
    return MONTHS_FOREIGN.get(lowered) or _MONTH_NUMBERS[lowered[:3]]


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
    for regex in (_DMY_RE, _MDY_RE, _DOTTED_RE):
        if m := regex.match(text):
            month = int(m["m"]) if m["m"].isdigit() else _month(m["m"])
            try:
                return date(int(m["y"]), month, int(m["d"]))
            except ValueError:
                return None
    return None


def format_published(day: date, time: tuple[int, int, int] | None = None, tz: timezone | None = None) -> str:
    """A date-only value stays a date; a time keeps its offset (or none, if none was stated)."""
    if time is None:
        return day.isoformat()
    return datetime(day.year, day.month, day.day, *time, tzinfo=tz).isoformat()


PLAUSIBLE_YEARS = (1800, 2200)  # outside: a placeholder, not a publication date


def parse_published(text: str) -> str | None:
    """A stated publication time in any common machine or agency format, normalised.

    A date-only value stays a date; a time keeps the offset it states (none if none is)."""
    text = text.strip()
    if not text:
        return None
    for parser in (_parse_epoch, _parse_iso, _parse_written):
        if (value := parser(text)) is not None:
            # CMS placeholders ("0001-01-01T00:00:00Z") state no date at all.
            return value if PLAUSIBLE_YEARS[0] <= int(value[:4]) <= PLAUSIBLE_YEARS[1] else None
    return None


def _parse_epoch(text: str) -> str | None:
    if _EPOCH_RE.match(text):
        return datetime.fromtimestamp(float(text), tz=timezone.utc).isoformat()
    if _EPOCH_MS_RE.match(text):
        return datetime.fromtimestamp(int(text) / 1000, tz=timezone.utc).isoformat()
    return None


def _parse_iso(text: str) -> str | None:
    # "2022-5-3T23:57:00" (no zero padding) and "2022-05-04T03:00:00 UTC" occur in JSON-LD.
    text = re.sub(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?=$|[T ])",
                  lambda m: f"{m[1]}-{int(m[2]):02d}-{int(m[3]):02d}", text)
    text = re.sub(r"\s*(?:UTC|GMT)$", "+00:00", text) if re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d", text) else text
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        day = parse_date(text)
        return day.isoformat() if day else None
    if re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text):
        try:
            return datetime.fromisoformat(re.sub(r"Z$", "+00:00", text)).isoformat()
        except ValueError:
            return None
    return None


def _parse_written(text: str) -> str | None:
    """"27 September 2020", "Sat, 10 Oct 2020 11:09:00 GMT", "10 October 2020 15:09 (UTC+04:00)"."""
    day = parse_date(re.sub(r"^[A-Za-z]+,\s+", "", text))
    if day:
        return day.isoformat()
    m = _DATE_TIME_RE.match(text)
    if m and (day := parse_date(m["date"])) and (clock := _parse_time(m["time"])):
        tz = _parse_tz(m["tz"])
        if tz is not None or not m["tz"].strip():
            return format_published(day, clock, tz)
    if re.search(r"\d:\d\d", text):  # RFC 2822 (RSS pubDate) with a zone name like "EST"
        try:
            return parsedate_to_datetime(text).isoformat()
        except (TypeError, ValueError, IndexError):
            pass
    if m and day and (clock := _parse_time(m["time"])):
        return format_published(day, clock)  # a zone we cannot read: the local time as written
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
    for item in furniture:  # "Published: 12 April 2022 09:15 GMT"
        if item.role == "published" and (value := parse_published(item.fields["value"])):
            return value
    if header_day:
        return header_day.isoformat()
    for item in furniture:  # "МОСКВА, 5 декабря 2020 года." states a full date
        if item.role == "dateline" and "date" in item.fields and (day := parse_date(item.fields["date"])):
            return day.isoformat()
    return None


def _normalise_language(value: str | None) -> str | None:
    if not value:
        return None
    code = re.split(r"[-_]", value.strip().lower())[0]
    return code if re.fullmatch(r"[a-z]{2,3}", code) else None


def _who_is_outlet(who: str) -> bool:
    return who.casefold() in KNOWN_OUTLETS or (len(who.split()) == 1 and "," not in who)


def _stated_metadata(stated: dict[str, str]) -> Metadata:
    """Fields a JSON export or the page's meta tags state, normalised."""
    meta = Metadata(
        title=stated.get("title"),
        url=stated.get("url"),
        outlet=stated.get("outlet"),
        section=stated.get("section"),
        dateline=stated.get("dateline"),
        language=_normalise_language(stated.get("language")),
        published=parse_published(stated["published"]) if stated.get("published") else None,
    )
    author = _BY_PREFIX_RE.sub("", html_lib.unescape(stated.get("author") or "")).strip() or None
    if author and author.casefold() in KNOWN_OUTLETS:
        meta.outlet = meta.outlet or author  # "By Trend": an agency signs, not a person
    else:
        meta.author = clean_author(author, meta.outlet)
    return meta


# Accounts and desks that sign articles but are not authors.
_NOT_AUTHORS_RE = re.compile(
    r"^(?:admin|administrator|webmaster|editor|editors|editorial|staff|newsroom|redac(?:ción|cion|tion)|"
    r"redaktion|редакция|редактор|editör|haber merkezi|guest|user|anonymous|unknown|[a-z]*admin)$",
    re.IGNORECASE,
)


def clean_author(author: str | None, outlet: str | None) -> str | None:
    """The stated author, without an outlet mixed in; None when it names no person."""
    if not author:
        return None
    author = re.sub(r"\s+", " ", author).strip(" ,;|-–—")
    if outlet:
        o = re.escape(outlet.strip())
        # "unocero - Alberto Ávila", "Victor Tangermann, Futurism", "Name. Sputnik"
        author = re.sub(rf"^{o}\s*[-–—|:,]\s*|\s*[-–—|,.]\s*{o}$", "", author, flags=re.IGNORECASE).strip()
        if author.casefold() == outlet.strip().casefold():
            return None
    if not author or _NOT_AUTHORS_RE.match(author) or author.startswith(("http://", "https://", "www.")):
        return None
    return author


def _apply_furniture(meta: Metadata, furniture: list[Furniture]) -> None:
    """Fill what the container left empty from the furniture lines the text states."""
    for item in furniture:
        f = item.fields
        if item.role == "title" and not meta.title:
            meta.title = f["title"]
        elif item.role in {"stamp", "byline"}:
            _apply_byline(meta, f)
        elif item.role == "dateline":
            meta.dateline = meta.dateline or f["place"]
            if "outlet" in f:
                meta.outlet = meta.outlet or f["outlet"]
        elif item.role == "credit":
            meta.outlet = meta.outlet or f["outlet"]


def _apply_byline(meta: Metadata, fields: dict[str, str]) -> None:
    if "section" in fields and not meta.section:
        meta.section = fields["section"]
    if "author" in fields and not meta.author:
        meta.author = fields["author"]
    if "by" in fields:
        if _who_is_outlet(fields["by"]):
            meta.outlet = meta.outlet or fields["by"]
        else:
            meta.author = meta.author or fields["by"]


def extract_metadata(doc: Document, cleaned: CleanDocument, detect: bool = True) -> Metadata:
    """What the container and the text state about one article.

    ``detect=False`` leaves ``language`` as stated (or None), for ``settle_languages`` to
    settle over a whole batch of articles in one detection."""
    meta = _stated_metadata(doc.meta)
    _apply_furniture(meta, cleaned.furniture)
    if meta.published is None:
        meta.published = _published_from_furniture(cleaned.furniture)
    if meta.published is None:
        meta.published = _published_from_dateline(cleaned.furniture)
    if detect:
        settle_languages([meta], [body_text(cleaned.paragraphs)])
    return meta


def body_text(paragraphs: Sequence[Paragraph]) -> str:
    """The text whose language an article is detected in."""
    return " ".join(p.text for p in paragraphs)


def settle_languages(metas: Sequence[Metadata], bodies: Sequence[str]) -> None:
    """Each article's language from its text (``body_text``), in one batch detection: the
    detected one when none is stated; a stated one is overruled only when the model is sure
    of another. Raises before changing any ``meta`` if the detection does."""
    detected = detect_languages(bodies, [0.0 if m.language is None else SURE_LANGUAGE_CONFIDENCE for m in metas])
    for meta, language in zip(metas, detected, strict=True):
        if meta.language is None:
            meta.language = language
        elif language and language != meta.language:
            # A template's lang="en" on a German page: the text itself is the better witness.
            meta.language = language


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

_WORD_RE = re.compile(r"\w+", re.UNICODE)
MIN_LANGUAGE_LETTERS = 20  # fewer letters than this: too short to tell
# At least that many letters ([^\W\d_]); a match stops at the 20th instead of finding them all.
_ENOUGH_LETTERS_RE = re.compile(rf"(?:[\W\d_]*[^\W\d_]){{{MIN_LANGUAGE_LETTERS}}}")
MIN_LANGUAGE_CONFIDENCE = 0.5
SURE_LANGUAGE_CONFIDENCE = 0.99  # needed to overrule a stated language


@lru_cache(maxsize=1)
def _identifier() -> LanguageIdentifier:
    """py3langid's model ships inside the wheel: loaded once, offline."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


class _Dfa(NamedTuple):
    """py3langid's byte DFA as numpy arrays (views of the identifier's own, no copy of the 39 MB table)."""

    nextmove: np.ndarray  # state row base + byte -> next state
    rowbase: np.ndarray  # state -> its row's offset in nextmove
    output: np.ndarray  # state -> feature it emits, or -1
    aliases: list[tuple[int, int]]  # (first, other) columns of one label (srl -> sr), as py3langid pairs them


@lru_cache(maxsize=1)
def _dfa() -> _Dfa:
    ident = _identifier()
    nextmove = np.frombuffer(ident.tk_nextmove, dtype=f"u{ident.tk_nextmove.itemsize}")
    rows = np.frombuffer(ident.tk_row, dtype=f"u{ident.tk_row.itemsize}")
    first: dict[str, int] = {}
    aliases = [(first[c], i) for i, c in enumerate(ident.nb_classes) if first.setdefault(c, i) != i]
    return _Dfa(nextmove, rows.astype(np.intp) << 8, np.asarray(ident.tk_output, dtype=np.intp), aliases)


def _encode(sample: str) -> bytes:
    """The bytes py3langid's ``_encode`` classifies (all-caps lowered, NFC, lone surrogates kept)."""
    if sample.isupper():
        sample = sample.lower()
    return unicodedata.normalize("NFC", sample).encode("utf8", errors="surrogatepass")


class _Visits(NamedTuple):
    """The DFA features each text visits: text i's are ``[bounds[i]:bounds[i + 1]]``, in
    first-visit order (the order of py3langid's ``visit_counts`` Counter, which fixes the
    order of the score's float sums)."""

    features: np.ndarray
    counts: np.ndarray
    bounds: np.ndarray


def _visits(encoded: Sequence[bytes]) -> _Visits:
    """The walk steps every text's state together, one byte position at a time: a few numpy
    operations per position instead of a Python loop per byte of every text."""
    dfa = _dfa()
    n = len(encoded)
    lengths = np.fromiter(map(len, encoded), dtype=np.intp, count=n)
    order = np.argsort(-lengths, kind="stable")  # longest first: the texts still walking are a prefix
    walk_lengths = lengths[order]
    longest = int(walk_lengths[0]) if n else 0
    padded = b"".join(encoded[i].ljust(longest, b"\0") for i in order.tolist())
    by_position = np.frombuffer(padded, dtype=np.uint8).reshape(n, longest).T.copy()
    walking = np.searchsorted(-walk_lengths, -np.arange(longest), side="right")  # texts longer than each position
    visited = np.zeros((longest, n), dtype=dfa.nextmove.dtype)
    state = np.zeros(n, dtype=np.intp)
    for position, count in enumerate(walking.tolist()):
        state = dfa.nextmove[dfa.rowbase[state[:count]] + by_position[position, :count]]
        visited[position, :count] = state
    emitted = dfa.output[visited.T]  # walk order x position
    emitted[np.arange(longest) >= walk_lengths[:, None]] = -1  # past a text's end
    rows, positions = np.nonzero(emitted >= 0)
    nfeat, width = len(_identifier().nb_ptc), max(longest, 1)
    # One sort of (text, feature, position) keys gives every text's counts and first visits.
    keys = np.sort((order[rows] * nfeat + emitted[rows, positions]) * width + positions)
    pairs = keys // width  # text * nfeat + feature
    starts = np.flatnonzero(np.diff(pairs, prepend=-1))
    counts = np.diff(starts, append=keys.size)
    first = keys[starts] % width
    pairs = pairs[starts]
    texts = pairs // nfeat
    by_visit = np.argsort(texts * width + first)
    bounds = np.searchsorted(texts[by_visit], np.arange(n + 1))
    return _Visits((pairs % nfeat)[by_visit], counts[by_visit], bounds)


def _classify(encoded_len: int, counts: np.ndarray, weights: np.ndarray) -> tuple[str, float]:
    """py3langid's ``classify`` (norm_probs=True) from one text's visit counts and the model
    rows of its features, with its very arithmetic: float32 scores, the same operations in
    the same order on arrays of the same shapes, so the same floats come out."""
    ident = _identifier()
    if counts.size:
        scores = np.log1p(counts.astype(np.float32)) @ weights + ident.nb_pc
    else:
        scores = np.full(len(ident.nb_classes), 0.0, dtype=np.float32)
    scores *= 1.0 / math.sqrt(encoded_len or 1)
    np.exp(scores - scores.max(), out=scores)
    scores /= scores.sum()
    for i, j in _dfa().aliases:  # script variants of one language add up
        scores[i] += scores[j]
        scores[j] = 0.0
    best = int(scores.argmax())
    return ident.nb_classes[best], float(scores[best])


LANGUAGE_CHUNK = 1024  # texts per vectorised walk


def _classify_samples(samples: Sequence[str]) -> list[tuple[str, float]]:
    """py3langid's ``classify(sample)`` (language, confidence) for each sample, bit for bit,
    from one vectorised DFA walk over all of them (py3langid walks each text's bytes in a
    Python loop)."""
    encoded = [_encode(sample) for sample in samples]
    visits = _visits(encoded)
    # The model's float16 rows, cast once per batch for the features any text visits:
    # py3langid's float32 @ float16 matmul casts the rows to float32 (exactly) and multiplies those.
    used, local = np.unique(visits.features, return_inverse=True)
    weights = _identifier().nb_ptc[used].astype(np.float32)
    return [_classify(len(data), visits.counts[visits.bounds[n]:visits.bounds[n + 1]],
                      weights[local[visits.bounds[n]:visits.bounds[n + 1]]])
            for n, data in enumerate(encoded)]


def detect_languages(texts: Sequence[str], min_confidences: Sequence[float]) -> list[str | None]:
    """``detect_language`` for each text with its own ``min_confidence``, in one batch."""
    if len(texts) != len(min_confidences):
        raise ValueError("one min_confidence per text")
    samples = [text[:400] for text in texts]  # the classifier's cost grows with the text; 400 characters decide
    asked = [i for i, sample in enumerate(samples) if _ENOUGH_LETTERS_RE.match(sample)]
    languages: list[str | None] = [None] * len(texts)
    # In chunks: the walk's arrays are texts x longest sample (~20 KB a text); a file of 50,000
    # short items is one batch. Each text's result is its own, so chunking changes nothing.
    classified = [result for first in range(0, len(asked), LANGUAGE_CHUNK)
                  for result in _classify_samples([samples[i] for i in asked[first : first + LANGUAGE_CHUNK]])]
    for i, (lang, confidence) in zip(asked, classified, strict=True):
        if confidence < max(min_confidences[i], MIN_LANGUAGE_CONFIDENCE):
            continue
        # Azerbaijani is the only one of these written with the schwa; the model can take it for Turkish.
        languages[i] = "az" if lang == "tr" and samples[i].casefold().count("ə") >= 3 else str(lang)
    return languages


def detect_language(text: str, min_confidence: float = 0.0) -> str | None:
    """ISO 639-1 code of a text (py3langid, 97 languages); None when it is too short or the
    model is not confident."""
    return detect_languages([text], [min_confidence])[0]
