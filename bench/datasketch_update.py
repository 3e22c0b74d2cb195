"""Baseline: the script a user would write from the datasketch README (``update()`` per shingle).

The same script as ``bench/datasketch_bulk.py`` (read, split paragraphs on blank lines, word
shingles, ``MinHashLSH`` query then insert, exact Jaccard, never within one file), with each
signature built by ``MinHash()`` and one ``update()`` per shingle instead of ``MinHash.bulk``.

    .venv/bin/python bench/datasketch_update.py RAW_DIR

Prints one JSON line: paragraphs, sketched, repeats, seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasketch import MinHash  # noqa: E402
from datasketch_bulk import DEFAULTS, main  # noqa: E402


def update_each(sets: list[set[bytes]]) -> list[MinHash]:
    minhashes = []
    for shingle_set in sets:
        m = MinHash(num_perm=DEFAULTS.num_perm)
        for shingle in shingle_set:
            m.update(shingle)
        minhashes.append(m)
    return minhashes


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} RAW_DIR")
    main(Path(sys.argv[1]), update_each, "datasketch_update")
