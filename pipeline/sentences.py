"""Sentence boundaries inside one cleaned paragraph (whitespace collapsed, NFC), for sentence-level dedup.

One compiled regex finds the few candidate boundaries of a paragraph (terminal punctuation, closing
quotes/brackets, then whitespace; or CJK 。！？ with or without a space); a handful of set look-ups
decides each candidate. Measured against pysbd, syntok and blingfire in bench/sentences.py.

When unsure it does not split: a missed boundary only makes one dedup unit longer, while a wrong
split ("Sept. | 27") makes two fragments that match all over the corpus.
"""

from __future__ import annotations

import re

# Characters that may close a sentence after its final punctuation: `said."`, `»`, `”`, `)`, `」`.
_CLOSERS = "\"'”’»›)\\]}」』）】》〉"
# Characters that may open the next sentence (skipped to reach its first word): `“`, `«`, `(`, `¿`.
_OPENERS = "\"'“‘„«‹(\\[{¿¡"

# Western/Arabic/Indic terminators count only before whitespace: "3.5", "U.S.-led", "e-mail.com" never split.
# Groups: 1 the terminators, 2 the whitespace, 3 the next sentence's first word (past a few opening marks).
_WEST = rf"([.!?…؟۔।‼⁇⁈⁉]++)[{_CLOSERS}]*+(\s+)(?=(?:[^\w\s]{{0,3}}(\w+))?)"
_WEST_RE = re.compile(_WEST)
# CJK terminators end a sentence whether or not a space follows (groups 4 closers, 5 whitespace). A separate
# pattern because the alternation halves the scan speed, and most paragraphs have no CJK terminator.
_ANY_RE = re.compile(rf"{_WEST}|[。！？｡]+([{_CLOSERS}]*+)(\s*+)(?=\S)")
_CJK_TERMINATOR_RE = re.compile("[。！？｡]")
_OPENERS_CJK = _OPENERS + "「『（【《〈“"
# "U.S", "U.N", "a.m", "Ph.D", "EE.UU", "т.д": letters in short period-separated groups.
_ACRONYM_RE = re.compile(r"(?:[^\W\d_]{1,2}\.)+[^\W\d_]{1,2}")

# Abbreviations that (almost) never end a sentence: titles, months, "No. 5", "e.g.", "vs.", "z.B.", "ул.".
# Entries are case-sensitive where the lowercase form is an ordinary word ("No"/"no", "Art"/"art", "Mar"/"mar").
_NEVER_FINAL_EXACT = {
    "Mr", "Mrs", "Ms", "Mx", "Dr", "Prof", "Sen", "Rep", "Gov", "Gen", "Lt", "Col", "Maj", "Capt", "Cpt", "Sgt",
    "Cpl", "Pvt", "Adm", "Cmdr", "Cdr", "Brig", "Rev", "Hon", "Pres", "Amb", "Supt", "Insp", "Det", "Atty", "Fr",
    "Msgr", "Sr", "Sra", "Srta", "Dra", "Mme", "Mlle", "Mgr", "Me", "Ud", "Uds", "Hr", "Doç", "Yrd", "Alb",
    "Org", "Tuğg", "Korg", "Ing", "Dipl",
    "St", "Ste", "Mt", "Ft", "Sta", "Sto",
    "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
    "No", "Nos", "Nr", "Nº", "Vol", "Art", "Fig", "Sec", "Ch", "Ps", "Rs", "Op", "Abs", "Tel",
}
_NEVER_FINAL_LOWER = {
    "e.g", "i.e", "vs", "v", "cf", "approx", "ca", "viz", "incl", "esp", "est", "pp", "nos", "tel", "fig",
    "z.b", "d.h", "bzw", "vgl", "ggf", "evtl", "inkl", "mio", "mrd", "bspw", "sog", "u.a.m",
    "núm", "pág", "aprox", "p.ej", "env", "av", "mín", "máx",
    "т.е", "т.к", "т.н", "ул", "пр", "просп", "пер", "св", "акад", "проф", "ген", "см", "гл", "стр", "ст", "рис",
    "напр", "пос", "тов", "г-н", "г-жа", "наб", "пл", "кв",
    "prof", "akad", "dos", "doç", "ö", "bkz", "yy",
}
# Abbreviations that often end a sentence too ("the U.S.", "Apple Inc.", "и т.д.", "в 1991 г."): a boundary only
# when the next word is a common sentence opener (_OPENER_WORDS).
_MAYBE_FINAL_EXACT = {
    "Inc", "Co", "Corp", "Ltd", "Plc", "Bros", "Jr", "Ave", "Blvd", "Rd", "Hwy", "Cal", "Calif", "Mass", "Wash",
    "Fla", "Tex", "Ariz", "Ill", "Pa", "Va", "Ga", "Md", "Mich", "Minn", "Conn", "Okla", "Ore", "Tenn", "Ky", "Colo",
    "Str", "Cad", "Sok", "Mah", "Bul", "GmbH", "AG", "SA", "Cía", "Jh",
}
_MAYBE_FINAL_LOWER = {
    "u.a",
    "г", "гг", "им", "млн", "млрд", "тыс", "руб", "долл", "коп", "обл", "р-н", "вв",
    "km", "kg", "cm", "mm", "min", "max", "sq", "ft", "oz", "lb", "lbs", "hrs",
}


def _with_capitalised(words: set[str]) -> set[str]:
    # Lowercase-native abbreviations also open sentences: "Т.е.", "Vgl.", "Etc." after a quote.
    return words | {w[0].upper() + w[1:] for w in words}


_NEVER_FINAL = _NEVER_FINAL_EXACT | _with_capitalised(_NEVER_FINAL_LOWER)
# List enders ("oil, gas, etc.", "и т.д.", "usw.", "vb.") are rarely followed by a capital inside a sentence.
_LIST_END = _with_capitalised({"etc", "al", "usw", "u.ä", "o.ä", "vb", "т.д", "т.п", "др"})
_MAYBE_FINAL = _MAYBE_FINAL_EXACT | _with_capitalised(_MAYBE_FINAL_LOWER)

# Words that commonly open a news sentence, so that "the U.S. The ..." and "в 1991 г. В Москве" split while
# "U.S. President", "a.m. Monday" and "г. Москва" do not. Only consulted after a _MAYBE_FINAL abbreviation.
_OPENER_WORDS = {
    # English
    "The", "A", "An", "It", "He", "She", "They", "We", "I", "You", "This", "That", "These", "Those", "There",
    "Their", "His", "Her", "Its", "Our", "But", "And", "Or", "So", "Yet", "In", "On", "At", "As", "By", "For",
    "From", "With", "If", "When", "While", "After", "Before", "Since", "Although", "However", "Meanwhile",
    "According", "Also", "Earlier", "Later", "Last", "Next", "Then", "Now", "Today", "Yesterday", "Some", "Many",
    "Most", "Several", "Both", "All", "Each", "Other", "Another", "One", "Two", "Three", "Officials", "Police",
    "What", "Who", "Why", "How", "Where", "No", "Not", "Such", "Under", "Despite", "During", "Asked",
    # Russian
    "Он", "Она", "Оно", "Они", "Мы", "Я", "Это", "Этот", "Эта", "Эти", "В", "Во", "На", "По", "С", "Со", "К", "О",
    "Об", "Но", "А", "И", "Как", "При", "Так", "Также", "Кроме", "Однако", "Его", "Ее", "Её", "Их", "Затем",
    "После", "До", "Для", "Из", "Когда", "Если", "Ранее", "Позже", "Сейчас", "Тогда", "Там", "Здесь",
    # French, Spanish, German, Italian, Portuguese
    "Le", "La", "Les", "L", "Il", "Elle", "Ils", "Elles", "Un", "Une", "Des", "Ce", "Cette", "Ces", "Mais", "En",
    "Dans", "Selon", "Pour", "Depuis", "Après", "Avant", "Au", "Aux", "Lors", "Cependant",
    "El", "Los", "Las", "Una", "Unos", "Unas", "Pero", "Según", "Por", "Para", "Desde", "Tras", "Sin", "Además",
    "Der", "Die", "Das", "Den", "Dem", "Er", "Sie", "Es", "Ein", "Eine", "Im", "Am", "Aber", "Nach", "Auch",
    "Wie", "Laut", "Zudem", "Dabei", "Damit", "Doch", "Bei", "Seit",
    "Lo", "Gli", "Ma", "Nel", "Nella", "Secondo", "Os", "Mas", "Um", "Uma", "Segundo",
    # Turkish, Azerbaijani
    "Bu", "Bir", "O", "Ancak", "Ama", "Fakat", "Bunun", "Daha", "Ayrıca", "Ve", "Şu", "Onlar", "Biz", "Ben",
    "Həmçinin", "Lakin", "Amma", "Və", "Bundan", "Onun",
}

# German ordinals ("am 3. Oktober", "der 2. Weltkrieg", "zum 5. Mal") follow these words.
_ORDINAL_CUES = {
    "am", "im", "zum", "zur", "vom", "beim", "bis", "ab", "seit", "der", "die", "das", "den", "dem", "des", "ein",
    "eine", "einem", "einer", "dieser", "diesem", "jedem", "jeder",
}
# "on Sept. 27." / "on October 10.": a short number after these is a day, not an ordinal.
_MONTHS_EN = {
    "Jan", "January", "Feb", "February", "Mar", "March", "Apr", "April", "May", "Jun", "June", "Jul", "July", "Aug",
    "August", "Sep", "Sept", "September", "Oct", "October", "Nov", "November", "Dec", "December",
}
# Month names that may follow an ordinal number ("3. Oktober", "27. Eylül", "5. März").
_MONTH_WORDS = {
    "Januar", "Jänner", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
    "November", "Dezember", "Ocak", "Şubat", "Mart", "Nisan", "Mayıs", "Haziran", "Temmuz", "Ağustos", "Eylül",
    "Ekim", "Kasım", "Aralık", "Januari", "Februari", "Maart", "Mei", "Augustus",
}


def _period_ends_sentence(text: str, dot: int, word: str | None) -> bool:
    """Whether the "." at text[dot], followed (after whitespace) by `word` (not lowercase), ends a sentence."""
    tok = text[text.rfind(" ", 0, dot) + 1 : dot].lstrip(_OPENERS)
    if "-" in tok:  # "ex-U.S.", "pro-Kremlin Co."
        tok = tok.rpartition("-")[2] or tok
    if "/" in tok:
        tok = tok.rpartition("/")[2] or tok
    if tok in _NEVER_FINAL:
        return False
    if tok in _LIST_END:
        return True
    if len(tok) == 1 and tok.isalpha():
        # An initial ("J. R. Smith", "А. С. Пушкин", "د. محمد"); a lowercase letter is "в." (век), "və s."...
        return tok.islower() and word in _OPENER_WORDS
    if tok.isdigit():
        if word in _MONTH_WORDS:
            return False
        if word is not None and word[0].isdigit():
            return False
        if len(tok) <= 3:
            # "on Sept. 27." ends a date; otherwise a short number may be an ordinal ("am 3. Oktober",
            # "2. Dünya Savaşı"), so split only before a common sentence opener.
            before = text[: max(0, dot - len(tok) - 1)].rsplit(" ", 1)[-1].rstrip(".,")
            if before.lower() in _ORDINAL_CUES:
                return False
            return before in _MONTHS_EN or word in _OPENER_WORDS
        return True
    if tok in _MAYBE_FINAL or ("." in tok and _ACRONYM_RE.fullmatch(tok)):
        return word in _OPENER_WORDS
    if word is not None and word[0].isdigit():
        # "Sec. 5", "Rs. 500" and the like: short unknown tokens before a number are more likely abbreviations.
        return len(tok) >= 4
    return True


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) code-point offsets of each sentence of one paragraph, in order; whitespace between sentences
    is outside every span; the spans cover all non-whitespace characters of text."""
    stripped_end = len(text.rstrip())
    start = len(text) - len(text.lstrip())
    if start >= stripped_end:
        return []
    spans: list[tuple[int, int]] = []
    rx = _WEST_RE if text.isascii() or _CJK_TERMINATOR_RE.search(text) is None else _ANY_RE
    for m in rx.finditer(text, start, stripped_end):
        term, _, word = m.group(1, 2, 3)
        if term is None:
            # CJK: a boundary, except inside a quote that runs on: 「…か？」と彼は尋ねた / “…。”他说.
            if m.group(4) and not m.group(5) and text[m.end()] not in _OPENERS_CJK:
                continue
            end, nxt = m.span(5)
        else:
            if word is not None:
                c = word[0]
                # lowercase continuation: "“Why?” he asked", "Inc. said", "т.е. в" (Georgian is caseless)
                if c.islower() and not ("\u10d0" <= c <= "\u10ff"):
                    continue
            if term == "." and not _period_ends_sentence(text, m.start(), word):
                continue
            end, nxt = m.span(2)
        spans.append((start, end))
        start = nxt
    if start < stripped_end:
        spans.append((start, stripped_end))
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of one paragraph, as strings (see sentence_spans)."""
    return [text[s:e] for s, e in sentence_spans(text)]
