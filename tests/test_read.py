"""Reading raw files: encodings, refusals, JSON/JSONL exports, mojibake repair."""

from __future__ import annotations

import codecs
import hashlib
import os
from pathlib import Path

import pytest

from pipeline.read import BadInput, Document, RawEntry, decode_text, parse, read_bytes, repair_mojibake, scan_raw

INPUTS = Path(__file__).parent / "fixtures" / "inputs"
RU_TEXT = (INPUTS / "ru_utf8_bom.txt").read_bytes()[3:].decode("utf-8")


def entry_for(path: Path, rel: str | None = None) -> RawEntry:
    return RawEntry(rel or path.name, path, path.stat().st_size)


def parse_file(path: Path) -> tuple[list[Document], list]:
    return parse(entry_for(path), path.read_bytes())


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\n\t  \n"])
def test_empty_file_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(BadInput, match="empty file"):
        parse_file(write(tmp_path, "a.txt", data))


def test_binary_file_is_refused(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
    with pytest.raises(BadInput, match="binary content"):
        parse_file(write(tmp_path, "image.txt", png))


def test_undecodable_bytes_are_refused() -> None:
    with pytest.raises(BadInput, match="undecodable"):
        decode_text(codecs.BOM_UTF8 + b"caf\xe9 \xff\xfe broken")
    with pytest.raises(BadInput, match="undecodable"):
        decode_text(b"\xff\xfe\xfd" * 100)  # a UTF-16 BOM followed by noise


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", b"word " * 1000)
    with pytest.raises(BadInput, match="file too large: 5000 bytes, limit is 100"):
        read_bytes(entry_for(path), max_bytes=100)
    assert read_bytes(entry_for(path), max_bytes=5000) == b"word " * 1000


def test_file_that_grew_after_the_scan_is_read_whole_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "growing.txt"
    path.write_bytes(b"word " * 1000)
    scanned = RawEntry("growing.txt", path, 100)  # the scan saw an early, shorter version
    assert read_bytes(scanned, max_bytes=5000) == b"word " * 1000
    with pytest.raises(BadInput, match="too large"):
        read_bytes(scanned, max_bytes=4000)


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    outside = write(tmp_path, "secret.txt", b"outside the raw dir")
    os.symlink(outside, raw / "link.txt")
    write(raw, "real.txt", b"A real article about the ceasefire.")
    entries, problems = scan_raw(raw)
    assert [e.path for e in entries] == ["real.txt"]
    assert [(p.path, p.reason.split(":")[0]) for p in problems] == [("link.txt", "symlink not followed")]


def test_file_swapped_for_a_symlink_after_the_scan_is_not_read(tmp_path: Path) -> None:
    outside = write(tmp_path, "secret.txt", b"outside the raw dir")
    link = tmp_path / "a.txt"
    os.symlink(outside, link)
    with pytest.raises(OSError):
        read_bytes(RawEntry("a.txt", link, 19))


# --- encodings -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "ru_utf8_bom.txt", "ru_utf16le_bom.txt", "ru_utf16be_bom.txt", "ru_utf16le_nobom.txt", "ru_cp1251.txt",
])
def test_russian_in_every_encoding_reads_the_same(name: str) -> None:
    (doc,), problems = parse_file(INPUTS / name)
    assert problems == []
    assert doc.text == RU_TEXT
    assert doc.text.startswith("Лавров провел переговоры в Москве\n\nМинистр иностранных дел")


@pytest.mark.parametrize("name", ["en_utf16le_nobom.txt", "en_utf16be_nobom.txt"])
def test_utf16_without_bom(name: str) -> None:
    (doc,), _ = parse_file(INPUTS / name)
    assert doc.text == ("The ceasefire held overnight, officials in both capitals said on Sunday morning.\n\n"
                        "Talks resume on Monday.\n")


def test_utf32_and_utf8_boms_are_stripped() -> None:
    assert decode_text(codecs.BOM_UTF32_LE + "Baku news".encode("utf-32-le")) == "Baku news"
    assert decode_text(codecs.BOM_UTF8 + b"Baku news") == "Baku news"


def test_windows_1252_text() -> None:
    (doc,), _ = parse_file(INPUTS / "en_cp1252.txt")
    assert doc.text.startswith("The minister said the army\u2019s advance \u2013 which began on Sunday \u2013 was "
                               "\u201cirreversible\u201d.")


def test_latin1_text() -> None:
    (doc,), _ = parse_file(INPUTS / "fr_latin1.txt")
    assert doc.text.startswith("L'armée azerbaïdjanaise a libéré plusieurs villages près de la ligne de front")
    assert "courage « exceptionnel »" in doc.text


def test_sha256_is_of_the_original_bytes() -> None:
    path = INPUTS / "ru_cp1251.txt"
    (doc,), _ = parse_file(path)
    assert doc.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# --- mojibake ------------------------------------------------------------------------------


def test_mojibake_is_repaired() -> None:
    (doc,), _ = parse_file(INPUTS / "mojibake_utf8.txt")
    assert "Azerbaijan\u2019s Defense Ministry" in doc.text
    assert "\u201cThe operation continues,\u201d he told reporters at the café." in doc.text
    assert "Azərbaycan Ordusu əks-hücum əməliyyatı çərçivəsində bir neçə kəndi işğaldan azad edib." in doc.text
    assert "â€" not in doc.text and "Ã" not in doc.text


@pytest.mark.parametrize("text", [
    "Café déjà vu – “quoted” — Azərbaycan Ordusu, Türkiye’nin desteği, Министр Лавров, حرر الجيش",
    "naïve façade, Ærøskøbing, Ça va? 5 £ and 10 € — São Paulo",
    "Straße, Größe, Übung; ÀÉÎÕÜ àéîõü; İstanbul, ığüşöç",
    RU_TEXT,
])
def test_correct_text_is_never_altered(text: str) -> None:
    assert repair_mojibake(text) == text


def test_mojibake_in_json_escapes_is_repaired(tmp_path: Path) -> None:
    data = b'{"title": "Caf\\u00c3\\u00a9 talks", "text": "The army\\u00e2\\u20ac\\u2122s advance continued."}'
    (doc,), _ = parse_file(write(tmp_path, "a.json", data))
    assert doc.meta["title"] == "Café talks"
    assert doc.text == "The army\u2019s advance continued."


# --- JSON and JSON Lines -------------------------------------------------------------------


def test_json_export_maps_common_field_names() -> None:
    docs, problems = parse_file(INPUTS / "scraper_export.json")
    assert [d.item for d in docs] == [0, 1, 3]
    first, second, fourth = docs
    assert first.meta == {
        "title": "Turkey reiterates support for Azerbaijan", "url": "https://example.com/news/turkey-support",
        "published": "Mon, 28 Sep 2020 10:15:00 +0300", "author": "By Ayse Demir", "outlet": "Example Wire",
        "section": "World",
    }
    assert first.extra == {"tags": ["Turkey", "Azerbaijan"], "scraped_at": "2020-09-28T12:00:00Z"}
    assert first.text is not None and first.text.startswith("Ankara reiterated its support")
    assert first.format == "json"
    assert second.meta == {"title": "Azərbaycan Ordusu bir neçə kəndi azad edib", "url": "https://example.az/xeber/1",
                           "published": "27 September 2020", "author": "Trend", "language": "az"}
    assert fourth.blocks == [
        ("body", "Russian Foreign Minister Sergey Lavrov held separate meetings with his Armenian and Azerbaijani "
                 "counterparts in Moscow on Wednesday."),
        ("heading", "Next steps"),
        ("body", "The ministers are due to meet the US Secretary of State on Friday, officials said."),
    ]
    assert fourth.meta["published"] == "2020-10-21T19:35:00+03:00"
    assert [(p.item, p.reason.split(" (")[0]) for p in problems] == [(2, "object holds no article text")]


def test_jsonl_bad_line_is_reported_and_the_others_read() -> None:
    docs, problems = parse_file(INPUTS / "scraper_feed.jsonl")
    assert [d.item for d in docs] == [0, 2, 3]
    assert [d.meta.get("title") for d in docs] == [
        "Türkiye Azerbaycan'a desteğini yineledi", "Лавров провел переговоры", "لافروف يجري محادثات في موسكو"]
    assert docs[1].meta == {"title": "Лавров провел переговоры", "url": "https://example.ru/1",
                            "published": "2020-10-21", "author": "Иван Петров", "outlet": "Пример Новости"}
    assert docs[2].text is not None and docs[2].text.startswith("أجرى وزير الخارجية الروسي")
    assert [(p.item, p.reason) for p in problems] == [
        (1, "malformed JSON on line 2, column 34: Unterminated string starting at"),
        (4, "expected a JSON object per article, found list"),
    ]
    assert all(p.sha256 == docs[0].sha256 for p in problems)


def test_malformed_json_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"malformed JSON at line 1, column \d+"):
        parse_file(write(tmp_path, "a.json", b'{"title": "x", "text": '))


def test_json_lines_saved_as_json_are_read(tmp_path: Path) -> None:
    data = b'{"title": "One", "text": "First article."}\n{"title": "Two", "text": "Second article."}\n'
    docs, problems = parse_file(write(tmp_path, "a.json", data))
    assert [(d.item, d.text) for d in docs] == [(0, "First article."), (1, "Second article.")]
    assert problems == []


def test_json_objects_without_text_are_reported(tmp_path: Path) -> None:
    data = b'[{"title": "No body", "url": "https://x.test/1"}, {"text": "   "}, {"text": "Body."}]'
    docs, problems = parse_file(write(tmp_path, "a.json", data))
    assert [d.item for d in docs] == [2]
    assert [p.item for p in problems] == [0, 1]
    assert all(p.reason.startswith("object holds no article text") for p in problems)


def test_json_with_only_empty_objects_is_all_problems(tmp_path: Path) -> None:
    docs, problems = parse_file(write(tmp_path, "a.json", b'{"title": "nothing else"}'))
    assert docs == [] and [p.item for p in problems] == [0]
    with pytest.raises(BadInput, match="no article objects"):
        parse_file(write(tmp_path, "b.json", b"[]"))


def test_a_missing_raw_dir_is_an_error_not_an_empty_corpus(tmp_path: Path) -> None:
    from pipeline.read import RawDirError, scan_raw

    with pytest.raises(RawDirError, match="does not exist"):
        scan_raw(tmp_path / "not-mounted")


def test_a_json_object_with_a_script_only_page_falls_back_to_its_text_field() -> None:
    from pipeline.read import json_object_document

    page = "<html><body><div id='app'></div><script src='bundle.js'></script></body></html>"
    text = "The council approved the new harbour budget on Tuesday after a long debate about its costs."
    doc = json_object_document("feed.json", 0, "0" * 64, {"html": page, "text": text})
    assert doc.text == text
    with pytest.raises(BadInput, match="no article text"):
        json_object_document("feed.json", 1, "0" * 64, {"html": page})


def test_json_items_are_keyed_by_their_own_id_url_or_content_not_their_position(tmp_path: Path) -> None:
    items = [
        '{"guid": "urn:wire:77", "title": "A", "text": "First story text."}',
        '{"id": 12, "url": "https://example.org/b", "text": "Second story text."}',
        '{"link": "https://example.org/c", "text": "Third story text."}',
        '{"title": "D", "text": "Fourth story text.", "fetched_at": "2024-03-05T10:00:00Z"}',
        '{"title": "D", "text": "Fourth story text.", "fetched_at": "2024-03-06T10:00:00Z"}',
    ]
    forward, _ = parse_file(write(tmp_path, "feed.jsonl", "\n".join(items).encode()))
    backward, _ = parse_file(write(tmp_path, "feed.jsonl", "\n".join(reversed(items)).encode()))
    keys = [d.key for d in forward]
    assert keys[:3] == ["id:urn:wire:77", "id:12", "url:https://example.org/c"]
    # no id or url: the title and body name it (a new fetch time does not); met twice: by occurrence
    assert keys[3].startswith("content:") and keys[4] == keys[3] + "#2"
    assert {d.key: d.text for d in backward} == {d.key: d.text for d in forward}
    assert [d.item for d in backward] == [0, 1, 2, 3, 4]  # the position is still stated, in source.item
    [lone], _ = parse_file(write(tmp_path, "one.json", b'{"id": "x", "text": "A lone article."}'))
    assert lone.key is None  # one article in the file: named by the file, like a text file


def test_markdown_is_read_as_markdown(tmp_path: Path) -> None:
    text = ("---\ntitle: Front matter title\ndate: 2024-03-05\n---\n\n# Heading one\n\nA paragraph with **bold**, "
            "*emphasis*, `code` and a [link](https://example.org) over\ntwo lines.\n\n![photo](a.jpg)\n\n"
            "## Sub-heading\n\n> A quoted line.\n\n1. First item\n2. Second item\n")
    [doc], problems = parse_file(write(tmp_path, "story.md", text.encode()))
    assert problems == [] and doc.format == "text" and doc.text is None
    assert doc.meta == {"title": "Front matter title", "published": "2024-03-05"}
    assert doc.blocks == [
        ("heading", "Heading one"),  # the front matter states the title: the first heading is a heading
        ("body", "A paragraph with bold, emphasis, code and a link over two lines."),
        ("heading", "Sub-heading"), ("body", "A quoted line."), ("body", "First item"), ("body", "Second item"),
    ]
    [plain], _ = parse_file(write(tmp_path, "plain.markdown", b"# The title\n\nBody text of it.\n"))
    assert plain.meta == {"title": "The title"} and plain.blocks == [("body", "Body text of it.")]
    with pytest.raises(BadInput, match="no paragraphs"):
        parse_file(write(tmp_path, "empty.md", b"# Only a title\n\n![x](y.png)\n"))


def test_the_scan_notes_each_file_size_and_mtime_from_one_stat(tmp_path: Path) -> None:
    """A plan compares size and mtime with the state: both come from the scan's own stat, so a
    file is never seen with the size of one moment and the mtime of another."""
    (tmp_path / "sub").mkdir()
    first, second = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    first.write_text("One story in plain words.\n", encoding="utf-8")
    second.write_text("Another story.\n", encoding="utf-8")
    os.utime(second, ns=(1_000_000_000, 1_000_000_000))
    entries, problems = scan_raw(tmp_path)
    assert not problems
    by_path = {e.path: e for e in entries}
    assert by_path["a.txt"].mtime_ns == first.stat().st_mtime_ns
    assert by_path["sub/b.txt"].mtime_ns == 1_000_000_000
    os.utime(second, ns=(2_000_000_000, 2_000_000_000))  # touched after the scan: the scan's value stands
    assert by_path["sub/b.txt"].modified_ns() == 1_000_000_000
    assert RawEntry("a.txt", first, 1).modified_ns() == first.stat().st_mtime_ns  # unknown: stat now
