"""The repeat decisions: which units, spans and paragraphs repeat earlier text, and what.

Knows nothing of SQL: the state answers through the small ``UnitSource`` protocol.

How a decision is made, for the units of a run's articles taken in publication order:

1. **Candidates.** Every eligible unit has ``bands`` LSH keys. The index keeps, per key, only
   its *holder*: the earliest unit (publication order) that has it. A unit's candidates are
   the holders of its keys that lie in another, earlier article. That is exact for "the
   earliest text sharing a band": a copy of a passage meets the passage's first occurrence,
   never the thousand copies in between, so the index grows with distinct text only.
2. **Verification.** A candidate counts when the exact Jaccard similarity of the two units'
   shingle sets reaches ``threshold``; the best one wins, ties go to the earliest.
3. **Extension.** From each verified unit, its neighbours in the article are compared with
   the neighbours of its match in the matched article (and with the match itself: a sentence
   split in two) by containment, ``|a & b| / |a|`` >= ``extend_threshold``. This recovers the
   halves of a sentence cut by a moved paragraph break, and sentences edited too much to
   stand alone, but only next to real evidence.
4. **Roots and passages.** A match's *root* is the first occurrence it leads to (a copy of a
   copy leads to the original). Consecutive repeated units whose roots are consecutive in one
   earlier article form one passage, across paragraph breaks, named after the paragraph of
   its first root unit ("<record>:<paragraph>"), so a passage printed as one paragraph, two,
   or merged with news is one passage.
5. **Spans and paragraphs.** Consecutive covered units of one paragraph with one passage are
   a span; a stub shorter than ``min_words`` between two covered units is covered with them
   (smoothing). A paragraph whose covered words reach ``paragraph_share`` is a repeat.
6. **House lines**: a short paragraph that ``house_line_articles`` earlier articles of the
   same outlet carry word for word; **whole copies**: an article whose body words are covered
   at ``duplicate_share`` or more by matches into one earlier article.

The decisions depend only on which articles exist, never on arrival order: a unit is decided
from the earliest holders, and holders are recomputed for every article after a change.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline.dedup import DedupSettings, band_keys, jaccard, jaccard_many, tokenize
from pipeline.units import Units

Order = tuple[str, str, int]  # (publication sort key, path, item)


@dataclass
class RunArticle:
    """An article taking part in this run's decisions (new, or stored and decided again)."""

    record_id: str
    order: Order
    group: str | None  # whose house lines it shares: outlet, else site, else folder
    paragraphs: list[tuple[str, str]]  # (kind, text)
    units: Units
    uids: np.ndarray  # int64, one per unit


@dataclass
class StoredUnit:
    """A unit of an article outside the run, as the state holds it."""

    uid: int
    record_id: str
    order: Order
    seq: int
    para: int
    shingles: np.ndarray
    signature: np.ndarray
    root: int  # uid of its first occurrence (itself when it is one)
    numbers: int = 0  # hash of its number tokens (units.number_hash)


class UnitSource(Protocol):
    """What the decisions need from the stored state (``state.Store`` implements it)."""

    def holders(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """For the distinct ``keys`` that have a stored holder: (keys, holder uids, holder record ids)."""
        ...

    def units_by_uid(self, uids: Iterable[int]) -> dict[int, StoredUnit]: ...

    def units_of_record(self, record_id: str) -> list[StoredUnit]:
        """Every unit of one stored article, by ``seq``."""
        ...

    def house_line_occurrences(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], list[
            tuple[Order, str, int]]]:
        """Stored occurrences (order, record id, paragraph) of (group, line hash) pairs."""
        ...


@dataclass
class Span:
    start: int
    end: int
    passage: str
    record: str
    paragraph: int
    similarity: float
    words: int


@dataclass
class ParagraphRepeat:
    record: str
    paragraph: int
    passage: str
    similarity: float
    estimated: float


@dataclass
class ArticleDecision:
    record_id: str
    units_match: np.ndarray  # int64 uid of the matched unit, -1 if none (covered stubs: -1)
    units_root: np.ndarray  # int64 uid of its first occurrence; itself when uncovered
    units_similarity: np.ndarray  # float64, nan when not matched
    units_estimated: np.ndarray
    units_passage: list[str | None]
    paragraphs: dict[int, tuple[ParagraphRepeat | None, list[Span]]] = field(default_factory=dict)
    duplicate_of: tuple[str, float] | None = None
    house_lines: list[tuple[int, int]] = field(default_factory=list)  # (paragraph, line hash)

    def repeat_of(self, index: int) -> ParagraphRepeat | None:
        entry = self.paragraphs.get(index)
        return entry[0] if entry else None

    def spans(self, index: int) -> list[Span]:
        entry = self.paragraphs.get(index)
        return entry[1] if entry else []


@dataclass
class RunDecisions:
    articles: list[ArticleDecision]
    holder_keys: np.ndarray  # keys whose holder is now an in-run unit
    holder_uids: np.ndarray
    # Keys whose stored holder is decided again or left: their stored rows go (and come back
    # among holder_keys when a unit of the run holds them).
    dropped_keys: np.ndarray


def line_hash(text: str) -> int:
    """A house line's identity: its words, case-folded (punctuation and spacing ignored)."""
    return zlib.crc32(" ".join(tokenize(text)).encode("utf-8"))


class _Pool:
    """Every unit the run looks at: in-run units first, then stored ones fetched on demand."""

    def __init__(self, articles: Sequence[RunArticle], num_perm: int) -> None:
        self.record: list[str] = []
        self.art: list[int] = []  # in-run article index, -1 for stored units
        self.seq: list[int] = []
        self.para: list[int] = []
        self.sets: list[np.ndarray] = []
        self.sigs: list[np.ndarray] = []
        self.numbers: list[int] = []
        self.uid: list[int] = []
        self.rank: list[tuple[int, int]] = []  # (article rank, seq); stored units rank below the run
        self.stored_root: dict[int, int] = {}  # pool index of a stored unit -> pool index of its root
        self.by_uid: dict[int, int] = {}
        self.article_start: list[int] = []
        self.article_of: dict[str, int] = {}
        for a, article in enumerate(articles):
            # Whole articles at a time (list.extend over arrays): this runs for every unit of the run.
            units = article.units
            n = len(units)
            start = len(self.record)
            self.article_start.append(start)
            self.article_of[article.record_id] = a
            self.record.extend([article.record_id] * n)
            self.art.extend([a] * n)
            self.seq.extend(range(n))
            self.para.extend(units.para.tolist())
            self.sets.extend(units.shingle_sets())
            self.sigs.extend(units.signatures)
            self.numbers.extend(units.numbers.tolist())
            uids = article.uids.tolist()
            self.uid.extend(uids)
            self.rank.extend(zip([a] * n, range(n), strict=True))
            self.by_uid.update(zip(uids, range(start, start + n), strict=True))
        self.in_run = len(self.record)
        self.stored_orders: dict[int, tuple[Order, int]] = {}

    def _append(self, record: str, art: int, seq: int, para: int, shingles: np.ndarray, sig: np.ndarray,
                uid: int, rank: tuple[int, int], numbers: int) -> int:
        index = len(self.record)
        self.numbers.append(numbers)
        self.record.append(record)
        self.art.append(art)
        self.seq.append(seq)
        self.para.append(para)
        self.sets.append(shingles)
        self.sigs.append(sig)
        self.uid.append(uid)
        self.rank.append(rank)
        self.by_uid[uid] = index
        return index

    def add_stored(self, unit: StoredUnit) -> int:
        known = self.by_uid.get(unit.uid)
        if known is not None:
            return known
        # Stored units all precede the run; among themselves, publication order then seq.
        index = self._append(unit.record_id, -1, unit.seq, unit.para, unit.shingles, unit.signature, unit.uid,
                             (-1, 0), unit.numbers)
        self.stored_orders[index] = (unit.order, unit.seq)
        return index

    def sort_key(self, index: int) -> tuple[int, Order | tuple[()], int]:
        """Publication order of a pool unit, comparable across stored and in-run units."""
        if index < self.in_run:
            a, seq = self.rank[index]
            return (1, ("", "", a), seq)
        order, seq = self.stored_orders[index]
        return (0, order, seq)


def _containment(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    return np.intersect1d(a, b, assume_unique=True).size / a.size


class RepeatEngine:
    """Decides one run: ``decide(articles, source, removed_keys)``; articles in publication order."""

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = settings

    # --- 1. candidates ---------------------------------------------------------------

    def decide(self, articles: Sequence[RunArticle], source: UnitSource,
               removed_keys: np.ndarray | None = None) -> RunDecisions:
        s = self.settings
        pool = _Pool(articles, s.num_perm)
        self._record_cache: dict[str, dict[int, StoredUnit]] = {}
        in_run_records = {a.record_id for a in articles}
        n = pool.in_run
        eligible = np.concatenate([a.units.eligible for a in articles]) if articles else np.empty(0, bool)
        sigs = (np.concatenate([a.units.signatures for a in articles]) if articles
                else np.empty((0, s.num_perm), np.uint32))
        # The run's (key, owner) entries are its largest arrays (bands per unit): pool indices
        # are int32 and each temporary is dropped as soon as it is used, to bound the run's memory.
        owners = np.flatnonzero(eligible).astype(np.int32)
        flat_keys = band_keys(sigs[owners], s.bands, s.rows).ravel() if n else np.empty(0, np.int64)
        del sigs, eligible
        # In-run earliest holder of each key: owners ascend in this flat order (publication
        # order), so a stable sort by key keeps the earliest owner first in each key's group.
        order = np.argsort(flat_keys, kind="stable")
        sk = flat_keys[order]
        del flat_keys
        so = np.repeat(owners, s.bands)[order]
        del order, owners
        first = np.concatenate(([True], sk[1:] != sk[:-1])) if sk.size else np.empty(0, bool)
        run_keys, run_holder = sk[first], so[first]
        holder = run_holder[np.cumsum(first, dtype=np.int32) - 1]  # in-run holder of each entry
        del first

        stored_keys, stored_uids, stored_records = source.holders(run_keys) if run_keys.size else (
            np.empty(0, np.int64), np.empty(0, np.int64), [])
        usable = np.array([r not in in_run_records for r in stored_records], dtype=bool)
        replaced = stored_keys[~usable]  # held by an article decided again: the run decides their holder
        stored_keys, stored_uids = stored_keys[usable], stored_uids[usable]
        stored_units = source.units_by_uid(stored_uids.tolist()) if stored_uids.size else {}
        stored_pool = np.array([pool.add_stored(stored_units[u]) for u in stored_uids.tolist()], dtype=np.int32)
        # Their first occurrences, fetched together: a query per unit cost ~0.2 ms each.
        roots = source.units_by_uid({u.root for u in stored_units.values()
                                     if u.root != u.uid and u.root not in pool.by_uid})
        for u in stored_uids.tolist():
            self._link_root(pool, stored_units[u], source, roots)
        if stored_keys.size:
            # Per sorted entry: the stored holder when there is one (it precedes the whole run).
            pos = np.minimum(np.searchsorted(stored_keys, sk), stored_keys.size - 1)
            has_stored = stored_keys[pos] == sk
            holder = np.where(has_stored, stored_pool[pos], holder)
            del pos, has_stored
        del sk
        art = np.asarray(pool.art[:n], dtype=np.int32)
        holder_art = np.where(holder < n, art[np.minimum(holder, max(n - 1, 0))] if n else -1, -1)
        is_cand = (holder != so) & ((holder >= n) | (holder_art != art[so]))
        del holder_art
        # Unique (unit, candidate) pairs, as one int64 each (np.unique on rows is slow).
        width = np.int64(max(len(pool.record), 1))
        codes = np.unique(so[is_cand].astype(np.int64) * width + holder[is_cand].astype(np.int64))
        del so, holder, is_cand
        pairs = np.stack([codes // width, codes % width], axis=1)
        match, similarity, estimated = self._verify(pool, pairs)

        # Holders that change: keys the run's units now hold (no stored holder outside the run).
        new_holder_keys = run_keys[~np.isin(run_keys, stored_keys)]
        new_holder_uids = np.asarray(pool.uid, dtype=np.int64)[run_holder[~np.isin(run_keys, stored_keys)]] \
            if run_keys.size else np.empty(0, np.int64)
        # Keys held by units that leave: their rows go; a unit of the run holding one puts it back.
        dropped = removed_keys if removed_keys is not None else np.empty(0, np.int64)

        decisions = [self._decide_article(pool, a, article, match, similarity, estimated, source)
                     for a, article in enumerate(articles)]
        self._house_lines(articles, decisions, source)
        return RunDecisions(decisions, new_holder_keys, new_holder_uids, np.union1d(dropped, replaced))

    def _link_root(self, pool: _Pool, unit: StoredUnit, source: UnitSource,
                   fetched: dict[int, StoredUnit] | None = None) -> None:
        """``fetched``: stored units already read (roots fetched for many units at once)."""
        index = pool.by_uid[unit.uid]
        if unit.root == unit.uid:
            pool.stored_root[index] = index
            return
        root_index = pool.by_uid.get(unit.root)
        if root_index is None:
            roots = fetched if fetched is not None and unit.root in fetched else source.units_by_uid([unit.root])
            if unit.root not in roots:  # the state lost it: treat the unit as a first occurrence
                pool.stored_root[index] = index
                return
            root_index = pool.add_stored(roots[unit.root])
            pool.stored_root[root_index] = root_index
        pool.stored_root[index] = root_index

    # --- 2. verification -------------------------------------------------------------

    def _verify(self, pool: _Pool, pairs: np.ndarray) -> tuple[dict[int, int], dict[int, float], dict[int, float]]:
        """Best verified candidate per unit: highest exact Jaccard, ties to the earliest.

        Vectorised over all pairs: only the distinct candidates are ranked in Python."""
        if not len(pairs):
            return {}, {}, {}
        threshold, numbers_differ = self.settings.threshold, self.settings.numbers_threshold
        units, cands = pairs[:, 0], pairs[:, 1]
        sims = jaccard_many([pool.sets[u] for u in units.tolist()], [pool.sets[c] for c in cands.tolist()])
        numbers = np.asarray(pool.numbers, dtype=np.int64)
        needed = np.where(numbers[units] != numbers[cands], numbers_differ, threshold)
        keep = sims >= needed
        units, cands, sims = units[keep], cands[keep], sims[keep]
        if not units.size:
            return {}, {}, {}
        distinct = np.unique(cands)
        rank_of = np.empty(int(distinct.max()) + 1, dtype=np.int64)
        rank_of[np.array(sorted(distinct.tolist(), key=pool.sort_key), dtype=np.int64)] = np.arange(distinct.size)
        order = np.lexsort((rank_of[cands], -sims, units))
        first = order[np.concatenate(([True], units[order][1:] != units[order][:-1]))]
        best_units, best_cands, best_sims = units[first], cands[first], sims[first]
        sigs_u = np.stack([pool.sigs[u] for u in best_units.tolist()])
        sigs_c = np.stack([pool.sigs[c] for c in best_cands.tolist()])
        agree = (sigs_u == sigs_c).mean(axis=1)
        unit_list = best_units.tolist()
        match = dict(zip(unit_list, best_cands.tolist(), strict=True))
        similarity = dict(zip(unit_list, best_sims.tolist(), strict=True))
        estimated = dict(zip(unit_list, agree.tolist(), strict=True))
        return match, similarity, estimated

    # --- 3.-5. one article -----------------------------------------------------------

    def _decide_article(self, pool: _Pool, a: int, article: RunArticle, seeds: dict[int, int],
                        seed_sim: dict[int, float], seed_est: dict[int, float], source: UnitSource) -> ArticleDecision:
        base = pool.article_start[a]
        count = len(article.units)
        match: dict[int, int] = {}
        sim: dict[int, float] = {}
        est: dict[int, float] = {}
        for seq in range(count):
            if base + seq in seeds:
                match[seq] = seeds[base + seq]
                sim[seq] = seed_sim[base + seq]
                est[seq] = seed_est[base + seq]
        if not match:
            return self._first_occurrence(pool, base, article)
        self._extend(pool, article, base, match, sim, est, source)

        roots = np.full(count, -1, dtype=np.int64)
        for seq, target in match.items():
            roots[seq] = self._root(pool, target)
        for seq in range(count):
            if seq not in match:
                pool.stored_root[base + seq] = base + seq  # a first occurrence leads to itself
            else:
                pool.stored_root[base + seq] = int(roots[seq])

        covered = np.zeros(count, dtype=bool)
        covered[list(match)] = True
        stub = self._smooth(article.units, covered)
        passage = self._passages(pool, article.units, match, roots, covered, stub)
        decision = ArticleDecision(
            record_id=article.record_id,
            units_match=np.array([pool.uid[match[i]] if i in match else -1 for i in range(count)], dtype=np.int64),
            units_root=np.array([pool.uid[int(roots[i])] if i in match else int(article.uids[i])
                                 for i in range(count)], dtype=np.int64),
            units_similarity=np.array([sim.get(i, np.nan) for i in range(count)]),
            units_estimated=np.array([est.get(i, np.nan) for i in range(count)]),
            units_passage=passage,
        )
        self._paragraphs(pool, article, decision, match, roots, covered | stub, stub, sim, est)
        decision.duplicate_of = self._duplicate_of(pool, article, match, roots, source)
        return decision

    def _first_occurrence(self, pool: _Pool, base: int, article: RunArticle) -> ArticleDecision:
        """An article none of whose units matched (most news): every unit leads to itself.
        The same decision the general path reaches, without its per-unit loops."""
        count = len(article.units)
        pool.stored_root.update((i, i) for i in range(base, base + count))
        nan = np.full(count, np.nan)
        return ArticleDecision(record_id=article.record_id, units_match=np.full(count, -1, dtype=np.int64),
                               units_root=article.uids.astype(np.int64, copy=True), units_similarity=nan,
                               units_estimated=nan.copy(), units_passage=[None] * count)

    def _extend(self, pool: _Pool, article: RunArticle, base: int, match: dict[int, int], sim: dict[int, float],
                est: dict[int, float], source: UnitSource) -> None:
        """Grow verified matches into their neighbours (containment against the match's neighbours)."""
        units = article.units
        todo = sorted(match)
        threshold = self.settings.extend_threshold
        while todo:
            seq = todo.pop()
            target = match[seq]
            for step in (-1, 1):
                neighbour = seq + step
                if neighbour < 0 or neighbour >= len(units) or neighbour in match:
                    continue
                if not units.eligible[neighbour] and units.para[neighbour] != units.para[seq]:
                    continue  # a short line next to a repeated paragraph is no evidence (house lines need their own)
                own = pool.sets[base + neighbour]
                best: tuple[float, int] | None = None
                for cand in (self._neighbour(pool, target, step, source), target):
                    if cand is None:
                        continue
                    contained = _containment(own, pool.sets[cand])
                    needed = max(threshold, self.settings.numbers_threshold) \
                        if pool.numbers[base + neighbour] != pool.numbers[cand] else threshold
                    if contained >= needed and (best is None or contained > best[0]):
                        best = (contained, cand)
                if best is None:
                    continue
                cand = best[1]
                match[neighbour] = cand
                sim[neighbour] = jaccard(own, pool.sets[cand])
                est[neighbour] = float(np.mean(pool.sigs[base + neighbour] == pool.sigs[cand]))
                todo.append(neighbour)

    def _neighbour(self, pool: _Pool, index: int, step: int, source: UnitSource) -> int | None:
        """The unit ``step`` places from pool unit ``index`` in its own article."""
        art = pool.art[index]
        if art >= 0:
            seq = pool.seq[index] + step
            start = pool.article_start[art]
            end = pool.article_start[art + 1] if art + 1 < len(pool.article_start) else pool.in_run
            return start + seq if 0 <= seq < end - start else None
        record = pool.record[index]
        wanted = pool.seq[index] + step
        cached = self._record_cache.get(record)
        if cached is None:
            cached = {u.seq: u for u in source.units_of_record(record)}
            self._record_cache[record] = cached
        unit = cached.get(wanted)
        if unit is None:
            return None
        added = pool.add_stored(unit)
        if added not in pool.stored_root:
            self._link_root(pool, unit, source)
        return added

    def _root(self, pool: _Pool, index: int) -> int:
        root = pool.stored_root.get(index, index)
        while root != index:
            index, root = root, pool.stored_root.get(root, root)
        return root

    def _smooth(self, units: Units, covered: np.ndarray) -> np.ndarray:
        """Uncovered stubs shorter than min_words between two covered units of one paragraph."""
        stub = np.zeros(len(units), dtype=bool)
        seq = 0
        n = len(units)
        while seq < n:
            if covered[seq]:
                seq += 1
                continue
            gap_end = seq
            while gap_end < n and not covered[gap_end] and units.para[gap_end] == units.para[seq]:
                gap_end += 1
            inside = (seq > 0 and covered[seq - 1] and units.para[seq - 1] == units.para[seq]
                      and gap_end < n and covered[gap_end] and units.para[gap_end] == units.para[seq])
            if inside and int(units.words[seq:gap_end].sum()) < self.settings.min_words:
                stub[seq:gap_end] = True
            seq = max(gap_end, seq + 1)
        return stub

    def _passages(self, pool: _Pool, units: Units, match: dict[int, int], roots: np.ndarray, covered: np.ndarray,
                  stub: np.ndarray) -> list[str | None]:
        out: list[str | None] = [None] * len(units)
        previous: int | None = None  # last covered, non-stub unit
        for seq in range(len(units)):
            if stub[seq]:
                out[seq] = out[previous] if previous is not None else None
                continue
            if not covered[seq]:
                previous = None
                continue
            root = int(roots[seq])
            chained = False
            if previous is not None:
                prev_root = int(roots[previous])
                chained = (pool.record[prev_root] == pool.record[root]
                           and 0 <= pool.seq[root] - pool.seq[prev_root] <= 1)
            out[seq] = out[previous] if chained and previous is not None else \
                f"{pool.record[root]}:{pool.para[root]}"
            previous = seq
        return out

    def _paragraphs(self, pool: _Pool, article: RunArticle, decision: ArticleDecision, match: dict[int, int],
                    roots: np.ndarray, covered: np.ndarray, stub: np.ndarray, sim: dict[int, float],
                    est: dict[int, float]) -> None:
        units = article.units
        by_para: dict[int, list[int]] = {}
        for seq, para in enumerate(units.para.tolist()):
            by_para.setdefault(para, []).append(seq)
        for para, seqs in by_para.items():
            total = int(units.words[seqs].sum())
            if not total or not covered[seqs].any():
                continue
            spans: list[Span] = []
            run: list[int] = []
            for seq in seqs + [None]:
                if run and (seq is None or not covered[seq] or
                            decision.units_passage[seq] != decision.units_passage[run[0]]):
                    spans.append(self._span(pool, units, run, roots, stub, sim, decision.units_passage[run[0]]))
                    run = []
                if seq is not None and covered[seq]:
                    run.append(seq)
            spans = [sp for sp in spans if sp is not None]
            covered_words = int(units.words[[q for q in seqs if covered[q]]].sum())
            repeat = None
            if covered_words >= self.settings.paragraph_share * total:
                matched = [q for q in seqs if q in match]
                weights = [int(units.words[q]) for q in matched]
                weight = sum(weights) or 1
                by_root: dict[tuple[str, int], int] = {}
                for q in matched:
                    r = int(roots[q])
                    key = (pool.record[r], pool.para[r])
                    by_root[key] = by_root.get(key, 0) + int(units.words[q])
                (record, paragraph), _ = max(by_root.items(), key=lambda kv: (kv[1], -kv[0][1]))  # ties: lower index
                main = max(spans, key=lambda sp: sp.words)
                repeat = ParagraphRepeat(
                    record, paragraph, main.passage,
                    round(sum(sim[q] * w for q, w in zip(matched, weights, strict=True)) / weight, 4),
                    round(sum(est[q] * w for q, w in zip(matched, weights, strict=True)) / weight, 4))
            decision.paragraphs[para] = (repeat, spans)

    def _span(self, pool: _Pool, units: Units, run: list[int], roots: np.ndarray, stub: np.ndarray,
              sim: dict[int, float], passage: str | None) -> Span | None:
        evidence = [q for q in run if not stub[q]]
        if not evidence or passage is None:
            return None
        root = int(roots[evidence[0]])
        weights = [int(units.words[q]) for q in evidence]
        similarity = sum(sim[q] * w for q, w in zip(evidence, weights, strict=True)) / (sum(weights) or 1)
        return Span(int(units.start[run[0]]), int(units.end[run[-1]]), passage, pool.record[root], pool.para[root],
                    round(similarity, 4), int(sum(int(units.words[q]) for q in run)))

    def _duplicate_of(self, pool: _Pool, article: RunArticle, match: dict[int, int], roots: np.ndarray,
                      source: UnitSource) -> tuple[str, float] | None:
        """The earlier article this one copies nearly whole, with the share of words it covers.

        A unit counts for article X when it matched X, or when X carries the same passage (its
        first occurrence elsewhere): a syndicated copy of X meets X's background at the
        background's first occurrence, not in X.
        """
        words = article.units.words
        total = int(words.sum())
        if not total or not match:
            return None
        direct: dict[str, int] = {}
        for seq, target in match.items():
            direct[pool.record[target]] = direct.get(pool.record[target], 0) + int(words[seq])
        best: tuple[str, float] | None = None
        for record, _ in sorted(direct.items(), key=lambda kv: (-kv[1], kv[0]))[:3]:
            carried = self._roots_of_record(pool, record, source)
            covered = sum(int(words[seq]) for seq, target in match.items()
                          if pool.record[target] == record or pool.uid[int(roots[seq])] in carried)
            share = round(covered / total, 4)
            if share >= self.settings.duplicate_share and (best is None or share > best[1]):
                best = (record, share)
        return best

    def _roots_of_record(self, pool: _Pool, record: str, source: UnitSource) -> set[int]:
        """uids of the first occurrences that one earlier article's units lead to."""
        art = pool.article_of.get(record)
        if art is not None:
            start = pool.article_start[art]
            end = pool.article_start[art + 1] if art + 1 < len(pool.article_start) else pool.in_run
            return {pool.uid[self._root(pool, i)] for i in range(start, end)}
        cached = self._record_cache.get(record)
        if cached is None:
            cached = {u.seq: u for u in source.units_of_record(record)}
            self._record_cache[record] = cached
        return {u.root for u in cached.values()}

    # --- 6. house lines --------------------------------------------------------------

    def _house_lines(self, articles: Sequence[RunArticle], decisions: list[ArticleDecision],
                     source: UnitSource) -> None:
        """Short lines at an article's edges that earlier articles of the same outlet carry."""
        s = self.settings
        lines: list[tuple[int, int, tuple[str, int]]] = []  # (article, paragraph, (group, hash))
        for a, (article, decision) in enumerate(zip(articles, decisions, strict=True)):
            if article.group is None:
                continue
            long_paras = set(article.units.para[article.units.eligible].tolist())
            body = [i for i, (kind, _) in enumerate(article.paragraphs) if kind == "body"]
            # Footers and header lines sit at the edges; a short line inside the story is news.
            edges = set(body[:2]) | set(body[-3:])
            for index in sorted(edges - long_paras):
                text = article.paragraphs[index][1]
                if not tokenize(text):
                    continue
                h = line_hash(text)
                decision.house_lines.append((index, h))
                lines.append((a, index, (article.group, h)))
        if not lines:
            return
        stored = source.house_line_occurrences({key for _, _, key in lines})
        in_run_records = {a.record_id for a in articles}
        # Per line: the records that carry it so far, and the first two (in order) of distinct records.
        carriers: dict[tuple[str, int], set[str]] = {}
        firsts: dict[tuple[str, int], list[tuple[str, int]]] = {}

        def note(key: tuple[str, int], record: str, para: int) -> None:
            records = carriers.setdefault(key, set())
            if record not in records:
                records.add(record)
                if len(firsts.setdefault(key, [])) < 2:
                    firsts[key].append((record, para))

        for key, occurrences in stored.items():
            for _, record, para in sorted(o for o in occurrences if o[1] not in in_run_records):
                note(key, record, para)
        for a, index, key in lines:  # articles are in publication order
            record_id = articles[a].record_id
            records = carriers.get(key, set())
            earlier = len(records) - (record_id in records)
            if earlier >= s.house_line_articles and decisions[a].repeat_of(index) is None:
                first_record, first_para = next(f for f in firsts[key] if f[0] != record_id)
                text = articles[a].paragraphs[index][1]
                passage = f"{first_record}:{first_para}"
                repeat = ParagraphRepeat(first_record, first_para, passage, 1.0, 1.0)
                decisions[a].paragraphs[index] = (repeat, [Span(0, len(text), passage, first_record, first_para,
                                                                1.0, len(tokenize(text)))])
            note(key, record_id, index)


__all__ = ["ArticleDecision", "ParagraphRepeat", "RepeatEngine", "RunArticle", "RunDecisions", "Span",
           "StoredUnit", "UnitSource", "line_hash"]
