"""Metadata: what each article states (seeds, HTML pages, JSON exports), and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from pipeline.clean import Furniture, clean_document
from pipeline.metadata import (
    MIN_LANGUAGE_CONFIDENCE,
    MIN_LANGUAGE_LETTERS,
    SURE_LANGUAGE_CONFIDENCE,
    Metadata,
    _classify_samples,
    _published_from_dateline,
    body_text,
    detect_language,
    detect_languages,
    extract_metadata,
    parse_published,
    settle_languages,
)
from pipeline.read import BadInput, Document, RawEntry, parse

ROOT = Path(__file__).resolve().parent.parent
RAW = ROOT / "raw"
INPUTS = Path(__file__).parent / "fixtures" / "inputs"


def metadata_of(path: Path) -> list[dict[str, str | None]]:
    docs, _ = parse(RawEntry(path.name, path, path.stat().st_size), path.read_bytes())
    return [extract_metadata(doc, clean_document(doc)).as_dict() for doc in docs]


def text_metadata(text: str) -> dict[str, str | None]:
    doc = Document("a.txt", None, "0" * 64, "text", text=text)
    return extract_metadata(doc, clean_document(doc)).as_dict()


def seed(prefix: str) -> dict[str, str | None]:
    (path,) = RAW.glob(f"{prefix}_*.txt")
    (meta,) = metadata_of(path)
    return meta


NONE = dict.fromkeys(("title", "published", "author", "outlet", "section", "dateline", "url"))

# EXPECTED.md's table, every field (what is not stated is None).
SEEDS = {
    "000": {**NONE, "published": "2020-09-28", "dateline": "BAKU, Azerbaijan", "language": "en"},
    "001": {**NONE, "title": "Azerbaijan Liberates Several Villages Within Counteroffensive Measures In Karabakh",
            "author": "Orkhan Jalilov", "section": "Feature", "published": "2020-09-27", "language": "en"},
    "002": {**NONE, "title": "Azerbaijani army seized great victory, Turkish Defense Ministry says",
            "section": "Politics", "published": "2020-10-10T15:09:00+04:00", "dateline": "BAKU, Azerbaijan",
            "outlet": "Trend", "language": "en"},
    "003": {**NONE, "language": "en"},
    "004": {**NONE, "published": "2020-10-28", "outlet": "Trend", "language": "en"},
}


@pytest.mark.parametrize("prefix", sorted(SEEDS))
def test_seed_metadata_matches_expected(prefix: str) -> None:
    assert seed(prefix) == SEEDS[prefix]


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2020-10-10", "2020-10-10"),
    ("2020-10-10T15:09:00+04:00", "2020-10-10T15:09:00+04:00"),
    ("2020-10-10T11:09:00Z", "2020-10-10T11:09:00+00:00"),
    ("2020-10-10T11:09:00.000Z", "2020-10-10T11:09:00+00:00"),
    ("2020-10-10T15:09:00", "2020-10-10T15:09:00"),
    ("27 September 2020", "2020-09-27"),
    ("Sept. 28, 2020", "2020-09-28"),
    ("September 27, 2020 at 3:05 PM", "2020-09-27T15:05:00"),
    ("10 October 2020 15:09 (UTC+04:00)", "2020-10-10T15:09:00+04:00"),
    ("10 October 2020 15:09 (GMT-03:30)", "2020-10-10T15:09:00-03:30"),
    ("Saturday, 10 October 2020, 15:09", "2020-10-10T15:09:00"),
    ("Sat, 10 Oct 2020 11:09:00 +0400", "2020-10-10T11:09:00+04:00"),
    ("Sat, 10 Oct 2020 11:09:00 GMT", "2020-10-10T11:09:00+00:00"),
    ("Sat, 10 Oct 2020", "2020-10-10"),
    ("27.09.2020", "2020-09-27"),
    ("27.09.2020 15:09", "2020-09-27T15:09:00"),
    ("1602328140", "2020-10-10T11:09:00+00:00"),
    ("1602328140000", "2020-10-10T11:09:00+00:00"),
])
def test_parse_published(text: str, expected: str) -> None:
    assert parse_published(text) == expected


@pytest.mark.parametrize("text", ["Oct. 10", "Sept. 28", "yesterday", "2020-13-45", "10/10/2020", "", "Politics"])
def test_parse_published_refuses_what_is_not_a_full_date(text: str) -> None:
    assert parse_published(text) is None


def test_month_day_takes_its_year_only_from_a_dated_header() -> None:
    dateline = Furniture("dateline", "BAKU, Azerbaijan, Oct. 10", {"place": "BAKU, Azerbaijan", "monthday": "Oct. 10"})
    header = Furniture("date_header", "date 2019-10-11", {"date": "2019-10-11"})
    assert _published_from_dateline([dateline]) is None  # never the clock's year
    assert _published_from_dateline([header, dateline]) == "2019-10-10"


def test_dateline_without_year_and_without_header_gives_no_date() -> None:
    meta = text_metadata("BAKU, Azerbaijan, Oct. 10\n\nThe army said on Saturday that the front line was calm.\n")
    assert meta["dateline"] == "BAKU, Azerbaijan"
    assert meta["published"] is None


# --- HTML pages ----------------------------------------------------------------------------


def test_trend_page_metadata_from_meta_tags() -> None:
    assert metadata_of(INPUTS / "trend_page.html") == [{
        "title": "Azerbaijan, Armenia agree on humanitarian ceasefire",
        "published": "2020-10-17T23:40:00+04:00",
        "author": "Nigar Abbasova",
        "outlet": "Trend News Agency",
        "section": "Politics",
        "dateline": None,
        "url": "https://en.trend.az/azerbaijan/politics/3313456.html",
        "language": "en",
    }]


def test_cp1251_page_metadata_from_json_ld() -> None:
    assert metadata_of(INPUTS / "ria_page_cp1251.html") == [{
        "title": "Лавров провел переговоры с главами МИД Армении и Азербайджана",
        "published": "2020-10-21T19:35:00+03:00",
        "author": None,
        "outlet": "Пример Новости",
        "section": "Политика",
        "dateline": None,
        "url": "https://example-news.ru/politics/20201021/lavrov.html",
        "language": "ru",
    }]


def test_page_without_meta_invents_nothing() -> None:
    # The body quotes a Reuters story ("told Reuters", "MOSCOW (Reuters) -") and names a reporter.
    assert metadata_of(INPUTS / "blog_page_no_meta.html") == [
        {**NONE, "title": "Caucasus Notes: what the papers say", "language": "en"}]


# --- JSON exports --------------------------------------------------------------------------


def test_json_export_metadata() -> None:
    assert metadata_of(INPUTS / "scraper_export.json") == [
        {"title": "Turkey reiterates support for Azerbaijan", "published": "2020-09-28T10:15:00+03:00",
         "author": "Ayse Demir", "outlet": "Example Wire", "section": "World", "dateline": None,
         "url": "https://example.com/news/turkey-support", "language": "en"},
        {**NONE, "title": "Azərbaycan Ordusu bir neçə kəndi azad edib", "published": "2020-09-27",
         "outlet": "Trend", "url": "https://example.az/xeber/1", "language": "az"},
        {**NONE, "title": "Ceasefire talks", "published": "2020-10-21T19:35:00+03:00", "outlet": "Example Daily",
         "section": "Diplomacy", "language": "en"},
    ]


def test_jsonl_feed_metadata() -> None:
    assert metadata_of(INPUTS / "scraper_feed.jsonl") == [
        {**NONE, "title": "Türkiye Azerbaycan'a desteğini yineledi", "published": "2020-10-10T15:09:00+03:00",
         "url": "https://example.com.tr/haber/1", "language": "tr"},
        {**NONE, "title": "Лавров провел переговоры", "published": "2020-10-21", "author": "Иван Петров",
         "outlet": "Пример Новости", "url": "https://example.ru/1", "language": "ru"},
        {**NONE, "title": "لافروف يجري محادثات في موسكو", "published": "2020-10-21T16:35:00+00:00",
         "language": "ar"},
    ]


def test_stated_language_is_normalised() -> None:
    doc = Document("a.json", 0, "0" * 64, "json", text="Short.", meta={"language": "en_US"})
    assert extract_metadata(doc, clean_document(doc)).language == "en"


# --- never guess ---------------------------------------------------------------------------


def test_misleading_text_sets_nothing_it_does_not_state() -> None:
    # "told Reuters", "(Reuters) -" inside a quote, a byline, a dateline and a stamp deep in the body.
    (meta,) = metadata_of(INPUTS / "misleading.txt")
    assert meta == {**NONE, "title": "Papers abroad report Moscow truce talks", "published": "2020-10-12",
                    "language": "en"}


@pytest.mark.parametrize("text", [
    "The ministry said the ceasefire held overnight, a spokesman told Reuters on Sunday.\n\nTalks resume Monday.",
    "Reuters reported that the talks would resume on Monday, citing two diplomats.\n\nNo date was set.",
    '"BAKU, Azerbaijan, Oct. 10 (Trend) - the ministry said," the paper wrote, quoting the agency.\n\nMore later.',
    "The talks resumed on Monday in Moscow.\n\nSources told AFP and TASS that a deal was close.",
])
def test_outlets_named_in_the_body_are_not_the_outlet(text: str) -> None:
    meta = text_metadata(text)
    assert (meta["outlet"], meta["author"], meta["dateline"], meta["published"]) == (None, None, None, None)


def test_inline_dateline_opening_the_article_is_stated() -> None:
    meta = text_metadata("LONDON (Reuters) - Oil prices rose on Monday as talks stalled.\n\nMore follows.")
    assert (meta["dateline"], meta["outlet"]) == ("LONDON", "Reuters")


def test_byline_deep_in_the_body_is_not_the_author() -> None:
    paragraphs = "\n\n".join(f"Paragraph {i} of the report says the talks went on." for i in range(8))
    meta = text_metadata(paragraphs + "\n\nBy Orkhan Jalilov\n\nThe end of the report.")
    assert meta["author"] is None and meta["outlet"] is None


# --- language ------------------------------------------------------------------------------

SENTENCES = {
    "en": "The Azerbaijani army has liberated several villages in a counter-offensive in the Karabakh region, "
          "the defence ministry said on Sunday.",
    "ru": "Министр иностранных дел России Сергей Лавров провел в среду в Москве раздельные встречи со своими "
          "армянским и азербайджанским коллегами.",
    "uk": "Міністр закордонних справ України заявив, що країна підтримує територіальну цілісність Азербайджану "
          "і закликає сторони припинити вогонь.",
    "tr": "Türkiye, Azerbaycan'a olan desteğini bir kez daha yineledi ve işgal altındaki toprakların derhal "
          "iade edilmesi gerektiğini belirtti.",
    "az": "Azərbaycan Ordusu əks-hücum əməliyyatı çərçivəsində cəbhə xətti boyunca bir neçə kəndi işğaldan "
          "azad edib və mövqelərini möhkəmləndirir.",
    "ar": "أجرى وزير الخارجية الروسي سيرغي لافروف يوم الأربعاء في موسكو محادثات منفصلة مع نظيريه الأرميني "
          "والأذربيجاني بشأن وقف إطلاق النار.",
    "de": "Die Regierung in Baku erklärte am Sonntag, die Armee habe mehrere Dörfer zurückerobert, und rief zur "
          "Einhaltung der Waffenruhe auf.",
    "fr": "L'armée azerbaïdjanaise a libéré plusieurs villages près de la ligne de front, a déclaré le ministère "
          "de la Défense à Bakou.",
    "es": "El ejército de Azerbaiyán liberó varias aldeas cerca de la línea del frente, según informó el "
          "ministerio de Defensa en Bakú.",
}


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_detect_language(lang: str) -> None:
    assert detect_language(SENTENCES[lang]) == lang


@pytest.mark.parametrize("text", ["", "Baku", "12 345 678", "OK, thanks!", "— … —"])
def test_detect_language_refuses_too_little_text(text: str) -> None:
    assert detect_language(text) is None


@pytest.mark.parametrize(("written", "expected"), [
    ("27 сентября 2020", "2020-09-27"),
    ("10 мая 2021", "2021-05-10"),
    ("5 Ekim 2020", "2020-10-05"),
    ("3 Mayıs 2019", "2019-05-03"),
    ("28 sentyabr 2020", "2020-09-28"),
    ("1 May 2020", "2020-05-01"),
    ("31 сентября 2020", None),  # no such day: nothing is invented
])
def test_month_names_of_the_regions_agencies(written: str, expected: str | None) -> None:
    assert parse_published(written) == expected


@pytest.mark.parametrize(("stated", "expected"), [
    ("2022-05-04T03:00:00 UTC", "2022-05-04T03:00:00+00:00"),
    ("2022-5-3T23:57:00", "2022-05-03T23:57:00"),
    ("2019-05-15 05:28:29", "2019-05-15T05:28:29"),
    ("0001-01-01T00:00:00+00:00", None),  # a CMS placeholder states no date
])
def test_machine_dates_as_cms_write_them(stated: str, expected: str | None) -> None:
    assert parse_published(stated) == expected


@pytest.mark.parametrize(("author", "outlet", "expected"), [
    ("unocero - Alberto Ávila", "unocero", "Alberto Ávila"),
    ("Victor Tangermann, Futurism", "Futurism", "Victor Tangermann"),
    ("Finian Cunningham. Sputnik International", "Sputnik International", "Finian Cunningham"),
    ("RT", "RT", None),
    ("admin", None, None),
    ("jdadmin", None, None),
    ("Redacci&oacute;n", None, None),
    ("Orkhan Jalilov", "Trend", "Orkhan Jalilov"),
])
def test_stated_authors_that_are_not_people_are_dropped(author: str, outlet: str | None,
                                                        expected: str | None) -> None:
    meta = {"author": author, "text": "x"}
    if outlet:
        meta["outlet"] = outlet
    doc = Document("a.json", 0, "0" * 64, "json", text="Ein Satz.", meta={k: v for k, v in meta.items() if k != "text"})
    assert extract_metadata(doc, clean_document(doc)).author == expected


def test_the_text_overrules_a_template_language_only_when_sure() -> None:
    german = ("Die Bundesregierung hat am Mittwoch beschlossen, dass die Bahn mehr Geld für neue Strecken "
              "bekommt. Der Verkehrsminister sagte, die Züge sollen pünktlicher werden und mehr Menschen "
              "sollen auf die Schiene umsteigen, weil das gut für das Klima ist.")
    doc = Document("a.html", None, "0" * 64, "html", blocks=[("body", german)], meta={"language": "en"})
    assert extract_metadata(doc, clean_document(doc)).language == "de"
    short = Document("b.html", None, "0" * 64, "html", blocks=[("body", "Ja, gut.")], meta={"language": "en"})
    assert extract_metadata(short, clean_document(short)).language == "en"


@pytest.mark.parametrize(("fixture", "expected"), [
    ("wire_reuters_style.txt", {**NONE, "title": "Oil prices climb as OPEC+ weighs output cuts",
                                "published": "2021-03-03", "author": "Jane Doe and John Smith",
                                "outlet": "Reuters", "dateline": "LONDON", "language": "en"}),
    ("labelled_header.txt", {**NONE, "title": "Sanctions bite as exports fall for third month",
                             "published": "2022-04-12T09:15:00+00:00", "author": "Alex Brown", "outlet": "AP",
                             "dateline": "MOSCOW", "language": "en"}),
    ("ru_dateline.txt", {**NONE, "title": "Заголовок новости о переговорах", "published": "2020-12-05",
                         "dateline": "МОСКВА", "language": "ru"}),
])
def test_plain_text_headers_as_wires_and_sites_write_them(fixture: str, expected: dict[str, str | None]) -> None:
    (meta,) = metadata_of(INPUTS / fixture)
    assert meta == expected


def test_an_updated_line_is_not_the_publication_date() -> None:
    meta = text_metadata("A headline about the harbour\nUpdated: 14 May 2021 10:00\n\nThe harbour reopened today "
                         "after the storm, the port authority said in a statement.")
    assert meta["title"] == "A headline about the harbour" and meta["published"] is None


MARKDOWN_STORY = """# Council approves the **harbour** budget

*By Jane Doe, 5 March 2024*

VELMORA (Meridian News) - The city council approved the harbour budget on Tuesday after a
[long debate](https://example.org/debate) that ran _past midnight_.

## What happens next

Work on the **northern pier** starts in April, the mayor said, and should end in 2026.

- The budget holds 12 million for dredging.
"""


def test_a_markdown_article_states_title_byline_date_and_dateline(tmp_path: Path) -> None:
    path = tmp_path / "story.md"
    path.write_text(MARKDOWN_STORY, encoding="utf-8")
    [doc], _ = parse(RawEntry(path.name, path, path.stat().st_size), path.read_bytes())
    cleaned = clean_document(doc)
    meta = extract_metadata(doc, cleaned).as_dict()
    assert {k: meta[k] for k in ("title", "author", "published", "dateline", "outlet")} == {
        "title": "Council approves the harbour budget", "author": "Jane Doe", "published": "2024-03-05",
        "dateline": "VELMORA", "outlet": "Meridian News"}
    assert [(p.kind, p.text) for p in cleaned.paragraphs] == [
        ("body", "The city council approved the harbour budget on Tuesday after a long debate that ran past midnight."),
        ("heading", "What happens next"),
        ("body", "Work on the northern pier starts in April, the mayor said, and should end in 2026."),
        ("body", "The budget holds 12 million for dredging."),
    ]


def test_a_place_and_day_dateline_is_set_apart_and_gives_no_year() -> None:
    text = "Ferry strike ends after talks\n\nVELMORA, March 6 - Ferry crews returned to work on Wednesday.\n\nMore."
    doc = Document("a.txt", None, "0" * 64, "text", text=text)
    cleaned = clean_document(doc)
    meta = extract_metadata(doc, cleaned).as_dict()
    assert (meta["dateline"], meta["published"], meta["outlet"]) == ("VELMORA", None, None)  # never the clock's year
    assert cleaned.paragraphs[0].text == "Ferry crews returned to work on Wednesday."
    with_year = text_metadata("VELMORA, March 6, 2024 - Ferry crews returned to work.\n\nMore follows here.")
    assert (with_year["dateline"], with_year["published"]) == ("VELMORA", "2024-03-06")
    # a capitalised word and a dash alone are no dateline
    assert text_metadata("NATO - the alliance met today in the capital.\n\nMore.")["dateline"] is None


def test_an_agency_dateline_prefix_leaves_paragraph_0_and_the_text(tmp_path: Path) -> None:
    from pipeline.ingest import run_ingest
    from pipeline.records import read_records

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.txt").write_text("VELMORA (Meridian News) - The council met on Monday to discuss the port.\n\n"
                               "A vote is expected next week, officials said.\n", encoding="utf-8")
    run_ingest(raw, tmp_path / "p")
    [record] = read_records(tmp_path / "p")
    assert (record["dateline"], record["outlet"]) == ("VELMORA", "Meridian News")
    assert record["paragraphs"][0]["text"] == "The council met on Monday to discuss the port."
    assert "VELMORA" not in record["text"] and "Meridian" not in record["text"]


# --- language in batches: py3langid's own answers, bit for bit -----------------------------

# Written for these tests: news-like sentences in many scripts, and texts at the edges.
SCRIPTS = {
    "en": "The harbour authority said on Tuesday that the northern pier would reopen in April after repairs "
          "to the sea wall, which was damaged in the winter storms.",
    "de": "Der Stadtrat hat am Dienstag den Haushalt für den Hafen beschlossen; die Arbeiten an der nördlichen "
          "Mole sollen im April beginnen und zwei Jahre dauern.",
    "fr": "Le conseil municipal a adopté mardi le budget du port après un long débat qui s'est prolongé "
          "jusqu'à minuit, selon un communiqué de la mairie.",
    "es": "El ayuntamiento aprobó el martes el presupuesto del puerto tras un largo debate; las obras del "
          "muelle norte empezarán en abril, dijo la alcaldesa.",
    "it": "Il consiglio comunale ha approvato martedì il bilancio del porto dopo un lungo dibattito, e i lavori "
          "sul molo nord inizieranno ad aprile.",
    "pt": "A câmara municipal aprovou na terça-feira o orçamento do porto depois de um longo debate, e as obras "
          "no cais norte começam em abril.",
    "nl": "De gemeenteraad heeft dinsdag de begroting voor de haven goedgekeurd na een lang debat dat tot na "
          "middernacht duurde, meldde de burgemeester.",
    "pl": "Rada miasta zatwierdziła we wtorek budżet portu po długiej debacie, a prace przy północnym molo "
          "rozpoczną się w kwietniu, powiedziała burmistrz.",
    "cs": "Městská rada v úterý schválila rozpočet přístavu po dlouhé debatě a práce na severním molu začnou "
          "v dubnu, uvedla starostka.",
    "tr": "Belediye meclisi salı günü uzun bir tartışmanın ardından liman bütçesini onayladı; kuzey iskelesindeki "
          "çalışmalar nisanda başlayacak.",
    "az": "Şəhər şurası çərşənbə axşamı uzun müzakirədən sonra liman büdcəsini təsdiq edib, şimal körpüsündə "
          "işlər aprel ayında başlayacaq.",
    "ru": "Городской совет во вторник утвердил бюджет порта после долгих споров, а работы на северном причале "
          "начнутся в апреле, сообщила мэр.",
    "uk": "Міська рада у вівторок затвердила бюджет порту після тривалих дебатів, а роботи на північному "
          "причалі почнуться у квітні.",
    "bg": "Общинският съвет одобри във вторник бюджета на пристанището след дълъг дебат, а работата по "
          "северния кей ще започне през април.",
    "sr": "Градско веће је у уторак усвојило буџет луке после дуге расправе, а радови на северном пристаништу "
          "почињу у априлу.",
    "el": "Το δημοτικό συμβούλιο ενέκρινε την Τρίτη τον προϋπολογισμό του λιμανιού μετά από μακρά συζήτηση, "
          "και οι εργασίες στη βόρεια προβλήτα ξεκινούν τον Απρίλιο.",
    "ar": "وافق المجلس البلدي يوم الثلاثاء على ميزانية الميناء بعد نقاش طويل، وستبدأ الأعمال في الرصيف الشمالي "
          "في شهر أبريل المقبل.",
    "fa": "شورای شهر روز سه‌شنبه پس از بحثی طولانی بودجه بندر را تصویب کرد و کار روی اسکله شمالی از فروردین "
          "آغاز می‌شود.",
    "he": "מועצת העיר אישרה ביום שלישי את תקציב הנמל לאחר דיון ארוך, והעבודות במזח הצפוני יתחילו באפריל.",
    "hi": "नगर परिषद ने मंगलवार को लंबी बहस के बाद बंदरगाह का बजट मंजूर किया और उत्तरी घाट पर काम अप्रैल में "
          "शुरू होगा।",
    "zh": "市议会周二在长时间辩论后批准了港口预算，北码头的维修工程将于四月开始，预计持续两年。",
    "ja": "市議会は火曜日、長い議論の末に港の予算を承認した。北側の桟橋の工事は四月に始まる予定だという。",
    "ko": "시의회는 화요일 긴 논쟁 끝에 항구 예산을 승인했으며 북쪽 부두 공사는 4월에 시작될 예정이라고 밝혔다.",
    "th": "สภาเมืองอนุมัติงบประมาณท่าเรือเมื่อวันอังคารหลังการอภิปรายอันยาวนาน และงานที่ท่าเรือด้านเหนือจะเริ่มในเดือนเมษายน",
    "ka": "ქალაქის საბჭომ სამშაბათს ხანგრძლივი დებატების შემდეგ პორტის ბიუჯეტი დაამტკიცა.",
    "hy": "Քաղաքային խորհուրդը երեքշաբթի օրը երկար քննարկումից հետո հաստատեց նավահանգստի բյուջեն։",
}
EDGES = [
    "", " ", "a", "Baku", "12 345 678", "— … —", "\x00\x00 null bytes \x00 in the middle of a sentence here",
    "abcdefghijklmnopqrs", "abcdefghijklmnopqrst", "a1b2c3d4e5f6g7h8i9j0k_l_m_n_o_p_q_r_s_t", "a_" * 19 + "b",
    "THE HARBOUR AUTHORITY SAID ON TUESDAY THAT THE PIER WOULD REOPEN IN APRIL",
    "ГОРОДСКОЙ СОВЕТ УТВЕРДИЛ БЮДЖЕТ ПОРТА ПОСЛЕ ДОЛГИХ СПОРОВ",
    "İSTANBUL'DA BELEDİYE MECLİSİ LİMAN BÜTÇESİNİ ONAYLADI",  # lower() makes "İ" two code points
    "Cafe\u0301 de\u0301ja\u0300 vu: la re\u0301union a dure\u0301 jusqu'a\u0300 minuit",  # NFD: NFC changes it
    "Ferry crews returned to work \ud83d on Wednesday after a lone surrogate \udc00 and more words",
    "Port budget approved 🚢⚓️ — crews back at work on the northern pier in April 🎉🎉",
    "Hafen Порт Λιμάνι 港口 ميناء harbour port budget бюджет προϋπολογισμός 预算 ميزانية",
    "Die Regierung said on Tuesday que le port sera rouvert en abril, según la alcaldesa.",
    "https://example.org/news/2024/03/05/harbour-budget-approved?utm_source=feed&id=12345",
    "Ja, gut. Okay. Fine. Bien. Bueno. Хорошо. Καλά. 好的。",
]


def reference_language(identifier: LanguageIdentifier, text: str, min_confidence: float) -> str | None:
    """What ``detect_language`` did before batches, on py3langid's per-text ``classify``."""
    sample = text[:400]
    if len(re.findall(r"[^\W\d_]", sample)) < MIN_LANGUAGE_LETTERS:
        return None
    lang, confidence = identifier.classify(sample)
    if confidence < max(min_confidence, MIN_LANGUAGE_CONFIDENCE):
        return None
    if lang == "tr" and sample.casefold().count("ə") >= 3:
        return "az"
    return str(lang)


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    """py3langid's own identifier, separate from the pipeline's."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def variants(texts: list[str]) -> list[str]:
    """Each text whole, all caps, cut at several lengths, doubled past 400 characters, and joined to the next."""
    out = []
    for text, following in zip(texts, texts[1:] + texts[:1], strict=True):
        out += [text, text.upper(), text[:25], text[:60], text[: len(text) // 2], (text + " ") * 4,
                text + " " + following]
    return out


def fixture_bodies() -> list[tuple[str, str]]:
    """(body, stated language) of every article of the seeds and test fixtures, read and cleaned as ingest does."""
    paths = sorted([*RAW.glob("*.txt"), *INPUTS.iterdir(), *(Path(__file__).parent / "fixtures" / "html").rglob("*")])
    out = []
    for path in paths:
        if not path.is_file() or path.suffix not in {".txt", ".html", ".json", ".jsonl"}:
            continue
        try:
            docs, _ = parse(RawEntry(path.name, path, path.stat().st_size), path.read_bytes())
        except BadInput:  # a fixture ingest quarantines
            continue
        for doc in docs:
            cleaned = clean_document(doc)
            out.append((body_text(cleaned.paragraphs), extract_metadata(doc, cleaned, detect=False).language))
    return out


def test_one_batch_classifies_every_text_exactly_as_py3langid(identifier: LanguageIdentifier) -> None:
    texts = variants(list(SCRIPTS.values())) + EDGES + [body for body, _ in fixture_bodies()]
    samples = [text[:400] for text in texts]
    # the language and the float confidence, bit for bit, whatever else is in the batch
    assert _classify_samples(samples) == [identifier.classify(sample) for sample in samples]
    assert _classify_samples(samples[::-1]) == [identifier.classify(sample) for sample in samples[::-1]]


@pytest.mark.parametrize("min_confidence", [0.0, 0.5, 0.9, SURE_LANGUAGE_CONFIDENCE])
def test_detect_languages_is_detect_language_of_before(identifier: LanguageIdentifier, min_confidence: float) -> None:
    texts = variants(list(SCRIPTS.values())) + EDGES
    expected = [reference_language(identifier, text, min_confidence) for text in texts]
    assert detect_languages(texts, [min_confidence] * len(texts)) == expected
    assert [detect_language(text, min_confidence) for text in texts] == expected


def test_detect_languages_in_chunks_is_the_same(identifier: LanguageIdentifier,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.metadata

    texts = variants(list(SCRIPTS.values())) + EDGES
    expected = [reference_language(identifier, text, 0.5) for text in texts]
    monkeypatch.setattr(pipeline.metadata, "LANGUAGE_CHUNK", 7)  # many chunks, the last one short
    assert detect_languages(texts, [0.5] * len(texts)) == expected


def test_the_batch_texts_are_in_the_languages_they_are_written_in() -> None:
    # so the comparisons above exercise many languages and scripts, not one answer throughout
    assert detect_languages(list(SCRIPTS.values()), [0.0] * len(SCRIPTS)) == list(SCRIPTS)


def test_each_text_gets_its_own_threshold(identifier: LanguageIdentifier) -> None:
    texts = variants(list(SCRIPTS.values())) + EDGES
    thresholds = [(0.0, 0.7, SURE_LANGUAGE_CONFIDENCE)[i % 3] for i in range(len(texts))]
    assert detect_languages(texts, thresholds) == [
        reference_language(identifier, text, threshold) for text, threshold in zip(texts, thresholds, strict=True)]
    with pytest.raises(ValueError):
        detect_languages(texts, thresholds[:-1])


def test_fixture_languages_settled_in_one_batch_are_those_extract_metadata_gives(
        identifier: LanguageIdentifier) -> None:
    bodies = fixture_bodies()
    metas = [Metadata(language=stated) for _, stated in bodies]
    settle_languages(metas, [body for body, _ in bodies])
    expected = []
    for body, stated in bodies:
        if stated is None:
            expected.append(reference_language(identifier, body, 0.0))
        else:
            sure = reference_language(identifier, body, SURE_LANGUAGE_CONFIDENCE)
            expected.append(sure if sure and sure != stated else stated)
    assert [m.language for m in metas] == expected
    assert len(bodies) > 40 and {"en", "de", "fr", "ru"} <= set(expected)
