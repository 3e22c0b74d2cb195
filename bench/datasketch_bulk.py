"""Baseline: the script a user would write from the datasketch README (``MinHash.bulk``).

Reads every .txt under RAW_DIR in file order, splits paragraphs on blank lines, sketches
the word shingles of each paragraph with ``MinHash.bulk``, then for each paragraph in order
queries a ``MinHashLSH`` index, verifies the candidates by exact Jaccard of their shingle
sets (never against a paragraph of the same file) and inserts it. Tokenisation, shingle
size, ``num_perm``, threshold and minimum length are newsdedup's defaults (imported).

    .venv/bin/python bench/datasketch_bulk.py RAW_DIR

Prints one JSON line: paragraphs, sketched, repeats, seconds.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasketch import MinHash, MinHashLSH  # noqa: E402

from pipeline.dedup import DedupSettings, tokenize  # noqa: E402

DEFAULTS = DedupSettings()
BLANK_LINE = re.compile(r"\n\s*\n")


def shingles(words: list[str], size: int) -> set[bytes]:
    if len(words) < size:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b)


def bulk(sets: list[set[bytes]]) -> list[MinHash]:
    return MinHash.bulk(sets, num_perm=DEFAULTS.num_perm)


def main(raw_dir: Path, sketch: Callable[[list[set[bytes]]], list[MinHash]] = bulk,
         script: str = "datasketch_bulk") -> None:
    """Read, shingle, ``sketch``, then query-and-insert with exact verification."""
    started = time.perf_counter()
    file_of: list[int] = []  # file number of each sketched paragraph
    sets: list[set[bytes]] = []
    paragraphs = 0
    for f, path in enumerate(sorted(raw_dir.rglob("*.txt"))):
        for text in BLANK_LINE.split(path.read_text(encoding="utf-8")):
            if not text.strip():
                continue
            paragraphs += 1
            words = tokenize(text)
            if len(words) >= DEFAULTS.min_words:  # too short to be evidence on its own
                file_of.append(f)
                sets.append(shingles(words, DEFAULTS.shingle_size))
    minhashes = sketch(sets)
    lsh = MinHashLSH(threshold=DEFAULTS.threshold, num_perm=DEFAULTS.num_perm)
    repeats = 0
    for i, m in enumerate(minhashes):  # query, then insert: each paragraph against the earlier ones
        for j in lsh.query(m):
            if file_of[j] != file_of[i] and jaccard(sets[i], sets[j]) >= DEFAULTS.threshold:
                repeats += 1
                break
        lsh.insert(i, m)
    print(json.dumps({"script": script, "paragraphs": paragraphs, "sketched": len(sets),
                      "repeats": repeats, "seconds": round(time.perf_counter() - started, 3)}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} RAW_DIR")
    main(Path(sys.argv[1]))
