"""pipeline.dedup with plain data: shingles, signatures, band keys, exact Jaccard."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from pipeline.dedup import DedupSettings, MinHasher, band_keys, jaccard, jaccard_many, shingle_hashes, tokenize


def test_tokenize_keeps_every_script() -> None:
    assert tokenize("Баку, 28 сентября — Trend") == ["баку", "28", "сентября", "trend"]
    assert tokenize("قال المتحدث") == ["قال", "المتحدث"]
    assert tokenize("Azərbaycan Ordusu") == ["azərbaycan", "ordusu"]


def test_shingles_are_word_ngrams_and_short_text_is_one_shingle() -> None:
    words = "one two three four five six seven".split()
    assert shingle_hashes(words, 5).size == 3
    assert shingle_hashes(words[:3], 5).size == 1
    assert shingle_hashes([], 5).size == 0
    # order matters inside a shingle
    assert not np.array_equal(shingle_hashes("a b c d e".split(), 5), shingle_hashes("e d c b a".split(), 5))
    cyrillic = shingle_hashes(tokenize("Армения и Азербайджан договорились о прекращении огня в регионе"), 5)
    assert cyrillic.size == 5


def test_jaccard_exact() -> None:
    a = np.array([1, 2, 3, 4], dtype=np.uint32)
    b = np.array([3, 4, 5, 6], dtype=np.uint32)
    assert jaccard(a, b) == pytest.approx(2 / 6)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, np.empty(0, dtype=np.uint32)) == 0.0


def test_batch_signatures_equal_datasketch_affine32() -> None:
    rng = np.random.default_rng(7)
    sets = [np.unique(rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)) for n in (1, 5, 40, 300)]
    sets.append(np.empty(0, dtype=np.uint32))
    ours = MinHasher(num_perm=128, seed=1).signatures(sets)
    for shingles, signature in zip(sets, ours, strict=False):
        reference = MinHash(num_perm=128, seed=1, scheme="affine32", hashfunc=lambda v: v)
        reference.update_batch(shingles.tolist())
        assert np.array_equal(signature, reference.hashvalues)


def test_chunking_does_not_change_signatures() -> None:
    rng = np.random.default_rng(3)
    sets = [np.unique(rng.integers(0, 2**32, size=50, dtype=np.uint64).astype(np.uint32)) for _ in range(30)]
    whole = MinHasher().signatures(sets)
    small = MinHasher()
    small.chunk_shingles = 64  # forces many chunks
    assert np.array_equal(whole, small.signatures(sets))


def test_band_candidates_match_datasketch_lsh() -> None:
    """Two sketches share a bucket key exactly when datasketch's LSH (same b, r) pairs them."""
    settings = DedupSettings()
    rng = np.random.default_rng(11)
    base = rng.integers(0, 2**32, size=60, dtype=np.uint64).astype(np.uint32)
    sets = [np.unique(base)]
    for keep in (55, 45, 35, 25, 10):  # decreasing overlap with the base set
        extra = rng.integers(0, 2**32, size=60 - keep, dtype=np.uint64).astype(np.uint32)
        sets.append(np.unique(np.concatenate([base[:keep], extra])))
    perms = settings.num_perm
    sigs = MinHasher(perms).signatures(sets)
    keys = band_keys(sigs, settings.bands, settings.rows)
    lsh = MinHashLSH(num_perm=perms, params=(settings.bands, settings.rows))
    for i, sig in enumerate(sigs[1:], 1):
        lsh.insert(i, MinHash(num_perm=perms, hashvalues=sig, scheme="affine32"))
    expected = set(lsh.query(MinHash(num_perm=perms, hashvalues=sigs[0], scheme="affine32")))
    ours = {i for i in range(1, len(sets)) if set(keys[i].tolist()) & set(keys[0].tolist())}
    assert ours == expected
    assert 1 in ours  # near-identical sets are always candidates


def test_settings_validate() -> None:
    with pytest.raises(ValueError):
        DedupSettings(bands=40, rows=4)
    with pytest.raises(ValueError):
        DedupSettings(threshold=0)
    with pytest.raises(ValueError):
        DedupSettings(paragraph_share=1.5)


def test_batch_shingles_equal_per_paragraph_shingles() -> None:
    from pipeline.dedup import batch_shingles

    texts = ["", "short one", "one two three four five", "a b c d e f g h a b c d e f", "Ünïcödé текст نص " * 3]
    token_lists = [tokenize(t) for t in texts]
    counts = np.array([len(t) for t in token_lists])
    flat, sizes = batch_shingles(token_lists, counts, 5)
    got = np.split(flat, np.cumsum(sizes)[:-1])
    for tokens, shingles in zip(token_lists, got, strict=True):
        assert np.array_equal(shingles, shingle_hashes(tokens, 5))


def test_jaccard_many_equals_jaccard_pair_by_pair() -> None:
    rng = np.random.default_rng(7)

    def random_set() -> np.ndarray:
        return np.unique(rng.integers(0, 80, int(rng.integers(0, 40))).astype(np.uint32))

    left = [random_set() for _ in range(300)] + [np.empty(0, np.uint32)]
    right = [random_set() for _ in range(300)] + [np.empty(0, np.uint32)]
    expected = [jaccard(a, b) for a, b in zip(left, right, strict=True)]
    # Chunks smaller than the input: pairs straddling a chunk edge keep their own values.
    assert jaccard_many(left, right, chunk=37).tolist() == expected
    assert jaccard_many([], []).size == 0
