"""The consumer's import: newsdedup's read side under a name no other project uses.

    from newsdedup import read_records, read_passages, export_records, last_run_id

The library itself lives in the ``pipeline`` package (``flows`` orchestrates it), a name a
consumer's own project may well have too. When it does (its ``pipeline`` comes first on
``sys.path``, or is already imported), the modules below are loaded from the directory beside
this one for the duration of the import and the consumer's ``pipeline`` is put back
afterwards: both work side by side. The functions keep the references they were loaded with;
they are the read side only (no writer needs them in a consumer's process).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_OURS = Path(__file__).resolve().parent.parent / "pipeline"
_MODULES = ("pipeline.records", "pipeline.catalog", "pipeline.export")


def _is_ours(module_dir: str | None) -> bool:
    return module_dir is not None and Path(module_dir).resolve() == _OURS


def _resolved_dir() -> str | None:
    """The directory ``import pipeline`` gives (or gave) in this process, without importing it."""
    loaded = sys.modules.get("pipeline")
    if loaded is not None:
        locations = getattr(loaded, "__path__", None)
        return next(iter(locations), None) if locations else None
    try:
        spec = importlib.util.find_spec("pipeline")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations), None)


def _load() -> tuple[ModuleType, ...]:
    if _is_ours(_resolved_dir()):
        return tuple(importlib.import_module(name) for name in _MODULES)
    theirs = {name: mod for name, mod in sys.modules.items() if name == "pipeline" or name.startswith("pipeline.")}
    for name in theirs:
        del sys.modules[name]
    try:
        spec = importlib.util.spec_from_file_location("pipeline", _OURS / "__init__.py",
                                                      submodule_search_locations=[str(_OURS)])
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["pipeline"] = package
        spec.loader.exec_module(package)
        return tuple(importlib.import_module(name) for name in _MODULES)
    finally:  # the consumer's own package back under its name; ours stays reachable through the functions
        for name in [n for n in sys.modules if n == "pipeline" or n.startswith("pipeline.")]:
            del sys.modules[name]
        sys.modules.update(theirs)


_records, _catalog, _export = _load()

read_records = _records.read_records
last_run_id = _records.last_run_id
RECORD_FIELDS = _records.RECORD_FIELDS
StateError = _records.StateError
read_passages = _catalog.read_passages
export_records = _export.export_records
__version__ = _records.__version__

__all__ = ["RECORD_FIELDS", "StateError", "__version__", "export_records", "last_run_id", "read_passages",
           "read_records"]
