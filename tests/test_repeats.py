"""pipeline.repeats with plain data: the decision engine over articles of one run, no SQL."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pipeline.dedup import DedupSettings
from pipeline.repeats import ArticleDecision, RepeatEngine, RunArticle, StoredUnit
from pipeline.units import UnitSketcher

SEPT_27 = ("Armenian armed forces launched a large-scale military attack on positions of the Azerbaijani army "
           "on the front line, using large-caliber weapons, mortars and artillery on Sept. 27.")
RESPONDED = "Azerbaijan responded with a counter-offensive along the entire front."
HISTORY = ("The conflict between the two South Caucasus countries began in 1988 when Armenia made territorial "
           "claims against Azerbaijan. As a result of the ensuing war, Armenian armed forces occupied 20 percent "
           "of Azerbaijan, including the Nagorno-Karabakh region and seven surrounding districts.")
NEWS = [
    "The central bank kept its key rate unchanged on Thursday, citing slowing inflation in the third quarter.",
    "Farmers in the southern provinces reported a record wheat harvest despite a dry and unusually hot summer.",
    "The national football team will play two friendly matches in Istanbul before the qualifiers in March.",
    "Officials said the new bridge across the river would open to traffic in the spring after years of delays.",
]


class EmptyState:
    """A state with nothing stored: every decision comes from the run itself."""

    def holders(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        return np.empty(0, np.int64), np.empty(0, np.int64), []

    def units_by_uid(self, uids: Iterable[int]) -> dict[int, StoredUnit]:
        return {}

    def units_of_record(self, record_id: str) -> list[StoredUnit]:
        return []

    def house_line_occurrences(self, keys: Iterable[tuple[str, int]]) -> dict:
        return {}


def decide(articles: list[tuple[str, list[str]]], settings: DedupSettings | None = None,
           groups: dict[str, str] | None = None) -> dict[str, ArticleDecision]:
    """Decide (name, paragraphs) articles, given in publication order, in one run."""
    settings = settings or DedupSettings()
    units = UnitSketcher(settings).sketch([[("body", p) for p in paras] for _, paras in articles])
    run, uid = [], 1
    for i, ((name, paras), article_units) in enumerate(zip(articles, units, strict=True)):
        uids = np.arange(uid, uid + len(article_units), dtype=np.int64)
        uid += len(article_units)
        run.append(RunArticle(name, (f"2020-01-{i + 1:02d}", name, -1), (groups or {}).get(name),
                              [("body", p) for p in paras], article_units, uids))
    decided = RepeatEngine(settings).decide(run, EmptyState())
    return {a.record_id: a for a in decided.articles}


def flagged(decision: ArticleDecision) -> dict[int, str | None]:
    """Paragraph -> record it repeats (None: carries spans only)."""
    out = {}
    for index, (repeat, spans) in decision.paragraphs.items():
        if repeat is not None:
            out[index] = repeat.record
        elif spans:
            out[index] = None
    return out


def test_first_occurrence_is_kept_and_a_copy_is_flagged() -> None:
    got = decide([("a", [NEWS[0], SEPT_27]), ("b", [NEWS[1], SEPT_27])])
    assert flagged(got["a"]) == {}
    assert flagged(got["b"]) == {1: "a"}
    repeat = got["b"].repeat_of(1)
    assert repeat is not None and repeat.paragraph == 1 and repeat.passage == "a:1" and repeat.similarity == 1.0


def test_merged_with_news_carries_spans_and_keeps_the_news() -> None:
    merged = f"{SEPT_27} {RESPONDED} Currently, fighting continues in several directions along the front line."
    got = decide([("a", [SEPT_27, RESPONDED + " " + NEWS[0]]), ("b", [NEWS[1], merged])])
    assert got["b"].repeat_of(1) is None
    [span] = got["b"].spans(1)
    assert merged[span.start:span.end] == f"{SEPT_27} {RESPONDED}"
    assert span.passage == "a:0"  # one passage, though the first occurrence breaks it into two paragraphs


def test_a_passage_split_across_paragraphs_is_one_passage() -> None:
    first_half, second_half = HISTORY.split(" As a result")
    got = decide([("a", [NEWS[0], HISTORY]), ("b", [first_half, "As a result" + second_half, NEWS[2]])])
    assert flagged(got["b"]) == {0: "a", 1: "a"}
    assert {got["b"].repeat_of(0).passage, got["b"].repeat_of(1).passage} == {"a:1"}


def test_one_sentence_per_line_is_found() -> None:
    lines = [SEPT_27, RESPONDED, *HISTORY.split(" As a result ")]
    got = decide([("a", [NEWS[0], f"{SEPT_27} {RESPONDED}", HISTORY]), ("b", [NEWS[3], *lines])])
    assert flagged(got["b"]) == {1: "a", 2: "a", 3: "a", 4: "a"}


def test_a_cut_sentence_is_covered_by_extension() -> None:
    # The outlet moved the break into the middle of the second sentence and put a period there.
    cut = HISTORY.index("occupied 20 percent")
    half1, half2 = HISTORY[:cut].rstrip() + ".", HISTORY[cut:]
    got = decide([("a", [NEWS[0], HISTORY]), ("b", [half1, half2.capitalize(), NEWS[1]])])
    assert flagged(got["b"]) == {0: "a", 1: "a"}


def test_light_edits_spread_over_a_passage() -> None:
    edited = HISTORY.replace("began in 1988", "started in 1988").replace("seven surrounding", "seven adjacent")
    got = decide([("a", [HISTORY]), ("b", [NEWS[0], edited])])
    assert flagged(got["b"]) == {1: "a"}


def test_short_sentences_never_count_alone() -> None:
    got = decide([("a", ["He said.", NEWS[0]]), ("b", ["He said.", NEWS[1]])])
    assert flagged(got["b"]) == {}


def test_paraphrase_and_shared_phrases_are_not_flagged() -> None:
    paraphrase = ("Fighting between Armenia and Azerbaijan over Nagorno-Karabakh first broke out in 1988, and by the "
                  "time of the truce Armenian troops held about a fifth of Azerbaijan's land.")
    same_topic = ("Russian Foreign Minister Sergei Lavrov held phone talks with his Armenian counterpart on the "
                  "situation in the region on Monday.")
    other = ("Russian Foreign Minister Sergei Lavrov discussed the humanitarian ceasefire with the Azerbaijani "
             "foreign minister in Moscow on Saturday.")
    got = decide([("a", [HISTORY, same_topic]), ("b", [paraphrase, other])])
    assert flagged(got["b"]) == {}


def test_never_within_one_article() -> None:
    got = decide([("a", [SEPT_27, NEWS[0], SEPT_27])])
    assert flagged(got["a"]) == {}


def test_a_copy_of_a_copy_leads_to_the_first_occurrence() -> None:
    edited = SEPT_27.replace("mortars and artillery", "mortars, and artillery")
    got = decide([("a", [SEPT_27]), ("b", [NEWS[0], edited]), ("c", [NEWS[1], edited])])
    repeat = got["c"].repeat_of(1)
    assert repeat is not None and repeat.record == "a" and repeat.similarity == 1.0  # matched b's exact text


def test_house_lines_need_two_earlier_articles_of_the_outlet() -> None:
    footer = "Follow us on Twitter @AzerNewsAz"
    articles = [(name, [NEWS[i], footer]) for i, name in enumerate("abcd")]
    got = decide(articles, groups={name: "outlet:azernews" for name in "abcd"})
    assert [flagged(got[name]) for name in "abcd"] == [{}, {}, {1: "a"}, {1: "a"}]
    # another outlet's articles are no evidence
    mixed = decide(articles, groups={"a": "outlet:x", "b": "outlet:y", "c": "outlet:z", "d": "outlet:x"})
    assert all(flagged(mixed[name]) == {} for name in "abcd")


def test_a_syndicated_copy_is_a_duplicate() -> None:
    original = [NEWS[0], NEWS[1], NEWS[2], SEPT_27]
    copy = ["A lead paragraph the copier wrote about the same events in a dozen words.", *original]
    got = decide([("a", original), ("z", [NEWS[3]]), ("b", copy)])
    assert got["b"].duplicate_of is not None and got["b"].duplicate_of[0] == "a"
    assert got["b"].duplicate_of[1] >= 0.8
    assert got["z"].duplicate_of is None and got["a"].duplicate_of is None


def test_a_short_line_after_a_repeated_paragraph_needs_its_own_evidence() -> None:
    # The footer follows repeated background in both articles; seen once before, it is not a house line.
    footer = "Subscribe to our channel on Telegram."
    got = decide([("a", [NEWS[0], HISTORY, footer]), ("b", [NEWS[1], HISTORY, footer])],
                 groups={"a": "outlet:x", "b": "outlet:x"})
    assert flagged(got["b"]) == {1: "a"}


def test_a_copy_is_a_duplicate_even_where_its_source_repeats_others() -> None:
    # b syndicates a, whose last paragraph is background first printed by z: b meets it at z.
    original = [NEWS[0], NEWS[1], NEWS[2], HISTORY]
    got = decide([("z", [NEWS[3], HISTORY]), ("a", original), ("b", original)])
    assert flagged(got["b"]) == {0: "a", 1: "a", 2: "a", 3: "z"}
    assert got["b"].duplicate_of == ("a", 1.0)


def test_a_daily_template_with_new_numbers_is_news() -> None:
    monday = "The health ministry reported 512 new coronavirus cases and 7 deaths over the past 24 hours on Monday."
    tuesday = "The health ministry reported 630 new coronavirus cases and 9 deaths over the past 24 hours on Tuesday."
    got = decide([("a", [NEWS[0], monday]), ("b", [NEWS[1], tuesday]), ("c", [NEWS[2], monday])])
    assert flagged(got["b"]) == {}
    assert flagged(got["c"]) == {1: "a"}  # the same figures again are a repeat


def test_a_short_line_inside_the_story_is_not_a_house_line() -> None:
    import random

    rng = random.Random(5)
    words = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(2000)]

    def news() -> str:  # a sentence of distinct made-up words: nothing repeats by chance
        return " ".join(rng.sample(words, 14)).capitalize() + "."

    line = "No one was injured."
    articles = [(name, [news(), news(), line, news(), news(), news()]) for name in "abcd"]
    got = decide(articles, groups={name: "outlet:x" for name in "abcd"})
    assert all(flagged(got[name]) == {} for name in "abcd")
    # the same line as the last paragraph of each article is a house line from the third one on
    articles = [(name, [news(), news(), news(), line]) for name in "abcd"]
    got = decide(articles, groups={name: "outlet:x" for name in "abcd"})
    assert [flagged(got[name]) for name in "abcd"] == [{}, {}, {3: "a"}, {3: "a"}]
