"""The passage catalog: every repeated passage as data, read from the state database.

A passage is background text that later articles repeat: a run of consecutive sentences of
its first occurrence, however a copy breaks it into paragraphs or merges it with news. It is
named by where it starts in its first occurrence, ``"<record id>:<paragraph index>"``, the
same id that ``repeat_of.passage`` and ``repeated_spans[].passage`` carry. Read in one
snapshot through a read-only connection, like ``records.read_records``: it never blocks a
running flow. Fields are documented in processed/README.md.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.state import connect

UNDATED = "~"  # the sort key of an undated article (pipeline.ingest.UNDATED)

PASSAGE_FIELDS = (
    "passage", "text", "first_record", "first_paragraph", "first_published", "copies", "variants", "articles",
    "outlets", "first_seen", "last_seen",
)

# One row per repeated span, grouped by passage; passages in the order of their first
# occurrence (publication order), copies in theirs.
_SPANS = """
SELECT s.passage, s.record_id, s.para, s.start_char, s.end_char, s.similarity, s.whole,
       a.sort_key, json_extract(a.record, '$.published') AS published,
       json_extract(a.record, '$.outlet') AS outlet,
       substr(json_extract(a.record, '$.paragraphs[' || s.para || '].text'), s.start_char + 1,
              s.end_char - s.start_char) AS text
FROM spans s
JOIN articles a ON a.record_id = s.record_id
JOIN articles f ON f.record_id = substr(s.passage, 1, instr(s.passage, ':') - 1)
ORDER BY f.sort_key, f.path, f.item, CAST(substr(s.passage, instr(s.passage, ':') + 1) AS INTEGER),
         a.sort_key, a.path, a.item, s.para, s.start_char
"""

_FIRST = """
SELECT sort_key, json_extract(record, '$.published') AS published,
       json_extract(record, '$.outlet') AS outlet, record
FROM articles WHERE record_id = ?
"""

# The first-occurrence sentences a passage's copies repeat, in their order.
_ROOTS = """
SELECT DISTINCT r.seq, r.para, r.start_char, r.end_char FROM units u JOIN units r ON r.uid = u.root_uid
WHERE u.passage = ? AND u.match_uid IS NOT NULL AND r.record_id = ? ORDER BY r.seq
"""


def read_passages(processed_dir: str | Path, occurrences: bool = False) -> Iterator[dict[str, Any]]:
    """Every repeated passage, ordered by its first occurrence's publication.

    With ``occurrences`` each passage also lists its copies (record, paragraph, span, exact
    similarity); a boilerplate passage may have thousands, so it is off by default.
    """
    conn = connect(Path(processed_dir), readonly=True)
    try:
        conn.execute("BEGIN")  # one snapshot: passages and counts agree with each other
        group: list[sqlite3.Row] = []
        for row in conn.execute(_SPANS):
            if group and row["passage"] != group[0]["passage"]:
                yield _passage(conn, group, occurrences)
                group = []
            group.append(row)
        if group:
            yield _passage(conn, group, occurrences)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\w+", text.casefold()))


def _passage(conn: sqlite3.Connection, copies: list[sqlite3.Row], occurrences: bool) -> dict[str, Any]:
    passage_key = copies[0]["passage"]
    record_id, index = passage_key.rsplit(":", 1)
    first = conn.execute(_FIRST, (record_id,)).fetchone()
    paragraphs = json.loads(first["record"])["paragraphs"]
    roots = conn.execute(_ROOTS, (passage_key, record_id)).fetchall()
    if roots:
        text = " ".join(paragraphs[r["para"]]["text"][r["start_char"]:r["end_char"]] for r in roots)
    else:  # a house line: the whole first paragraph
        text = paragraphs[int(index)]["text"]
    involved = [first, *copies]
    dated = sorted((r["sort_key"], r["published"]) for r in involved if r["sort_key"] != UNDATED and r["published"])
    passage: dict[str, Any] = {
        "passage": passage_key,
        "text": text,
        "first_record": record_id,
        "first_paragraph": int(index),
        "first_published": first["published"],
        "copies": len(copies),
        "variants": len({_words(c["text"] or "") for c in copies}),
        "articles": len({record_id} | {r["record_id"] for r in copies}),
        "outlets": sorted({r["outlet"] for r in involved if r["outlet"]}),
        "first_seen": dated[0][1] if dated else None,
        "last_seen": dated[-1][1] if dated else None,
    }
    if occurrences:
        passage["occurrences"] = [
            {"record": r["record_id"], "paragraph": r["para"], "start": r["start_char"], "end": r["end_char"],
             "whole_paragraph": bool(r["whole"]), "published": r["published"], "outlet": r["outlet"],
             "similarity": r["similarity"]}
            for r in copies
        ]
    return passage
