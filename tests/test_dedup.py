"""pipeline.dedup with plain data: shingles, signatures, bands, verified decisions."""

from __future__ import annotations

import re

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from pipeline.dedup import (
    DedupSettings,
    MemoryIndex,
    MinHasher,
    ParagraphRef,
    RepeatFinder,
    Sketcher,
    band_keys,
    jaccard,
    shingle_hashes,
    tokenize,
)
from tests.conftest import SEEDS


def seed_paragraphs(name_prefix: str) -> list[str]:
    path = next(SEEDS.glob(f"{name_prefix}_*.txt"))
    return [b.strip() for b in re.split(r"\n\s*\n", path.read_text()) if b.strip()]


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
    sigs = MinHasher().signatures(sets)
    keys = band_keys(sigs, settings.bands, settings.rows)
    lsh = MinHashLSH(num_perm=128, params=(settings.bands, settings.rows))
    for i, sig in enumerate(sigs[1:], 1):
        lsh.insert(i, MinHash(num_perm=128, hashvalues=sig, scheme="affine32"))
    expected = set(lsh.query(MinHash(num_perm=128, hashvalues=sigs[0], scheme="affine32")))
    ours = {i for i in range(1, len(sets)) if set(keys[i].tolist()) & set(keys[0].tolist())}
    assert ours == expected
    assert 1 in ours  # near-identical sets are always candidates


def _decide(paragraphs: list[tuple[str, int, str]], settings: DedupSettings) -> dict[tuple[str, int], tuple]:
    """Run RepeatFinder over (article, index, text) in the given order."""
    sketches = Sketcher(settings).sketch([t for _, _, t in paragraphs])
    index = MemoryIndex()
    finder = RepeatFinder(index, settings)
    found = {}
    for pid, ((article, idx, _), sketch) in enumerate(zip(paragraphs, sketches, strict=False)):
        ref = ParagraphRef(article, idx, (article, "", 0, idx))
        index.put(pid, ref, sketch.shingles, sketch.signature)
        decision = finder.find(ref, sketch.shingles, sketch.signature, sketch.keys) if sketch.eligible else None
        if decision is None and sketch.eligible:
            index.add(pid, sketch.keys)
        elif decision is not None:
            found[(article, idx)] = (decision.of.record_id, decision.of.index, decision.similarity)
    return found


def test_default_settings_find_exactly_the_seed_repeats() -> None:
    """EXPECTED.md: six repeats of 000 in 002 and 004, nothing else (articles in publication order)."""
    order = ["000", "001", "002", "004", "003"]  # 003 is undated: last
    paragraphs = [(name, i, text) for name in order for i, text in enumerate(seed_paragraphs(name)[1:], 1)]
    found = _decide(paragraphs, DedupSettings())
    starts = {(article, seed_paragraphs(article)[i][:30]): (of, round(sim, 2)) for (article, i), (of, _, sim)
              in found.items()}
    assert starts == {
        ("002", "Armenian Armed Forces launched"): ("000", 0.69),
        ("002", "The conflict between the two S"): ("000", 1.0),
        ("002", "The 1994 ceasefire agreement w"): ("000", 1.0),
        ("004", "Back in July 2020, the Armenia"): ("000", 0.84),
        ("004", "The conflict between the two S"): ("000", 0.79),
        ("004", "The 1994 ceasefire agreement w"): ("000", 1.0),
    }


def test_short_paragraphs_are_never_flagged() -> None:
    settings = DedupSettings()
    found = _decide([("a", 0, "He said on Monday."), ("b", 0, "He said on Monday.")], settings)
    assert found == {}
    long_enough = "x " * 3 + "one two three four five six"
    found = _decide([("a", 0, long_enough), ("b", 0, long_enough)], settings)
    assert found == {("b", 0): ("a", 0, 1.0)}


def test_best_match_wins_and_ties_go_to_the_earliest() -> None:
    text = "The ceasefire agreement was followed by peace negotiations between the parties in the region"
    found = _decide([("a", 0, text), ("b", 0, text + " today"), ("c", 0, text)], DedupSettings())
    assert found[("c", 0)][0] == "a"  # exact copy of a beats the near copy in b (which is not indexed anyway)


def test_settings_validate() -> None:
    with pytest.raises(ValueError):
        DedupSettings(bands=40, rows=4)
    with pytest.raises(ValueError):
        DedupSettings(threshold=0)


def test_batch_shingles_equal_per_paragraph_shingles() -> None:
    from pipeline.dedup import batch_shingles

    texts = ["", "short one", "one two three four five", "a b c d e f g h a b c d e f", "Ünïcödé текст نص " * 3]
    token_lists = [tokenize(t) for t in texts]
    counts = np.array([len(t) for t in token_lists])
    flat, sizes = batch_shingles(token_lists, counts, 5)
    got = np.split(flat, np.cumsum(sizes)[:-1])
    for tokens, shingles in zip(token_lists, got, strict=True):
        assert np.array_equal(shingles, shingle_hashes(tokens, 5))


def test_a_paragraph_repeated_within_one_article_is_its_own_text() -> None:
    text = "Quick access to the assistant from the lock screen with a single press of the side button"
    found = _decide([("a", 0, text), ("a", 1, text), ("b", 0, text)], DedupSettings())
    assert found == {("b", 0): ("a", 0, 1.0)}
