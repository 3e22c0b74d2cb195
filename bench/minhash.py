"""Benchmark: sketching and LSH against what a user would otherwise pick (datasketch).

Paragraphs are generated from the sample corpus's vocabulary (30-70 words each). Figures are
paragraphs per CPU-second (time.process_time), so a busy machine skews them less.

    .venv/bin/python bench/minhash.py [--paragraphs 20000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datasketch import MinHash, MinHashLSH  # noqa: E402

from pipeline.dedup import DedupSettings, band_keys, tokenize  # noqa: E402
from pipeline.units import UnitSketcher  # noqa: E402


def paragraphs(n: int, seed: int = 1) -> list[str]:
    words = sorted({w for p in (ROOT / "raw").glob("*.txt") for w in p.read_text().split()})
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=rng.randint(30, 70))) for _ in range(n)]


def per_cpu_second(label: str, count: int, fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    rate = count / (time.process_time() - start)
    print(f"  {label:<58} {rate:>10,.0f} paragraphs/s")
    return rate


def shingle_strings(text: str, size: int) -> list[bytes]:
    toks = tokenize(text)
    return [" ".join(toks[i : i + size]).encode() for i in range(max(1, len(toks) - size + 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=20000)
    args = parser.parse_args()
    settings = DedupSettings()
    texts = paragraphs(args.paragraphs)
    small = texts[: max(1, args.paragraphs // 10)]  # the slow paths get a tenth of the work
    print(f"{args.paragraphs:,} paragraphs, word {settings.shingle_size}-grams, {settings.num_perm} permutations")

    per_cpu_second("tokenize only", len(texts), lambda: [tokenize(t) for t in texts])

    def update_each() -> None:
        for t in small:
            m = MinHash(num_perm=settings.num_perm)
            for s in shingle_strings(t, settings.shingle_size):
                m.update(s)

    per_cpu_second("datasketch MinHash.update() per shingle", len(small), update_each)
    per_cpu_second("datasketch MinHash.bulk()", len(texts),
                   lambda: MinHash.bulk([shingle_strings(t, settings.shingle_size) for t in texts],
                                        num_perm=settings.num_perm))
    sketcher = UnitSketcher(settings)
    articles = [[("body", t)] for t in texts]
    sketcher.sketch(articles[:10])  # permutations built outside the timing
    per_cpu_second("newsdedup UnitSketcher (sentences, shingles, signatures; batch)", len(texts),
                   lambda: sketcher.sketch(articles))

    units = sketcher.sketch(articles)
    keys = [band_keys(u.signatures, settings.bands, settings.rows).ravel() for u in units]
    mins = MinHash.bulk([shingle_strings(t, settings.shingle_size) for t in texts], num_perm=settings.num_perm)

    def datasketch_lsh() -> None:
        lsh = MinHashLSH(num_perm=settings.num_perm, params=(settings.bands, settings.rows))
        for i, m in enumerate(mins):
            lsh.query(m)
            lsh.insert(i, m)

    def newsdedup_buckets() -> None:
        buckets: dict[int, list[int]] = {}
        for i, article_keys in enumerate(keys):
            for key in article_keys.tolist():
                buckets.get(key)
            for key in article_keys.tolist():
                buckets.setdefault(key, []).append(i)

    per_cpu_second("datasketch MinHashLSH query + insert (in memory)", len(texts), datasketch_lsh)
    per_cpu_second("newsdedup band keys query + insert (in memory)", len(texts), newsdedup_buckets)
    print("  (the persistent index, with verification and records, is measured by bench/incremental.py)")


if __name__ == "__main__":
    main()
