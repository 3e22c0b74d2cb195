"""Near-duplicate paragraph detection: word shingles, MinHash, LSH banding, exact verification.

The settings below were chosen on the sample corpus (see ``DedupSettings``) and are the
defaults for every run; they are stored with the index so that a later run with other
settings refuses to mix incompatible signatures.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
from datasketch import MinHash

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)

# MurmurHash3 32-bit finalizer constants (the same mixer datasketch applies in its
# "affine32" scheme before permuting).
_FMIX_M1 = np.uint32(0x85EBCA6B)
_FMIX_M2 = np.uint32(0xC2B2AE35)
_U64_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class DedupSettings:
    """What counts as a repeated passage.

    Why these values (measured on the five sample articles, see tests/test_dedup.py):

    - ``shingle_size=5``: word 5-grams separate a light edit of a background passage
      (lowest true repeat in the seeds: 5-gram Jaccard 0.69) from news paragraphs that
      merely share phrases (3-gram Jaccard 0.18, 5-gram below 0.1) and from paraphrases
      (5-gram Jaccard under 0.1). Shorter shingles raise the score of shared phrases.
    - ``threshold=0.6``: exact 5-gram Jaccard a candidate must reach. It sits below the
      lightest true edit (0.69) and above the closest pair that must not count (0.54:
      a paragraph that merges two background sentences with news, against a light edit
      of the same background), and far above unrelated text.
    - ``bands=32, rows=4`` over ``num_perm=128``: the LSH S-curve (1-(1-J^4)^32) gives a
      candidate with probability 0.988 at J=0.6, 0.9997 at J=0.69 and 0.23 at J=0.3.
      Candidates are always verified exactly, so the false positives cost only a lookup;
      missing a true repeat is the expensive error, hence many short bands.
    - ``min_words=8``: paragraphs shorter than this ("He said.") collide by chance across
      unrelated articles and are never flagged.
    """

    shingle_size: int = 5
    num_perm: int = 128
    bands: int = 32
    rows: int = 4
    threshold: float = 0.6
    min_words: int = 8
    seed: int = 1

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.num_perm:
            raise ValueError("bands * rows must not exceed num_perm")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")

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


@dataclass(frozen=True)
class ParagraphRef:
    """Where an indexed paragraph lives, and its place in publication order."""

    record_id: str
    index: int
    order: tuple[str, str, int, int]  # (sort key, path, item, paragraph index)


@dataclass(frozen=True)
class RepeatDecision:
    """A paragraph found to repeat an earlier one."""

    of: ParagraphRef
    similarity: float  # exact Jaccard of the shingle sets
    estimated: float  # MinHash estimate (share of equal signature slots)


class CandidateIndex(Protocol):
    """LSH buckets over first occurrences; ``dedup.MemoryIndex`` and ``state.SqliteIndex``."""

    def candidates(self, keys: np.ndarray, pid: int | None = None) -> Iterable[int]: ...

    def add(self, pid: int, keys: np.ndarray) -> None: ...

    def lookup(self, pid: int) -> tuple[ParagraphRef, np.ndarray, np.ndarray]:
        """The paragraph's place, shingle hashes and signature."""
        ...


class MemoryIndex:
    """A dict-backed ``CandidateIndex`` for tests and one-off use."""

    def __init__(self) -> None:
        self._buckets: dict[int, list[int]] = {}
        self._items: dict[int, tuple[ParagraphRef, np.ndarray, np.ndarray]] = {}

    def candidates(self, keys: np.ndarray, pid: int | None = None) -> Iterable[int]:
        seen: set[int] = set()
        for key in keys.tolist():
            seen.update(self._buckets.get(key, ()))
        return seen

    def add(self, pid: int, keys: np.ndarray) -> None:
        for key in keys.tolist():
            self._buckets.setdefault(key, []).append(pid)

    def put(self, pid: int, ref: ParagraphRef, shingles: np.ndarray, signature: np.ndarray) -> None:
        self._items[pid] = (ref, shingles, signature)

    def lookup(self, pid: int) -> tuple[ParagraphRef, np.ndarray, np.ndarray]:
        return self._items[pid]


class RepeatFinder:
    """Decides, paragraph by paragraph in publication order, what repeats what.

    Only first occurrences enter the index: a verified repeat joins the passage it
    repeats, so the index grows with distinct text, not with copies.
    """

    def __init__(self, index: CandidateIndex, settings: DedupSettings) -> None:
        self.index = index
        self.settings = settings

    def find(
        self, ref: ParagraphRef, shingles: np.ndarray, signature: np.ndarray, keys: np.ndarray,
        pid: int | None = None,
    ) -> RepeatDecision | None:
        """The best earlier first occurrence this paragraph repeats, if any (``pid``: its own
        id, which lets the index use what it precomputed for the run)."""
        best: tuple[float, _neg, RepeatDecision] | None = None
        for other_pid in self.index.candidates(keys, pid):
            other, other_shingles, other_signature = self.index.lookup(other_pid)
            if other.order >= ref.order or other.record_id == ref.record_id:
                # Only earlier text can be repeated, and only another article's: a list an
                # article repeats within itself is its own text, not background.
                continue
            similarity = jaccard(shingles, other_shingles)
            if similarity < self.settings.threshold:
                continue
            # Highest exact similarity wins (compared unrounded); ties go to the earliest
            # occurrence, so the decision depends neither on index nor on insertion order.
            rank = (similarity, _neg(other.order))
            if best is None or rank > best[:2]:
                estimated = float(np.mean(signature == other_signature))
                best = (*rank, RepeatDecision(other, round(similarity, 4), round(estimated, 4)))
        return best[2] if best is not None else None


class _neg:
    """Reverses tuple ordering so that max() picks the earliest position on ties."""

    __slots__ = ("order",)

    def __init__(self, order: tuple[str, str, int, int]) -> None:
        self.order = order

    def __lt__(self, other: _neg) -> bool:
        return self.order > other.order

    def __gt__(self, other: _neg) -> bool:
        return self.order < other.order

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _neg) and self.order == other.order


@dataclass
class ParagraphSketch:
    """What dedup keeps of one paragraph: its shingles, signature and band keys."""

    shingles: np.ndarray
    signature: np.ndarray
    keys: np.ndarray
    eligible: bool  # long enough to be compared at all


class Sketcher:
    """Turns a batch of paragraph texts into sketches in one vectorised pass."""

    def __init__(self, settings: DedupSettings | None = None) -> None:
        self.settings = settings or DedupSettings()

    @cached_property
    def _hasher(self) -> MinHasher:
        return MinHasher(self.settings.num_perm, self.settings.seed)

    def sketch(self, texts: Sequence[str]) -> list[ParagraphSketch]:
        s = self.settings
        token_lists = [tokenize(t) for t in texts]
        counts = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        flat, sizes = batch_shingles(token_lists, counts, s.shingle_size)
        signatures = self._hasher.signatures_flat(flat, sizes)
        keys = band_keys(signatures, s.bands, s.rows)
        shingle_sets = np.split(flat, np.cumsum(sizes)[:-1]) if len(sizes) else []
        return [
            ParagraphSketch(shingle_sets[i], signatures[i], keys[i], bool(counts[i] >= s.min_words))
            for i in range(len(texts))
        ]


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
