"""Hostile raw dirs generated from a seed (issue 10), for tests/test_check.py and bench/soak.py.

``make_hostile_raw`` writes good articles mixed with every class of bad input the issue found,
each with a random name, place and content, and returns what a run must make of each path: a
record (with the words it must hold), a quarantine entry, or nothing (hidden names, skipped on
purpose).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INPUTS = Path(__file__).parent / "fixtures" / "inputs"
_spec = importlib.util.spec_from_file_location("make_code_pages", _INPUTS / "make_code_pages.py")
assert _spec is not None and _spec.loader is not None
CODE_PAGES = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(CODE_PAGES)

MAX_FILE_BYTES = 64 * 1024  # the runs over a hostile dir use this limit, so "oversized" stays small
_SYLLABLES = ["ka", "ro", "mi", "ta", "ne", "lu", "sa", "vo", "de", "ri", "po", "zu", "ha", "be", "gi", "lo"]
BACKGROUND = ("The harbour authority was founded in 1921 and has managed the three container terminals of the "
              "port since the reform of 1998, when the city sold its stake to a group of regional investors.")
# (text, encoding): single-byte code pages the README promises to detect, and UTF-16.
_ENCODED = [(CODE_PAGES.FR, "cp1252"), (CODE_PAGES.FR_GREVE, "latin-1"), (CODE_PAGES.DE, "cp1252"),
            (CODE_PAGES.ES, "latin-1"), (CODE_PAGES.CS, "cp1250"), (CODE_PAGES.PL, "cp1250"),
            (CODE_PAGES.DE, "utf-16")]
_EMPTY_HTML = [b"", b"\xef\xbb\xbf", b"<html><body>\xe2\x80\x8b</body></html>",
               b"<html><body><p> </p><div>\xc2\xa0</div></body></html>",
               b"<html><head><script>var a = 1;</script></head><body><script>go()</script></body></html>"]


@dataclass
class HostileRaw:
    """What a run over the dir must give, by the path it is stored under (``path#item`` for items)."""

    records: dict[str, str] = field(default_factory=dict)  # path -> text whose words the record holds
    quarantined: set[str] = field(default_factory=set)
    hidden: set[str] = field(default_factory=set)  # neither a record nor a quarantine entry
    unreadable_dirs: set[str] = field(default_factory=set)  # see deny_reading


def words(text: str) -> list[str]:
    import re

    return re.findall(r"\w+", text.casefold())


class _Writer:
    def __init__(self, raw: Path, rng: random.Random) -> None:
        self.raw = raw
        self.rng = rng
        self.vocabulary = sorted({"".join(rng.choices(_SYLLABLES, k=rng.randint(2, 4))) for _ in range(3000)})
        self.count = 0
        self.out = HostileRaw()

    def name(self, suffix: str, hidden: bool = False) -> str:
        """A fresh random path, sometimes in a subdirectory."""
        self.count += 1
        stem = f"{'.' if hidden else ''}{self.rng.choice(self.vocabulary)}-{self.count}{suffix}"
        if self.rng.random() < 0.3:
            return f"{self.rng.choice(['wire', 'feeds/2020', 'site'])}/{stem}"
        return stem

    def write(self, rel: str, data: bytes) -> Path:
        path = self.raw / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def article(self, sentences: int = 6) -> str:
        paragraphs = []
        for _ in range(self.rng.randint(2, 4)):
            paragraph = " ".join(" ".join(self.rng.choices(self.vocabulary, k=self.rng.randint(9, 18))).capitalize()
                                 + "." for _ in range(max(1, sentences // 2)))
            paragraphs.append(paragraph)
        if self.rng.random() < 0.5:
            paragraphs.append(BACKGROUND)  # repeated background: repeats get decided too
        return "\n\n".join(paragraphs) + "\n"


def make_hostile_raw(raw: Path, seed: int, good: int = 12) -> HostileRaw:
    """Good articles and every class of hostile input of issue 10, written under ``raw``."""
    rng = random.Random(seed)
    w = _Writer(raw, rng)
    out = w.out
    raw.mkdir(parents=True, exist_ok=True)
    for _ in range(good):  # plain articles, as text, HTML and JSON
        text = w.article()
        kind = rng.choice(["txt", "html", "json"])
        rel = w.name(f".{kind}")
        if kind == "txt":
            w.write(rel, text.encode())
        elif kind == "html":
            body = "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
            w.write(rel, f"<html><body><article>{body}</article></body></html>".encode())
        else:
            w.write(rel, json.dumps({"title": "Harbour news", "text": text}).encode())
            rel += "#0"  # an object of a JSON file is item 0
        out.records[rel] = text
    # 2: names that are not UTF-8, of a file and of a directory
    stem = rng.choice(w.vocabulary)
    w.write(os.fsdecode(f"caf\xe9-{stem}.txt".encode("latin-1")), w.article().encode())
    out.quarantined.add(f"caf\\xe9-{stem}.txt")
    w.write(os.fsdecode(b"d\xefr-" + stem.encode()) + "/inside.txt", w.article().encode())
    out.quarantined.add(f"d\\xefr-{stem}/inside.txt")
    # 3: single-byte code pages and UTF-16; UTF-8 with stray Windows-1252 bytes
    for text, encoding in rng.sample(_ENCODED, 3):
        rel = w.name(".txt")
        w.write(rel, text.encode(encoding))
        out.records[rel] = text
    rel = w.name(".txt")
    w.write(rel, CODE_PAGES.STRAY_BYTES)
    out.records[rel] = CODE_PAGES.STRAY_DECODED
    # 4: JSON Lines with an undecodable line and a line of bad JSON among good ones
    rel = w.name(".jsonl")
    lines: list[bytes] = []
    bad_at = rng.sample(range(5), 2)
    for item in range(5):
        if item == bad_at[0]:
            lines.append(CODE_PAGES.BAD_LINE)
            out.quarantined.add(f"{rel}#{item}")
        elif item == bad_at[1]:
            lines.append(b'{"title": "cut off", "text": "the line ends')
            out.quarantined.add(f"{rel}#{item}")
        else:
            text = w.article()
            lines.append(json.dumps({"title": f"Item {item}", "text": text}, ensure_ascii=False).encode())
            out.records[f"{rel}#{item}"] = text
    w.write(rel, b"\n".join(lines) + b"\n")
    # 5: hidden names (skipped on purpose), symlinks (to a file, a directory, nowhere), unreadable dirs
    for rel in (w.name(".txt", hidden=True), f".{rng.choice(w.vocabulary)} dir/a.txt", f"..{stem}.double.txt"):
        w.write(rel, w.article().encode())
        out.hidden.add(rel)
    target = next(iter(out.records)).split("#")[0]
    for rel, points_to in ((w.name(".txt"), raw / target), (w.name(""), raw.parent),
                           (w.name(".txt"), raw / "nowhere")):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(points_to, raw / rel)
        out.quarantined.add(rel)
    locked = f"locked-{rng.choice(w.vocabulary)}"
    w.write(f"{locked}/c.txt", w.article().encode())
    out.quarantined.add(locked)
    out.unreadable_dirs.add(locked)
    # 6: empty files and pages with nothing visible
    for data in rng.sample(_EMPTY_HTML, 3):
        rel = w.name(".html")
        w.write(rel, data)
        out.quarantined.add(rel)
    rel = w.name(".txt")
    w.write(rel, rng.choice([b"", b"\xef\xbb\xbf", b"\xe2\x80\x8b\n", b"   \n\n  "]))
    out.quarantined.add(rel)
    # 7: NUL characters: a stray one early or past the 8 KB sniff (dropped), or a binary file
    text = w.article()
    rel = w.name(".txt")
    w.write(rel, text.encode().replace(b" ", b" \x00", 1))
    out.records[rel] = text
    text = w.article() * 40  # past 8 KB
    rel = w.name(".txt")
    w.write(rel, text.encode() + b"Closing\x00 words of the article.\n")
    out.records[rel] = text + "Closing words of the article.\n"
    rel = w.name(".txt")
    w.write(rel, bytes(rng.getrandbits(8) for _ in range(4096)))
    out.quarantined.add(rel)
    # others: truncated and textless JSON, unsupported types, an oversized file
    for data in (b'{"title": "cut', json.dumps({"title": "no text here", "id": 7}).encode(), b"[1, 2, 3]"):
        rel = w.name(".json")
        w.write(rel, data)
        out.quarantined.add(rel)
    for suffix in (".pdf", ".docx"):
        rel = w.name(suffix)
        w.write(rel, b"%PDF-1.4 not an article")
        out.quarantined.add(rel)
    rel = w.name(".txt")
    w.write(rel, (w.article() * 200).encode()[: MAX_FILE_BYTES + 1000])
    out.quarantined.add(rel)
    return out


@contextmanager
def deny_reading(raw: Path, dirs: set[str]) -> Iterator[None]:
    """Make the named directories unreadable to the run: chmod 000, or, for root (whom chmod
    does not stop), os.scandir refusing them as the kernel would."""
    paths = {str(raw.resolve() / d) for d in dirs}
    if os.geteuid() != 0:
        for p in paths:
            os.chmod(p, 0)
        try:
            yield
        finally:
            for p in paths:
                os.chmod(p, 0o755)
        return
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) in paths:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    os.scandir = scandir  # type: ignore[assignment]
    try:
        yield
    finally:
        os.scandir = real_scandir  # type: ignore[assignment]


# --- damage to processed/, as the issue found it --------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # mid-line, for a part


def append_half(path: Path) -> None:
    with open(path, "ab") as fh:
        fh.write(path.read_bytes()[:100])  # half a record, no newline


def zero_bloom(processed: Path) -> None:
    from pipeline import bloom as bloom_file

    path = processed / bloom_file.BLOOM_FILE
    data = path.read_bytes()
    header = bloom_file._HEADER.size
    path.write_bytes(data[:header] + bytes(len(data) - header))  # every bit zeroed, header kept


def random_damage(processed: Path, rng: random.Random) -> str:
    """One damage that the database can repair, to a random file of processed/; says which."""
    parts = sorted((processed / "records").glob("part-*.jsonl"))
    choices = ["zero the Bloom filter", "delete the Bloom filter", "garble the quarantine list",
               "delete last_run.json", "stray part file"]
    if parts:
        choices += ["truncate a part", "delete a part", "append half a record", "replace a part by a symlink"] * 2
    what = rng.choice(choices)
    part = rng.choice(parts) if parts else None
    if what == "zero the Bloom filter":
        if (processed / "index.bloom").exists():  # not yet, when the first run was killed before its commit
            zero_bloom(processed)
    elif what == "delete the Bloom filter":
        (processed / "index.bloom").unlink(missing_ok=True)
    elif what == "garble the quarantine list":
        (processed / "quarantine.jsonl").write_bytes(b"\x00{garbage\n")
    elif what == "delete last_run.json":
        (processed / "last_run.json").unlink(missing_ok=True)
    elif what == "stray part file":
        (processed / "records").mkdir(exist_ok=True)
        (processed / "records" / "part-99999999.jsonl").write_text('{"id": "not a record"}\n')
    elif part is not None and what == "truncate a part":
        truncate(part)
    elif part is not None and what == "delete a part":
        part.unlink()
    elif part is not None and what == "append half a record":
        append_half(part)
    elif part is not None:
        other = rng.choice(parts)
        part.unlink()
        os.symlink(other if other != part else processed / "last_run.md", part)
    return what
