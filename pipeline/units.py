"""Paragraphs -> units of evidence: sentences, or windows of short sentences, with their sketches.

A unit is one sentence of a body paragraph. Sentences shorter than ``min_words`` are joined
with the sentences after them (in the same paragraph) until the window is long enough, so a
splitter's doubtful break ("Sept. | 27") or a run of short lines still forms evidence; a short
sentence left at the end of a paragraph stays a unit of its own that is never evidence alone
(it can only be covered next to real evidence, see ``pipeline.repeats``).

Everything per batch is arrays (no per-unit Python objects): this is what prepare hands to the
commit, and what the state stores.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.dedup import DedupSettings, MinHasher, batch_shingles, tokenize
from pipeline.sentences import sentence_spans

_DIGIT_RE = re.compile(r"\d")


@dataclass
class Units:
    """The units of one article, in reading order (``seq`` is the position in these arrays)."""

    para: np.ndarray  # int32: paragraph index in the article
    start: np.ndarray  # int32: [start, end) code points in that paragraph's text
    end: np.ndarray
    words: np.ndarray  # int32: \w+ tokens in the unit
    eligible: np.ndarray  # bool: long enough to be evidence by itself
    shingles: np.ndarray  # uint32: sorted unique shingle hashes of every unit, end to end
    sizes: np.ndarray  # int64: shingles per unit
    signatures: np.ndarray  # (n, num_perm) uint32
    numbers: np.ndarray  # int64: hash of the unit's number tokens ("512", "1.7025"), 0 when it has none

    def __len__(self) -> int:
        return len(self.para)

    def shingle_sets(self) -> list[np.ndarray]:
        ends = np.cumsum(self.sizes).tolist()
        starts = [0, *ends][:-1]
        flat = self.shingles
        return [flat[a:b] for a, b in zip(starts, ends, strict=True)]

    @classmethod
    def empty(cls, num_perm: int) -> Units:
        i32 = np.empty(0, dtype=np.int32)
        return cls(i32, i32, i32, i32, np.empty(0, dtype=bool), np.empty(0, dtype=np.uint32),
                   np.empty(0, dtype=np.int64), np.empty((0, num_perm), dtype=np.uint32), np.empty(0, dtype=np.int64))


def segment(text: str, min_words: int) -> list[tuple[int, int, list[str]]]:
    """(start, end, tokens) of the units of one paragraph."""
    out: list[tuple[int, int, list[str]]] = []
    window_start: int | None = None
    window_end = 0
    window_tokens: list[str] = []
    for start, end in sentence_spans(text):
        tokens = tokenize(text[start:end])
        if not tokens:
            # Punctuation alone ("—", "***") belongs to whatever it stands next to.
            if window_start is not None:
                window_end = end
            elif out:
                s, _, toks = out[-1]
                out[-1] = (s, end, toks)
            continue
        if window_start is None:
            window_start = start
        window_end = end
        window_tokens += tokens
        if len(window_tokens) >= min_words:
            out.append((window_start, window_end, window_tokens))
            window_start, window_tokens = None, []
    if window_start is not None:
        out.append((window_start, window_end, window_tokens))
    return out


class UnitSketcher:
    """Segments and sketches the paragraphs of many articles in one vectorised pass."""

    def __init__(self, settings: DedupSettings | None = None) -> None:
        self.settings = settings or DedupSettings()
        self._hasher = MinHasher(self.settings.num_perm, self.settings.seed)

    def sketch(self, articles: Sequence[Sequence[tuple[str, str]]]) -> list[Units]:
        """``articles``: per article, its paragraphs as (kind, text); headings get no units."""
        s = self.settings
        per_article: list[list[tuple[int, int, int, list[str]]]] = []
        for paragraphs in articles:
            units = []
            for index, (kind, text) in enumerate(paragraphs):
                if kind != "body":
                    continue  # sub-headings are short labels, not passages
                units += [(index, start, end, tokens) for start, end, tokens in segment(text, s.min_words)]
            per_article.append(units)
        token_lists = [u[3] for units in per_article for u in units]
        counts = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        flat, sizes = batch_shingles(token_lists, counts, s.shingle_size)
        signatures = self._hasher.signatures_flat(flat, sizes)
        out = []
        unit_pos = 0
        shingle_pos = 0
        for units in per_article:
            n = len(units)
            unit_sizes = sizes[unit_pos : unit_pos + n]
            total = int(unit_sizes.sum())
            words = counts[unit_pos : unit_pos + n].astype(np.int32)
            out.append(Units(
                para=np.array([u[0] for u in units], dtype=np.int32),
                start=np.array([u[1] for u in units], dtype=np.int32),
                end=np.array([u[2] for u in units], dtype=np.int32),
                words=words,
                eligible=words >= s.min_words,
                shingles=flat[shingle_pos : shingle_pos + total],
                sizes=unit_sizes.copy(),
                signatures=signatures[unit_pos : unit_pos + n],
                numbers=np.array([number_hash(u[3]) for u in units], dtype=np.int64),
            ))
            unit_pos += n
            shingle_pos += total
        return out


def number_hash(tokens: list[str]) -> int:
    """The numbers a unit states, as one value: a daily template ("512 new cases") is news
    when its numbers change, so a match whose numbers differ must be closer (repeats.py)."""
    if not _DIGIT_RE.search(" ".join(tokens)):  # most units state no number: one C call decides
        return 0
    numbers = sorted(t for t in tokens if not t.isalpha() and _DIGIT_RE.search(t))
    return zlib.crc32(" ".join(numbers).encode("utf-8")) if numbers else 0
