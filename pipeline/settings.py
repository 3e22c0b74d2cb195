"""Every setting a user can change, in one model, read in this order (later wins):

1. the defaults (``pipeline.dedup.DedupSettings``, ``pipeline.ingest.IngestSettings``);
2. a config file: ``--config FILE``, else ``newsdedup.toml`` in the working directory, else the
   ``[tool.newsdedup]`` table of a ``pyproject.toml`` there (flat ``name = value`` keys);
3. environment variables ``NEWSDEDUP_<NAME>`` (``NEWSDEDUP_THRESHOLD=0.5``);
4. command-line flags (``--threshold 0.5``) or flow parameters (``-p threshold=0.5``).

Every value is checked here, before a run starts: a wrong one is a ``SettingsError`` whose
message is one line naming the value and where it came from.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.dedup import SIGNATURE_FIELDS, DedupSettings
from pipeline.ingest import IngestSettings
from pipeline.pool import MAX_DEFAULT_WORKERS, default_workers

CONFIG_FILE = "newsdedup.toml"
ENV_PREFIX = "NEWSDEDUP_"

Value = int | float


class SettingsError(ValueError):
    """A setting that cannot be used; the message is one line saying which, where from, and why."""


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # "int" | "float" | "bytes" (an int, or text such as "256MB")
    default: Value
    minimum: float
    help: str
    group: str  # "detection" (stored with the state) | "run"
    open_minimum: bool = False  # the minimum itself is not allowed: (0, 1]
    maximum: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


_DEDUP = DedupSettings()
_INGEST = IngestSettings()
_SHARE = {"kind": "float", "minimum": 0.0, "open_minimum": True, "maximum": 1.0}

SPECS: dict[str, Spec] = {s.name: s for s in [
    Spec("threshold", help="exact Jaccard similarity a sentence needs with its match", group="detection",
         default=_DEDUP.threshold, **_SHARE),
    Spec("extend_threshold", help="containment a neighbour of a matched sentence needs", group="detection",
         default=_DEDUP.extend_threshold, **_SHARE),
    Spec("numbers_threshold", help="similarity needed when the two sentences state different numbers",
         group="detection", default=_DEDUP.numbers_threshold, **_SHARE),
    Spec("paragraph_share", help="share of a paragraph's words that must repeat for it to be a repeat",
         group="detection", default=_DEDUP.paragraph_share, **_SHARE),
    Spec("duplicate_share", help="share of an article's body matched into one earlier article for a whole copy",
         group="detection", default=_DEDUP.duplicate_share, **_SHARE),
    Spec("house_line_articles", "int", _DEDUP.house_line_articles, 1,
         "earlier articles of the same outlet that must carry a short line for it to be a house line", "detection"),
    Spec("min_words", "int", _DEDUP.min_words, 1,
         "words a unit (sentence or window of short sentences) needs to be evidence alone", "detection"),
    Spec("shingle_size", "int", _DEDUP.shingle_size, 1, "words per shingle (word n-grams)", "detection"),
    Spec("num_perm", "int", _DEDUP.num_perm, 1, "MinHash permutations per signature", "detection",
         maximum=1024),
    Spec("bands", "int", _DEDUP.bands, 1, "LSH bands (bands * rows <= num_perm)", "detection"),
    Spec("rows", "int", _DEDUP.rows, 1, "signature rows per LSH band", "detection"),
    Spec("seed", "int", _DEDUP.seed, 0, "seed of the MinHash permutations", "detection"),
    Spec("batch_size", "int", _INGEST.batch_size, 1, "files per prepare task", "run"),
    Spec("dask_workers", "int", 0, 0,
         "worker processes of a local Dask cluster that prepare batches (0: no cluster)", "run",
         maximum=256),
    Spec("processes", "int", default_workers(), 0,
         "worker processes beside the run's own that prepare batches (0: none; default: one per core "
         f"beyond the first, at most {MAX_DEFAULT_WORKERS}); not used with a Dask cluster", "run", maximum=256),
    Spec("max_file_bytes", "bytes", _INGEST.max_file_bytes, 1,
         "larger raw files are quarantined (e.g. 20MB)", "run"),
    Spec("max_run_bytes", "bytes", _INGEST.max_run_bytes, 1,
         "raw bytes one run reads at most; the rest waits for the next run (bounds memory)", "run"),
]}
DETECTION = tuple(name for name, spec in SPECS.items() if spec.group == "detection")
assert set(DETECTION) == {f.name for f in fields(DedupSettings)}, "every DedupSettings field is a setting"
assert set(SIGNATURE_FIELDS) <= set(DETECTION)

_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": 1024**2, "m": 1024**2, "gb": 1024**3, "g": 1024**3}
_BYTES_RE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def _convert(spec: Spec, raw: object) -> Value:
    """``raw`` (text from a flag or the environment, or a TOML/JSON value) as the setting's type."""
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {str(raw).lower()}")
    if spec.kind == "bytes":
        if isinstance(raw, int):
            value: Value = raw
        else:
            match = _BYTES_RE.match(str(raw))
            if match is None or match.group(2).casefold() not in _UNITS:
                raise ValueError(f"expected a number of bytes (e.g. 20000000 or 20MB), got {raw!r}")
            value = int(match.group(1)) * _UNITS[match.group(2).casefold()]
    elif spec.kind == "int":
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, int):
            value = raw
        else:
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise ValueError(f"expected a whole number, got {raw!r}") from None
    else:
        if isinstance(raw, int | float):
            value = float(raw)
        else:
            try:
                value = float(str(raw).strip())
            except ValueError:
                raise ValueError(f"expected a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {raw!r}")
    low_ok = value > spec.minimum if spec.open_minimum else value >= spec.minimum
    high_ok = spec.maximum is None or value <= spec.maximum
    if not (low_ok and high_ok):
        low = f"({spec.minimum:g}" if spec.open_minimum else f"[{spec.minimum:g}"
        if spec.maximum is None:
            raise ValueError(f"must be {'over' if spec.open_minimum else 'at least'} {spec.minimum:g}, got {value}")
        raise ValueError(f"must be in {low}, {spec.maximum:g}], got {value}")
    return value


def _unknown(name: str, where: str) -> SettingsError:
    close = difflib.get_close_matches(name, list(SPECS), n=1)
    hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(SPECS)})"
    return SettingsError(f"{where}: unknown setting {name!r}{hint}")


@dataclass(frozen=True)
class Settings:
    """The effective value of every setting and where it came from."""

    values: Mapping[str, Value]
    sources: Mapping[str, str]

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def dedup(self) -> DedupSettings:
        return DedupSettings(**{name: self.values[name] for name in DETECTION})  # type: ignore[arg-type]

    def ingest(self, **extra: Any) -> IngestSettings:
        """The run's settings; ``extra``: the ones that are not user settings (lock_wait_seconds)."""
        return IngestSettings(batch_size=int(self.values["batch_size"]),
                              max_file_bytes=int(self.values["max_file_bytes"]),
                              max_run_bytes=int(self.values["max_run_bytes"]), dedup=self.dedup(), **extra)

    def describe(self) -> str:
        """One line per setting: name, value, where it came from (``newsdedup config``)."""
        width = max(len(n) for n in SPECS)
        lines = [f"{'setting':<{width}}  {'value':<12}  from"]
        for group in ("detection", "run"):
            for name, spec in SPECS.items():
                if spec.group == group:
                    lines.append(f"{name:<{width}}  {self.values[name]!s:<12}  {self.sources[name]}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, dict[str, Any]]:
        return {name: {"value": self.values[name], "from": self.sources[name], "group": SPECS[name].group,
                       "env": SPECS[name].env, "flag": SPECS[name].flag} for name in SPECS}


def config_file_values(config_file: Path | None = None, cwd: Path | None = None) -> tuple[dict[str, object], str]:
    """The raw values of the config file in use, and its label (``{}, ""`` when there is none)."""
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise SettingsError(f"--config {config_file}: no such file")
        table_of = (lambda d: d.get("tool", {}).get("newsdedup", {})) if path.name == "pyproject.toml" \
            else (lambda d: d)
        label = str(config_file)
    else:
        base = Path(cwd) if cwd is not None else Path.cwd()
        path = base / CONFIG_FILE
        table_of = lambda d: d  # noqa: E731
        label = CONFIG_FILE
        if not path.is_file():
            path = base / "pyproject.toml"
            if not path.is_file():
                return {}, ""
            table_of = lambda d: d.get("tool", {}).get("newsdedup", {})  # noqa: E731
            label = "pyproject.toml [tool.newsdedup]"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{label}: cannot be read as TOML: {exc}") from None
    table = table_of(document)
    if not isinstance(table, dict):
        raise SettingsError(f"{label}: [tool.newsdedup] must be a table")
    if not table:
        return {}, ""
    for key, value in table.items():
        if isinstance(value, dict):
            raise SettingsError(f"{label}: [{key}]: settings are plain 'name = value' lines, not tables")
    return dict(table), label


def load_settings(
    overrides: Mapping[str, object | None] | None = None,
    override_label: Callable[[str], str] = lambda name: SPECS[name].flag,
    config_file: Path | None = None,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The effective settings. ``overrides``: flags or flow parameters (None: not given)."""
    values: dict[str, Value] = {name: spec.default for name, spec in SPECS.items()}
    sources = dict.fromkeys(SPECS, "default")

    def put(name: str, raw: object, where: str, what: str) -> None:
        try:
            values[name] = _convert(SPECS[name], raw)
        except ValueError as exc:
            raise SettingsError(f"{what}: {exc}") from None
        sources[name] = where

    file_values, label = config_file_values(config_file, cwd)
    for name, raw in file_values.items():
        if name not in SPECS:
            raise _unknown(name, label)
        put(name, raw, label, f"{label}: {name}")
    env = os.environ if environ is None else environ
    for name, spec in SPECS.items():
        if spec.env in env:
            put(name, env[spec.env], f"env {spec.env}", spec.env)
    for name, raw in (overrides or {}).items():
        if name not in SPECS:
            raise _unknown(name, "parameters")
        if raw is not None:
            put(name, raw, override_label(name), override_label(name))
    settings = Settings(values, sources)
    try:
        settings.dedup()
    except ValueError as exc:  # a rule across settings (bands * rows <= num_perm)
        given = ", ".join(f"{n}={values[n]} ({sources[n]})" for n in ("bands", "rows", "num_perm"))
        raise SettingsError(f"{exc}: {given}") from None
    return settings


def check_parameters(parameters: Mapping[str, object]) -> None:
    """Flow parameters that are settings (``trigger -p threshold=0.5``) checked before a run is created."""
    known = {name: value for name, value in parameters.items() if name in SPECS}
    for name, raw in known.items():
        try:
            _convert(SPECS[name], raw)
        except ValueError as exc:
            raise SettingsError(f"-p {name}={raw}: {exc}") from None


__all__ = ["CONFIG_FILE", "DETECTION", "SPECS", "Settings", "SettingsError", "check_parameters",
           "config_file_values", "load_settings"]
