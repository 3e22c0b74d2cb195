"""Build bench/devset/articles/*.txt and labels.json from content.py.

All article text lives in content.py and was written for this project. This script only
lays it out (paragraph breaks, light edits, syndicated copies) and derives the labels from
how each paragraph was composed, so text and labels cannot drift apart.

    .venv/bin/python bench/devset/build.py      # rewrites articles/ and labels.json
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from content import ARTICLES, BG, FOOT, OUTLETS  # noqa: E402

REPEAT_SHARE = 0.8  # >= this share of a paragraph's words is earlier background -> "repeat"


def words(text: str) -> list[str]:
    return text.split()


def bg_sentences(spec: dict) -> list[str]:
    """The sentences of a background spec, selected and lightly edited."""
    key = spec["key"]
    sel = spec.get("sents") or list(range(len(BG[key])))
    sents = [BG[key][i] for i in sel]
    for old, new in spec.get("subs", ()):
        for i, s in enumerate(sents):
            if old in s:
                sents[i] = s.replace(old, new, 1)
                break
        else:
            raise SystemExit(f"edit {old!r} not found in {key} {sel}")
    return sents


class Builder:
    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()        # background sentences printed in earlier articles
        self.footer_count: dict[str, int] = defaultdict(int)
        self.by_tag: dict[str, dict] = {}
        self.labels: dict[str, dict] = {}
        self.last_date = ""

    # -- one paragraph made of segments ------------------------------------------------
    def segments(self, spec) -> list[dict]:
        """A paragraph spec -> [{text, bg_key, rep, sents}]"""
        kind = spec["kind"]
        if kind == "N":
            return [{"text": spec["text"], "rep": False, "sents": None, "key": None}]
        if kind == "B":
            sents = bg_sentences(spec)
            sel = spec.get("sents") or list(range(len(BG[spec["key"]])))
            rep = all((spec["key"], i) in self.seen for i in sel)
            return [{"text": " ".join(sents), "rep": rep, "sents": sents, "key": spec["key"], "sel": sel}]
        if kind == "M":
            out = []
            for part in spec["parts"]:
                out += self.segments(part)
            return out
        raise ValueError(kind)

    def label(self, segs: list[dict], spec) -> dict:
        text = " ".join(s["text"] for s in segs)
        total = len(words(text))
        rep_words = sum(len(words(s["text"])) for s in segs if s["rep"])
        bg = [s for s in segs if s["key"]]
        news = [s for s in segs if not s["key"]]
        if rep_words == 0:
            label = "original"
            if bg and not news:
                case = "first"
            elif bg:
                case = "first"
            else:
                case = spec.get("case", "news")
        elif rep_words / total >= REPEAT_SHARE:
            label = "repeat"
            case = "two-in-one" if len(bg) > 1 and not news else ("merged" if news else spec.get("case", "edited"))
        else:
            label = "partial"
            case = "two-in-one" if len(bg) > 1 and not news else "merged"
        out = {"text": text, "label": label, "case": case}
        if case == "edited" and not spec.get("subs"):
            print(f"WARNING: edited repeat without edits: {text[:60]}")
        if label == "partial":
            out["repeated"] = [x for s in segs if s["rep"] for x in s["sents"]]
        if bg and news and spec.get("expect") and spec["expect"] != label:
            print(f"WARNING: expected {spec['expect']} got {label}: {text[:60]}")
        return out

    def paragraphs(self, spec) -> list[dict]:
        kind = spec["kind"]
        if kind == "F":
            self.footer_count[spec["key"]] += 1
            n = self.footer_count[spec["key"]]
            return [{"text": FOOT[spec["key"]], "label": "repeat" if n >= 3 else "original", "case": "house-line"}]
        if kind == "SPLIT":
            segs = self.segments({"kind": "B", "key": spec["key"], "subs": spec.get("subs", ())})
            sents = segs[0]["sents"]
            at, word = spec["at"], spec.get("word")
            if word is None:
                a, b = " ".join(sents[:at]), " ".join(sents[at:])
            else:
                w = sents[at].split()
                a = " ".join(sents[:at] + [" ".join(w[:word])])
                b = " ".join([" ".join(w[word:])] + sents[at + 1:])
            rep = segs[0]["rep"]
            lab, case = ("repeat", "split") if rep else ("original", "first")
            return [{"text": a, "label": lab, "case": case}, {"text": b, "label": lab, "case": case}]
        segs = self.segments(spec)
        return [self.label(segs, spec)]

    def lines(self, spec) -> list[dict]:
        """line-per-sentence layout: every sentence its own paragraph."""
        kind = spec["kind"]
        if kind == "F":
            return self.paragraphs(spec)
        if kind == "N":
            texts = spec["text"] if isinstance(spec["text"], list) else [spec["text"]]
            return [{"text": t, "label": "original", "case": spec.get("case", "news")} for t in texts]
        if kind == "B":
            seg = self.segments(spec)[0]
            out = []
            for i, s in zip(seg["sel"], seg["sents"], strict=False):
                rep = (spec["key"], i) in self.seen
                out.append({"text": s, "label": "repeat" if rep else "original",
                            "case": "line-per-sentence" if rep else "first"})
            return out
        raise ValueError(f"{kind} not supported in line-per-sentence articles")

    def used_keys(self, spec) -> list[tuple[str, int]]:
        kind = spec["kind"]
        if kind in ("B", "SPLIT"):
            sel = spec.get("sents") or list(range(len(BG[spec["key"]])))
            return [(spec["key"], i) for i in sel]
        if kind == "M":
            return [k for p in spec["parts"] for k in self.used_keys(p)]
        return []

    # -- articles ---------------------------------------------------------------------
    def build(self) -> None:
        out_dir = HERE / "articles"
        out_dir.mkdir(exist_ok=True)
        for old in out_dir.glob("*.txt"):
            old.unlink()
        for n, art in enumerate(ARTICLES, start=1):
            date = art["date"]
            if date <= self.last_date:
                raise SystemExit(f"article {n}: date {date} not after {self.last_date}")
            self.last_date = date
            name = f"{n:03d}_{OUTLETS[art['outlet']]['slug']}.txt"
            dup = None
            if art.get("syndicate"):
                src = self.by_tag[art["syndicate"]]
                dup = src["name"]
                texts = [p["text"] for p in src["paras"] if p["case"] != "house-line"]
                if art.get("drop_last"):
                    texts = texts[:-1]
                for old, new in art.get("subs", ()):
                    for i, t in enumerate(texts):
                        if old in t:
                            texts[i] = t.replace(old, new, 1)
                            break
                    else:
                        raise SystemExit(f"{name}: syndication edit {old!r} not found")
                paras = [{"text": t, "label": "repeat", "case": "syndicated"} for t in texts]
                if art.get("lead"):
                    paras.insert(0, {"text": art["lead"], "label": "original", "case": "news"})
                used = []
            else:
                paras = []
                for spec in art["paras"]:
                    paras += self.lines(spec) if art.get("lps") else self.paragraphs(spec)
                used = [k for spec in art["paras"] for k in self.used_keys(spec)]
            if not 4 <= len(paras) <= 10:
                raise SystemExit(f"{name}: {len(paras)} paragraphs")
            sep = "\n" if art.get("lps") else "\n\n"
            for p in paras:
                if "\n" in p["text"] or not p["text"].strip():
                    raise SystemExit(f"{name}: bad paragraph {p['text']!r}")
            head = f" date {date}\n" + ("" if art.get("lps") else "\n")
            (out_dir / name).write_text(head + sep.join(p["text"] for p in paras) + "\n", encoding="utf-8")
            self.seen.update(used)
            rec = {"name": name, "paras": paras}
            if art.get("tag"):
                self.by_tag[art["tag"]] = rec
            entry = []
            for p in paras:
                e = {"start": p["text"][:40], "label": p["label"], "case": p["case"]}
                if "repeated" in p:
                    e["repeated"] = p["repeated"]
                entry.append(e)
            self.labels[name] = {"outlet": OUTLETS[art["outlet"]]["name"],
                                 "language": OUTLETS[art["outlet"]]["lang"],
                                 "duplicate_of": dup, "paragraphs": entry}
        (HERE / "labels.json").write_text(
            json.dumps({"articles": self.labels}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {len(self.labels)} articles")


def sanity() -> None:
    """Warn where a label disagrees with plain word 5-gram containment in earlier articles."""
    labels = json.loads((HERE / "labels.json").read_text(encoding="utf-8"))["articles"]
    earlier: set[tuple[str, ...]] = set()
    for name in sorted(labels):
        body = (HERE / "articles" / name).read_text(encoding="utf-8").split("\n", 1)[1].strip("\n")
        paras = body.split("\n\n") if "\n\n" in body else body.split("\n")
        grams_here = set()
        for p, lab in zip(paras, labels[name]["paragraphs"], strict=False):
            toks = re.findall(r"\w+", p.lower())
            g = {tuple(toks[i:i + 5]) for i in range(len(toks) - 4)}
            grams_here |= g
            if lab["case"] == "house-line" or not g:
                continue
            c = len(g & earlier) / len(g)
            if lab["label"] == "original" and c > 0.15:
                print(f"  check {name} original but containment {c:.2f}: {p[:60]}")
            if lab["label"] == "repeat" and c < 0.4:
                print(f"  check {name} repeat but containment {c:.2f}: {p[:60]}")
        earlier |= grams_here


if __name__ == "__main__":
    Builder().build()
    sanity()
