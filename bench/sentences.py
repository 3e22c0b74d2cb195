"""Benchmark: sentence splitters on the labelled cases of tests/test_sentences.py, and their speed.

Candidates: pipeline.sentences (regex + word sets), pysbd, syntok, blingfire, nltk punkt. A missing library
is reported as skipped; none of them is a dependency of the pipeline (install by hand to compare:
`.venv/bin/pip install pysbd syntok blingfire`).

Accuracy: exact = share of cases split exactly as labelled; boundary precision/recall over every
sentence end inside a paragraph (the paragraph's own end is not a decision). "hard" counts the boundaries
that HARD_CASES contain and a word-list splitter is allowed to miss, and the wrong splits made there.
Speed: paragraphs per CPU-second over "news": the body paragraphs of raw/ and bench/devset (repeated to
--paragraphs), and over "dense": the labelled sentences shuffled and packed into ~50-word paragraphs.

    .venv/bin/python bench/sentences.py [--paragraphs 20000]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.clean import normalize  # noqa: E402
from pipeline.sentences import sentence_spans  # noqa: E402
from tests.test_sentences import CASES, gold_boundaries, hard_cases, labelled_cases  # noqa: E402

Splitter = Callable[[str], list[str]]


def spans_of(text: str, sentences: list[str]) -> list[tuple[int, int]]:
    """Offsets of each returned sentence in text, found in order (libraries may drop or change whitespace)."""
    spans, pos = [], 0
    for s in sentences:
        s = s.strip()
        if not s:
            continue
        at = text.find(s, pos)
        if at < 0:  # the library rewrote the text: fall back to its length from where we are
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
        spans.append((at, at + len(s)))
        pos = at + len(s)
    return spans


def load_splitters() -> dict[str, Splitter | str]:
    """name -> split function, or the reason it is skipped."""
    found: dict[str, Splitter | str] = {
        "pipeline.sentences (regex)": lambda t: [t[s:e] for s, e in sentence_spans(t)],
    }
    try:
        import pysbd

        seg = pysbd.Segmenter(language="en", clean=False)
        found["pysbd 'en'"] = seg.segment
    except ImportError:
        found["pysbd"] = "skipped: not installed"
    try:
        from syntok import segmenter

        def syntok_split(text: str) -> list[str]:
            out = []
            for paragraph in segmenter.process(text):
                for sentence in paragraph:
                    out.append(text[sentence[0].offset : sentence[-1].offset + len(sentence[-1].value)])
            return out

        found["syntok"] = syntok_split
    except ImportError:
        found["syntok"] = "skipped: not installed"
    try:
        import blingfire

        def blingfire_split(text: str) -> list[str]:
            _, offsets = blingfire.text_to_sentences_and_offsets(text)
            return [text[s:e] for s, e in offsets]

        found["blingfire"] = blingfire_split
    except ImportError:
        found["blingfire"] = "skipped: not installed"
    try:
        import nltk

        try:
            nltk.data.find("tokenizers/punkt_tab")
            found["nltk punkt"] = nltk.sent_tokenize
        except LookupError:
            found["nltk punkt"] = "skipped: installed, but punkt needs a model download (not available offline)"
    except ImportError:
        found["nltk punkt"] = "skipped: not installed (and punkt needs a model download, not available offline)"
    return found


def accuracy(split: Splitter) -> dict[str, float]:
    exact = tp = fp = fn = 0
    cases = labelled_cases()
    for text, gold in cases:
        spans = spans_of(text, split(text))
        pred = {e for _, e in spans[:-1]}
        want = gold_boundaries(text, gold)
        exact += [text[s:e] for s, e in spans] == gold
        tp += len(pred & want)
        fp += len(pred - want)
        fn += len(want - pred)
    hard_found = hard_wrong = hard_total = 0
    for text, gold in hard_cases():
        spans = spans_of(text, split(text))
        pred = {e for _, e in spans[:-1]}
        want = gold_boundaries(text, gold)
        hard_total += len(want)
        hard_found += len(pred & want)
        hard_wrong += len(pred - want)
    return {
        "exact": exact / len(cases),
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "wrong": fp,
        "missed": fn,
        "hard_found": hard_found,
        "hard_total": hard_total,
        "hard_wrong": hard_wrong,
    }


def news_paragraphs() -> list[str]:
    """Body paragraphs of the project's own article sets (raw/ sample, bench/devset), one line each."""
    out = []
    for path in sorted([*(ROOT / "raw").glob("*.txt"), *(ROOT / "bench" / "devset" / "articles").glob("*.txt")]):
        for block in re.split(r"\n\s*\n", normalize(path.read_text(encoding="utf-8"))):
            para = " ".join(block.split())
            if len(para.split()) >= 12:  # body text, not headers, datelines or bylines
                out.append(para)
    return out


def dense_paragraphs(n: int, seed: int = 1) -> list[str]:
    """Paragraphs of 40-60 words packed from the labelled sentences: short and abbreviation-heavy, so about
    twice the boundaries and candidates of real news per word (a worst case for the splitter's Python side)."""
    sentences = [s for case in CASES for s in case]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target, words, parts = rng.randint(40, 60), 0, []
        while words < target:
            s = rng.choice(sentences)
            parts.append(s)
            words += len(s.split())
        out.append(" ".join(parts))
    return out


def speed(split: Splitter, paras: list[str], budget: float) -> float:
    """Paragraphs per CPU-second; slow splitters run on a prefix so that each takes about `budget` seconds."""
    start = time.process_time()
    done = 0
    for p in paras:
        split(p)
        done += 1
        if done % 200 == 0 and time.process_time() - start > budget:
            break
    return done / (time.process_time() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paragraphs", type=int, default=20000)
    ap.add_argument("--budget", type=float, default=3.0, help="CPU seconds at most per splitter and corpus")
    args = ap.parse_args()
    news = news_paragraphs()
    corpora = {"news": (news * (args.paragraphs // len(news) + 1))[: args.paragraphs],
               "dense": dense_paragraphs(args.paragraphs)}
    n_cases = len(labelled_cases())
    n_bounds = sum(len(gold_boundaries(t, g)) for t, g in labelled_cases())
    print(f"{n_cases} labelled cases ({n_bounds} inner boundaries), {len(hard_cases())} hard cases "
          f"({sum(len(gold_boundaries(t, g)) for t, g in hard_cases())} boundaries a splitter may miss)")
    for name, paras in corpora.items():
        words = sum(len(p.split()) for p in paras) / len(paras)
        sents = sum(len(sentence_spans(p)) for p in paras) / len(paras)
        print(f"speed corpus {name}: {len(paras)} paragraphs, {words:.0f} words and {sents:.1f} sentences each")
    print(f"\n  {'splitter':<28} {'exact':>6} {'prec':>6} {'recall':>6} {'wrong':>6} {'missed':>6}"
          f" {'hard found/wrong':>17} {'news para/s':>12} {'dense para/s':>13}")
    for name, split in load_splitters().items():
        if isinstance(split, str):
            print(f"  {name:<28} {split}")
            continue
        a = accuracy(split)
        rates = [speed(split, paras, args.budget) for paras in corpora.values()]
        hard = f"{a['hard_found']:.0f}/{a['hard_total']:.0f}, {a['hard_wrong']:.0f}"
        print(f"  {name:<28} {a['exact']:>6.1%} {a['precision']:>6.1%} {a['recall']:>6.1%} {a['wrong']:>6.0f}"
              f" {a['missed']:>6.0f} {hard:>17} {rates[0]:>12,.0f} {rates[1]:>13,.0f}")


if __name__ == "__main__":
    main()
