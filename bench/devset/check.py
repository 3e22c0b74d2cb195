"""Validate bench/devset/labels.json against bench/devset/articles/*.txt.

    .venv/bin/python bench/devset/check.py

Checks: every article file has a label entry and vice versa; the first line is ` date YYYY-MM-DD`
with dates strictly increasing in file order; the body splits into the labelled paragraphs (blank
lines; or, when the body has no blank line, one paragraph per line), in order, each starting with
its `start`; labels and cases are known; `partial` paragraphs list repeated sentences that occur in
the paragraph; `duplicate_of` names an earlier file. Prints counts per case, label and language.
Exits 1 on any error.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = {"repeat", "partial", "original"}
CASES = {"edited", "merged", "split", "two-in-one", "line-per-sentence", "house-line", "syndicated",
         "paraphrase", "same-topic", "first", "news"}
NAME = re.compile(r"^(\d{3})_[a-z0-9]+\.txt$")
DATE = re.compile(r"^ date (\d{4}-\d{2}-\d{2})$")


def body_paragraphs(text: str) -> list[str]:
    body = text.split("\n", 1)[1] if "\n" in text else ""
    body = body.strip("\n")
    if re.search(r"\n[ \t]*\n", body):
        return [p.strip() for p in re.split(r"\n[ \t]*\n+", body) if p.strip()]
    return [line.strip() for line in body.split("\n") if line.strip()]


def main() -> int:
    labels = json.loads((HERE / "labels.json").read_text(encoding="utf-8"))["articles"]
    files = sorted(p.name for p in (HERE / "articles").glob("*.txt"))
    errors: list[str] = []
    if set(files) != set(labels):
        errors.append(f"files without labels: {sorted(set(files) - set(labels))}; "
                      f"labels without files: {sorted(set(labels) - set(files))}")
    cases, by_label, by_lang, by_case_lang = Counter(), Counter(), Counter(), Counter()
    last_date, seen = "", []
    for name in files:
        if not NAME.match(name):
            errors.append(f"{name}: bad file name")
        text = (HERE / "articles" / name).read_text(encoding="utf-8")
        m = DATE.match(text.split("\n", 1)[0])
        if not m:
            errors.append(f"{name}: first line is not ' date YYYY-MM-DD'")
        elif m.group(1) <= last_date:
            errors.append(f"{name}: date {m.group(1)} not after {last_date}")
        else:
            last_date = m.group(1)
        entry = labels.get(name)
        if entry is None:
            continue
        dup = entry.get("duplicate_of")
        if dup is not None and dup not in seen:
            errors.append(f"{name}: duplicate_of {dup} is not an earlier file")
        seen.append(name)
        paras = body_paragraphs(text)
        labelled = entry["paragraphs"]
        if len(paras) != len(labelled):
            errors.append(f"{name}: {len(paras)} paragraphs in the file, {len(labelled)} labelled")
        # every start found, in order
        pos = 0
        for lab in labelled:
            for j in range(pos, len(paras)):
                if paras[j].startswith(lab["start"]):
                    break
            else:
                errors.append(f"{name}: start {lab['start']!r} not found after paragraph {pos}")
                continue
            if j != pos:
                errors.append(f"{name}: start {lab['start']!r} is paragraph {j}, expected {pos}")
            para = paras[j]
            pos = j + 1
            if lab["label"] not in LABELS:
                errors.append(f"{name}: unknown label {lab['label']!r}")
            if lab["case"] not in CASES:
                errors.append(f"{name}: unknown case {lab['case']!r}")
            if lab["label"] == "partial":
                rep = lab.get("repeated") or []
                if not rep:
                    errors.append(f"{name}: partial paragraph {lab['start']!r} lists no repeated sentence")
                for s in rep:
                    if s not in para:
                        errors.append(f"{name}: repeated sentence not in paragraph: {s[:50]!r}")
            elif "repeated" in lab:
                errors.append(f"{name}: 'repeated' on a {lab['label']} paragraph")
            cases[lab["case"]] += 1
            by_label[lab["label"]] += 1
            by_lang[entry["language"]] += 1
            by_case_lang[(lab["case"], entry["language"])] += 1
    langs = sorted(by_lang)
    print(f"{len(files)} articles, {sum(cases.values())} paragraphs; "
          f"articles per language: {dict(Counter(labels[n]['language'] for n in files if n in labels))}")
    print(f"outlets: {dict(Counter(labels[n]['outlet'] for n in files if n in labels))}")
    print(f"labels: {dict(by_label)}")
    print(f"{'case':<18} {'total':>5} " + " ".join(f"{lang:>4}" for lang in langs))
    for case in sorted(cases):
        print(f"{case:<18} {cases[case]:>5} " + " ".join(f"{by_case_lang[(case, lang)]:>4}" for lang in langs))
    print(f"syndicated copies: {sum(1 for n in files if n in labels and labels[n].get('duplicate_of'))}")
    for e in errors:
        print("ERROR", e)
    print("OK" if not errors else f"{len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
