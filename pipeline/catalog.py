"""The passage catalog: every repeated passage as data, read from the state database.

A passage is a paragraph that was the first occurrence of a text later repeated (its
``role`` is 1 and at least one ``role`` 0 paragraph points to it). It is named by its first
occurrence, ``"<record id>:<paragraph index>"``, the same id a repeat's ``repeat_of.passage``
carries. Read in one snapshot through a read-only connection, like ``records.read_records``:
it never blocks a running flow. Fields are documented in processed/README.md.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.records import passage_id
from pipeline.state import connect

UNDATED = "~"  # the sort key of an undated article (pipeline.ingest.UNDATED)

PASSAGE_FIELDS = (
    "passage", "text", "first_record", "first_paragraph", "first_published", "copies", "articles", "outlets",
    "first_seen", "last_seen",
)

# One row per repeat, grouped by the passage it repeats; passages in the order of their
# first occurrence (publication order), repeats in theirs.
_REPEATS = """
SELECT p.repeat_record, p.repeat_idx, p.record_id, p.idx, p.similarity, p.estimated,
       a.sort_key,
       json_extract(a.record, '$.published') AS published, json_extract(a.record, '$.outlet') AS outlet
FROM paragraphs p
JOIN articles a ON a.record_id = p.record_id
JOIN articles f ON f.record_id = p.repeat_record
WHERE p.role = 0
ORDER BY f.sort_key, f.path, f.item, p.repeat_idx, a.sort_key, a.path, a.item, p.idx
"""

_FIRST = """
SELECT sort_key, json_extract(record, '$.published') AS published,
       json_extract(record, '$.outlet') AS outlet, json_extract(record, ?) AS text
FROM articles WHERE record_id = ?
"""


def read_passages(processed_dir: str | Path, occurrences: bool = False) -> Iterator[dict[str, Any]]:
    """Every repeated passage, ordered by its first occurrence's publication.

    With ``occurrences`` each passage also lists its repeats (record, paragraph, exact and
    estimated similarity); a boilerplate passage may have thousands, so it is off by default.
    """
    conn = connect(Path(processed_dir), readonly=True)
    try:
        conn.execute("BEGIN")  # one snapshot: passages and counts agree with each other
        group: list[sqlite3.Row] = []
        for row in conn.execute(_REPEATS):
            key = (row["repeat_record"], row["repeat_idx"])
            if group and key != (group[0]["repeat_record"], group[0]["repeat_idx"]):
                yield _passage(conn, group, occurrences)
                group = []
            group.append(row)
        if group:
            yield _passage(conn, group, occurrences)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _passage(conn: sqlite3.Connection, repeats: list[sqlite3.Row], occurrences: bool) -> dict[str, Any]:
    record_id, index = repeats[0]["repeat_record"], repeats[0]["repeat_idx"]
    first = conn.execute(_FIRST, (f"$.paragraphs[{int(index)}].text", record_id)).fetchone()
    involved = [first, *repeats]
    dated = sorted((r["sort_key"], r["published"]) for r in involved if r["sort_key"] != UNDATED and r["published"])
    passage: dict[str, Any] = {
        "passage": passage_id(record_id, index),
        "text": first["text"],
        "first_record": record_id,
        "first_paragraph": index,
        "first_published": first["published"],
        "copies": len(repeats),
        "articles": len({record_id} | {r["record_id"] for r in repeats}),
        "outlets": sorted({r["outlet"] for r in involved if r["outlet"]}),
        "first_seen": dated[0][1] if dated else None,
        "last_seen": dated[-1][1] if dated else None,
    }
    if occurrences:
        passage["occurrences"] = [
            {"record": r["record_id"], "paragraph": r["idx"], "published": r["published"], "outlet": r["outlet"],
             "similarity": r["similarity"], "estimated_similarity": r["estimated"]}
            for r in repeats
        ]
    return passage
