"""Cleaning: paragraphs, sub-headings and page furniture of the seed articles and fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.clean import CleanDocument, clean_document, normalize, split_blocks
from pipeline.read import Document, RawEntry, parse

ROOT = Path(__file__).resolve().parent.parent
RAW = ROOT / "raw"
INPUTS = Path(__file__).parent / "fixtures" / "inputs"


def read(path: Path) -> Document:
    (doc,), problems = parse(RawEntry(path.name, path, path.stat().st_size), path.read_bytes())
    assert problems == []
    return doc


def seed(prefix: str) -> Path:
    (path,) = RAW.glob(f"{prefix}_*.txt")
    return path


def cleaned(prefix: str) -> CleanDocument:
    return clean_document(read(seed(prefix)))


def texts(doc: CleanDocument) -> list[str]:
    return [p.text for p in doc.paragraphs]


def headings(doc: CleanDocument) -> list[str]:
    return [p.text for p in doc.paragraphs if p.kind == "heading"]


def furniture(doc: CleanDocument) -> list[tuple[str, str]]:
    return [(f.role, f.text) for f in doc.furniture]


# --- the five seeds ------------------------------------------------------------------------


def test_000_date_header_and_dateline_are_furniture() -> None:
    doc = cleaned("000")
    assert furniture(doc) == [("date_header", "date 2020-09-28 BAKU, Azerbaijan, Sept. 28"),
                              ("dateline", "BAKU, Azerbaijan, Sept. 28")]
    assert len(doc.paragraphs) == 12 and headings(doc) == []
    assert texts(doc)[0].startswith("Azerbaijan, liberating its territories from Armenian occupation, is beginning")
    assert texts(doc)[-1].startswith("The 1994 ceasefire agreement was followed by peace negotiations.")
    assert not any("date 2020" in t or t.startswith("BAKU") for t in texts(doc))


def test_001_title_byline_and_repeated_title_are_furniture() -> None:
    doc = cleaned("001")
    title = "Azerbaijan Liberates Several Villages Within Counteroffensive Measures In Karabakh"
    assert furniture(doc) == [("title", title), ("byline", "Orkhan Jalilov Feature 27 September 2020"),
                              ("title_repeat", title)]
    assert doc.furniture[1].fields == {"date": "27 September 2020", "section": "Feature", "author": "Orkhan Jalilov"}
    assert title not in texts(doc)
    assert texts(doc)[0].startswith("The Azerbaijani army has liberated several villages in a counter-offensive")
    assert len(doc.paragraphs) == 22


def test_001_sub_headings() -> None:
    doc = cleaned("001")
    assert headings(doc) == ["Foreign reactions", "History of conflict"]
    kinds = [p.kind[0] for p in doc.paragraphs]
    assert kinds == list("bbbbbbbbhbbbbbbbhbbbbb")


def test_001_non_breaking_spaces_are_plain_spaces() -> None:
    doc = cleaned("001")
    assert "\u00a0" in seed("001").read_text(encoding="utf-8")
    assert not any("\u00a0" in t for t in texts(doc))
    assert texts(doc)[1].startswith("The spokesperson for Azerbaijan’s Defense Ministry, Colonel Lieutenant Anar "
                                    "Eyvazov, said")
    assert "Foreign reactions" in texts(doc)  # "Foreign reactions\u00a0" with its trailing nbsp stripped


def test_002_header_stamp_dateline_and_credit_are_furniture() -> None:
    doc = cleaned("002")
    assert furniture(doc) == [
        ("date_header", "date 2020-10-10 Azerbaijani army seized great victory, Turkish Defense Ministry says"),
        ("title", "Azerbaijani army seized great victory, Turkish Defense Ministry says"),
        ("stamp", "Politics 10 October 2020 15:09 (UTC+04:00)"),
        ("dateline", "BAKU, Azerbaijan, Oct. 10"),
        ("credit", "Trend:"),
    ]
    assert len(doc.paragraphs) == 9 and headings(doc) == []
    assert texts(doc)[0] == ("Azerbaijani army has seized great victory, Turkish National Defense Ministry said on "
                             "Twitter, Trend reports on Oct.10.")


def test_003_single_line_paragraphs_links_and_trailer() -> None:
    doc = cleaned("003")
    assert furniture(doc) == [
        ("link", "READ MORE: Azerbaijan retakes 13 more villages in region under Armenian occupation"),
        ("link", "READ MORE: Azerbaijan: Armenia targets civilians in breach of Karabakh truce"),
        ("link", "READ MORE: Azerbaijan: Int’l community should impose sanctions on Armenia"),
        ("link", "READ MORE: Azerbaijan demands inclusion of Turkey in Karabakh solution process"),
        ("trailer", "Discussion about this post"),
    ]
    assert headings(doc) == ["Russia talks", "Azerbaijan’s offensive", "Upper Karabakh conflict"]
    assert len(doc.paragraphs) == 25  # 30 lines, one paragraph each, less 5 furniture lines
    assert texts(doc)[0].startswith("The Azerbaijani army’s operations to recapture territories")
    assert texts(doc)[6] == "The pair are due to meet with the US Secretary of State Mike Pompeo on Friday."
    assert texts(doc)[-1].startswith("World powers, including Russia, France, and the US, have called")
    assert not any(t.startswith("READ MORE") or t == "Discussion about this post" for t in texts(doc))


def test_004_by_trend_header_and_multiple_blank_lines() -> None:
    doc = cleaned("004")
    assert furniture(doc) == [("date_header", "date 2020-10-28 By Trend"), ("byline", "By Trend")]
    assert len(doc.paragraphs) == 10 and headings(doc) == []
    assert texts(doc)[0].startswith("Armenia refuses to budge unless they get what they want")
    assert texts(doc)[6].startswith("Armenian Armed Forces launched a large-scale military attack")
    assert texts(doc)[7].startswith("Back in July 2020, the Armenian Armed Forces violated the ceasefire")
    assert all(t.strip() == t and t for t in texts(doc))


# --- splitting and normalisation -----------------------------------------------------------


def test_split_blocks_on_blank_lines_and_runs_of_them() -> None:
    assert split_blocks("One.\nstill one.\n\n\n\nTwo.\n \t \nThree.\n") == [["One.", "still one."], ["Two."],
                                                                          ["Three."]]


def test_split_blocks_single_lines_when_no_blank_line() -> None:
    assert split_blocks("First line.\nSecond line.\r\nThird line.") == [["First line."], ["Second line."],
                                                                        ["Third line."]]


def test_normalize_nfc_spaces_and_zero_width() -> None:
    decomposed = "Aze\u0301ri cafe\u0301\u00a0and\u2009Baku\u200b news\ufeff  here "
    assert normalize(decomposed) == "Azéri café and Baku news here"
    assert normalize("Azərbaycan") == "Azərbaycan"


# --- fixtures: furniture lines inside the body stay body -----------------------------------


def test_misleading_lines_deep_in_the_body_stay_body_text() -> None:
    doc = clean_document(read(INPUTS / "misleading.txt"))
    assert furniture(doc) == [("date_header", "date 2020-10-12 Papers abroad report Moscow truce talks"),
                              ("title", "Papers abroad report Moscow truce talks")]
    assert "By John Smith" in texts(doc)
    assert "LONDON, Oct. 9 (AFP)" in texts(doc)
    assert "Politics 9 October 2020 11:00 (UTC+01:00)" in texts(doc)
    assert texts(doc)[-1].startswith("The reports could not be independently confirmed")


def test_trend_page_body_without_page_furniture() -> None:
    doc = clean_document(read(INPUTS / "trend_page.html"))
    assert [(p.kind, p.text[:40]) for p in doc.paragraphs] == [
        ("body", "Azerbaijan and Armenia have agreed on a "),
        ("body", "The decision was taken following the sta"),
        ("heading", "Earlier truce"),
        ("body", "A previous ceasefire agreed in Moscow on"),
        ("body", "\"We expect the other side to observe the"),
    ]
    joined = " ".join(texts(doc))
    for furniture_text in ("cookies", "Home", "Related news", "Azerbaijan retakes 13", "Great news, peace",
                           "All rights reserved", "17 October 2020 23:40"):
        assert furniture_text not in joined


def test_cp1251_page_body_without_page_furniture() -> None:
    doc = clean_document(read(INPUTS / "ria_page_cp1251.html"))
    assert [p.kind for p in doc.paragraphs] == ["body", "body", "body"]
    assert texts(doc)[0].startswith("Министр иностранных дел России Сергей Лавров провел в среду в Москве")
    joined = " ".join(texts(doc))
    for furniture_text in ("cookie", "Главная", "Читайте также", "Пашинян заявил", "© 2020"):
        assert furniture_text not in joined


@pytest.mark.parametrize("name", ["blog_page_no_meta.html"])
def test_blog_page_body_without_sidebar_or_comments(name: str) -> None:
    doc = clean_document(read(INPUTS / name))
    assert len(doc.paragraphs) == 4 and all(p.kind == "body" for p in doc.paragraphs)
    assert texts(doc)[3].startswith("By the evening, none of the reports")
    joined = " ".join(texts(doc))
    assert "Popular posts" not in joined and "Thanks for the summary" not in joined and "Archive" not in joined


@pytest.mark.parametrize("line", [
    "Estimated reading time: 6 minutes", "Tempo de leitura: 1 minuto", "Crédits photos : Bestimage",
    "Main image credit: Getty", "© 1994-2020 Wordsmith", "copyright Inexhibit 2019 - ISSN 2283-5474",
    "Like this story? Share it with a friend!", "Originally published on Live Science.",
    "Lesen Sie mehr: Die Bahn streikt", "Читайте также: Новости дня", "LIRE AUSSI SUR REGARDS.FR >> Enquête",
    "También puede leer: Otra noticia", "Follow Tariq Malik on Twitter @tariqjmalik",
])
def test_furniture_lines_in_several_languages_leave_the_body(line: str) -> None:
    body = "A body paragraph of the article that says what happened, in plenty of words."
    doc = Document("a.txt", None, "0" * 64, "text", text=f"{body}\n\n{line}\n\n{body} Again.")
    cleaned = clean_document(doc)
    assert [p.text for p in cleaned.paragraphs] == [body, f"{body} Again."]


@pytest.mark.parametrize("sentence", [
    "The copyright dispute was settled by the court on Monday after years of litigation.",
    "Photo: a man walks past the damaged building in the city centre on Tuesday morning.",
    "Reading time for pupils rose by ten minutes a day, the ministry said.",
])
def test_body_sentences_that_mention_such_words_stay(sentence: str) -> None:
    doc = Document("a.txt", None, "0" * 64, "text", text=f"First paragraph of the story, long enough.\n\n{sentence}")
    assert clean_document(doc).paragraphs[-1].text == sentence


def test_a_title_block_with_byline_and_labelled_date_under_it() -> None:
    text = (INPUTS / "labelled_header.txt").read_text()
    cleaned = clean_document(Document("b.txt", None, "0" * 64, "text", text=text))
    # the opening dateline "MOSCOW, April 12 (AP) -" is set apart from the paragraph
    assert [p.text[:20] for p in cleaned.paragraphs] == ["Exports fell for a t", "The ministry said sh"]
    assert {f.role for f in cleaned.furniture} >= {"title", "published", "byline", "trailer"}
