"""Near-duplicate detection primitives: word shingles, batch MinHash, LSH band keys, exact Jaccard.

The settings below were chosen on the sample corpus (see ``DedupSettings``) and are the
defaults (``pipeline.settings`` reads other values from newsdedup.toml, NEWSDEDUP_* variables
and flags). They are stored with the index: a run with other decision settings re-decides
the stored articles; one with other ``SIGNATURE_FIELDS`` is refused until ``newsdedup
reindex`` has rebuilt the sketches.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)

# MurmurHash3 32-bit finalizer constants (the same mixer datasketch applies in its
# "affine32" scheme before permuting).
_FMIX_M1 = np.uint32(0x85EBCA6B)
_FMIX_M2 = np.uint32(0xC2B2AE35)
_U64_MIX = np.uint64(0x9E3779B97F4A7C15)


# Settings that change the stored units and sketches (segmentation, shingles, signatures,
# LSH keys): a processed dir built with other values must be rebuilt (``newsdedup reindex``).
# The others change only decisions, which a run can redo from the stored sketches.
SIGNATURE_FIELDS = ("shingle_size", "num_perm", "bands", "rows", "seed", "min_words")


@dataclass(frozen=True)
class DedupSettings:
    """What counts as a repeated passage (stored with the state: signatures cannot be mixed).

    The unit of evidence is a sentence (or a window of short sentences, ``pipeline.units``):
    background is cut, merged and re-broken by every outlet, but its sentences survive.

    - ``shingle_size=3``: word 3-grams. A sentence has few 5-grams, and one swapped word
      kills five of them: a 37-word paragraph with two swaps scores 0.41 in 5-grams, 0.71 in
      3-grams. Shared phrases of same-topic news ("Foreign Minister Sergei Lavrov") stay
      far below the threshold at sentence length (3-gram Jaccard under 0.25 in the seeds).
    - ``threshold=0.45``: exact 3-gram Jaccard a unit must reach with its match. The seeds'
      lightest true edit scores 0.78 at sentence level; paraphrases of the same background
      (001, 003) score under 0.3. On the synthetic corpus (edits of up to 15 % of the words)
      0.5 -> 0.45 raises paragraph recall 0.84 -> 0.86 with no original sentence touched
      (bench/quality.py); 0.4 gains 0.02 more but comes closer to same-topic news.
    - ``bands=16, rows=2`` over ``num_perm=32``: the LSH S-curve 1-(1-J^2)^16 proposes a
      pair with probability 0.98 at J=0.45 and 0.999 at J=0.6; false candidates are verified
      exactly, so they cost a comparison, not a wrong decision. 16 keys per unit keep the
      index small (it holds one row per distinct key).
    - ``min_words=8``: a unit shorter than this ("He said.") is never evidence alone; shorter
      sentences are joined into windows, and a stub only counts next to real evidence.
    - ``extend_threshold=0.4``: containment of a neighbour of a verified unit in the
      neighbour of its match (a sentence cut in two by a moved break, or edited heavily):
      0.5 -> 0.4 raises synthetic recall 0.77 -> 0.84. The closest sentence that must not
      count, seed 002's news after a repeated opening, is 0.26 contained in its neighbour.
    - ``numbers_threshold=0.7``: the similarity (and containment, for a neighbour) a match
      must reach when the two sentences state different numbers. A daily template with new
      figures ("512 new cases" / "630 new cases", an exchange rate, a casualty count) scores
      0.46-0.65 and is news; a long background sentence with one updated figure scores 0.75+.
    - ``paragraph_share=0.8``: a paragraph is a repeat when its repeated spans cover 80 % of
      its words. Below that it keeps its own sentence of news as body (seed 004's merged
      paragraph: 77 % repeated, its last sentence is news) and carries the spans.
    - ``house_line_articles=2``: a short line is a house line once two earlier articles of
      the same outlet carry it word for word; seen once before is never enough.
    - ``duplicate_share=0.8``: an article is a whole copy of an earlier one when 80 % of its
      body words are matched into that one article (a syndicated copy with a lead added).
    """

    shingle_size: int = 3
    num_perm: int = 32
    bands: int = 16
    rows: int = 2
    threshold: float = 0.45
    min_words: int = 8
    extend_threshold: float = 0.4
    numbers_threshold: float = 0.7
    paragraph_share: float = 0.8
    house_line_articles: int = 2
    duplicate_share: float = 0.8
    seed: int = 1

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.num_perm:
            raise ValueError("bands * rows must not exceed num_perm")
        for name in ("threshold", "extend_threshold", "numbers_threshold", "paragraph_share", "duplicate_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1]")
        if self.shingle_size < 1 or self.min_words < 1 or self.house_line_articles < 1:
            raise ValueError("shingle_size, min_words and house_line_articles must be at least 1")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; ``\\w`` keeps every script (Cyrillic, Arabic, ...)."""
    return _TOKEN_RE.findall(text.casefold())


def _token_hash(token: str) -> int:
    # crc32 is stable across processes (unlike hash()) and costs one C call.
    return zlib.crc32(token.encode("utf-8"))


def shingle_hashes(tokens: Sequence[str], size: int) -> np.ndarray:
    """Sorted unique 32-bit hashes of the word ``size``-grams of ``tokens``.

    A text shorter than ``size`` words is one shingle, so short texts still compare.
    """
    if not tokens:
        return np.empty(0, dtype=np.uint32)
    th = np.fromiter((_token_hash(t) for t in tokens), dtype=np.uint64, count=len(tokens))
    width = min(size, len(th))
    n = len(th) - width + 1
    acc = np.zeros(n, dtype=np.uint64)
    for offset in range(width):
        # Polynomial combination mod 2^64 (wrapping is intended), order-sensitive.
        acc = acc * _U64_MIX + th[offset : offset + n]
    folded = ((acc >> np.uint64(32)) ^ acc).astype(np.uint32)
    return np.unique(folded)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique shingle-hash arrays."""
    if a.size == 0 and b.size == 0:
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def jaccard_many(left: Sequence[np.ndarray], right: Sequence[np.ndarray], chunk: int = 100_000) -> np.ndarray:
    """``jaccard(left[i], right[i])`` for every i, with a fixed number of numpy calls per chunk
    of pairs: both sides keyed by pair, sorted together; a value seen twice is in both sets."""
    out = np.zeros(len(left), dtype=np.float64)
    for first in range(0, len(left), chunk):
        lhs, rhs = left[first : first + chunk], right[first : first + chunk]
        n = len(lhs)
        lsz = np.fromiter((a.size for a in lhs), dtype=np.int64, count=n)
        rsz = np.fromiter((b.size for b in rhs), dtype=np.int64, count=n)
        if not (lsz.sum() + rsz.sum()):
            continue
        pair = np.arange(n, dtype=np.uint64)
        keyed = np.concatenate([np.repeat(pair, lsz), np.repeat(pair, rsz)]) << np.uint64(32)
        keyed |= np.concatenate([*lhs, *rhs]).astype(np.uint64)
        keyed.sort()
        both = keyed[1:][keyed[1:] == keyed[:-1]] >> np.uint64(32)
        inter = np.bincount(both.astype(np.int64), minlength=n)
        union = lsz + rsz - inter
        out[first : first + n] = np.divide(inter, union, out=np.zeros(n), where=union > 0)
    return out


def _fmix32(values: np.ndarray) -> np.ndarray:
    v = values ^ (values >> np.uint32(16))
    v = v * _FMIX_M1
    v = v ^ (v >> np.uint32(13))
    v = v * _FMIX_M2
    return v ^ (v >> np.uint32(16))


class MinHasher:
    """Batch MinHash signatures, identical to datasketch's ``affine32`` scheme.

    One numpy pass over the shingles of a whole batch of paragraphs; datasketch supplies
    the permutations, so a signature equals ``MinHash(num_perm, seed, scheme="affine32",
    hashfunc=identity)`` fed the same shingle hashes (tested).
    """

    # Shingles per numpy chunk: bounds the (num_perm x chunk) temporary to ~32 MB.
    chunk_shingles = 65536

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        # Imported here: datasketch's package imports scipy (0.8 s), which every CLI command
        # would pay for on start-up; only sketching needs it.
        from datasketch import MinHash

        perms = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self.num_perm = num_perm
        self._a = np.asarray(perms[0], dtype=np.uint32)[:, None]
        self._b = np.asarray(perms[1], dtype=np.uint32)[:, None]

    def signatures(self, shingle_sets: Sequence[np.ndarray]) -> np.ndarray:
        """(len(shingle_sets), num_perm) uint32; an empty set gets the all-max signature."""
        sizes = np.fromiter((s.size for s in shingle_sets), dtype=np.int64, count=len(shingle_sets))
        flat = np.concatenate(list(shingle_sets)) if len(shingle_sets) else np.empty(0, dtype=np.uint32)
        return self.signatures_flat(flat.astype(np.uint32, copy=False), sizes)

    def signatures_flat(self, flat: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Signatures of consecutive sets laid end to end in ``flat`` (``sizes`` long each)."""
        n = len(sizes)
        out = np.full((n, self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        ends = np.cumsum(sizes)
        starts = ends - sizes
        first = 0
        while first < n:
            # Whole sets per chunk, about chunk_shingles shingles each, to bound the temporary.
            last = max(first + 1, int(np.searchsorted(ends, starts[first] + self.chunk_shingles, side="right")))
            chunk_sizes = sizes[first:last]
            nonempty = np.flatnonzero(chunk_sizes)
            if nonempty.size:
                values = _fmix32(flat[starts[first] : ends[last - 1]])
                permuted = np.multiply(self._a, values[None, :])  # wraps mod 2^32, as intended
                np.add(permuted, self._b, out=permuted)
                offsets = (starts[first:last] - starts[first])[nonempty]
                out[first + nonempty] = np.minimum.reduceat(permuted, offsets, axis=1).T
            first = last
        return out


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) int64 bucket keys; the band number is mixed in, so one table holds all."""
    n = signatures.shape[0]
    sig = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    acc = np.arange(1, bands + 1, dtype=np.uint64)[None, :] * _U64_MIX
    acc = np.broadcast_to(acc, (n, bands)).copy()
    for r in range(rows):
        acc = (acc ^ sig[:, :, r]) * np.uint64(0xBF58476D1CE4E5B9)
        acc ^= acc >> np.uint64(31)
    return acc.view(np.int64)


def batch_shingles(
    token_lists: Sequence[Sequence[str]], counts: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique shingle hashes of many token lists at once, laid end to end, and their sizes.

    Equal to ``shingle_hashes`` per list, but with a fixed number of numpy calls per batch
    instead of per paragraph: that is what makes a batch 10x faster than a loop.
    """
    n = len(token_lists)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.uint32), np.zeros(n, dtype=np.int64)
    # Hash each distinct word once; words repeat a lot in any batch of text.
    all_tokens = [t for toks in token_lists for t in toks]
    hash_of = {t: _token_hash(t) for t in set(all_tokens)}
    th = np.fromiter(map(hash_of.__getitem__, all_tokens), dtype=np.uint64, count=total)
    starts = np.cumsum(counts) - counts
    para_of_token = np.repeat(np.arange(n, dtype=np.uint64), counts)
    parts_hash: list[np.ndarray] = []
    parts_para: list[np.ndarray] = []
    if total >= size:
        windows = total - size + 1
        acc = np.zeros(windows, dtype=np.uint64)
        for offset in range(size):
            acc = acc * _U64_MIX + th[offset : offset + windows]
        # A window is a shingle when it lies inside one paragraph.
        valid = para_of_token[:windows] == para_of_token[size - 1 :]
        parts_hash.append(acc[valid])
        parts_para.append(para_of_token[:windows][valid])
    for i in np.flatnonzero((counts > 0) & (counts < size)):  # short texts are one shingle
        parts_hash.append(shingle_hashes_from_token_hashes(th[starts[i] : starts[i] + counts[i]]))
        parts_para.append(np.array([i], dtype=np.uint64))
    hashes = np.concatenate(parts_hash)
    folded = ((hashes >> np.uint64(32)) ^ hashes) & np.uint64(0xFFFFFFFF)
    keyed = np.sort((np.concatenate(parts_para) << np.uint64(32)) | folded)
    keyed = keyed[np.concatenate(([True], keyed[1:] != keyed[:-1]))]  # unique; cheaper than np.unique
    sizes = np.bincount((keyed >> np.uint64(32)).astype(np.int64), minlength=n).astype(np.int64)
    return (keyed & np.uint64(0xFFFFFFFF)).astype(np.uint32), sizes


def shingle_hashes_from_token_hashes(th: np.ndarray) -> np.ndarray:
    """The one unfolded shingle of a text shorter than the shingle size."""
    acc = np.zeros(1, dtype=np.uint64)
    for value in th:
        acc = acc * _U64_MIX + value
    return acc
