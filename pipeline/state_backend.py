"""Which database holds the state of a processed dir, chosen by URL, and how to open it.

``sqlite:///PATH`` (the default: ``processed/state.sqlite``, an embedded file) or
``postgresql://user@host:port/db`` (a server every worker host of a team can reach). The URL
comes from ``--state-url`` / the flow's ``state_url`` parameter (``set_state_url``), else the
``NEWSDEDUP_STATE_URL`` environment variable, else the default. Everything above this module
gets a connection with ``sqlite3.Connection``'s interface (``execute``, ``executemany``,
``executescript``, rows readable by name and by index) and writes SQL in SQLite's dialect;
``pipeline.state_pg`` maps the few SQLite idioms the state uses onto PostgreSQL, so no caller
knows which database runs.

One PostgreSQL database holds the state of one processed dir (the records' part files stay
under the processed dir; see ``pipeline.state_pg``).
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.sqlite"
STATE_URL_ENV = "NEWSDEDUP_STATE_URL"
SCHEMES = ("sqlite", "postgresql")

# Set for this process by `--state-url` or the flow's state_url parameter; beats the environment.
_chosen_url: str | None = None


class StateURLError(ValueError):
    """A state URL this version cannot use; the message says why."""


@dataclass(frozen=True)
class StateURL:
    scheme: str  # "sqlite" or "postgresql"
    url: str
    path: Path | None = None  # the SQLite file

    @property
    def is_sqlite(self) -> bool:
        return self.scheme == "sqlite"

    def display(self) -> str:
        """The URL without its password, for messages."""
        return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", self.url)


def parse_state_url(url: str) -> StateURL:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` (as SQLAlchemy spells them) or
    ``postgresql://…`` (also ``postgres://``; any libpq URI)."""
    text = url.strip()
    if text.startswith("sqlite:///"):
        path = text[len("sqlite:///"):]
        if not path:
            raise StateURLError(f"state URL {url!r} names no file: sqlite:///PATH")
        return StateURL("sqlite", text, Path(path))
    if text.startswith(("postgresql://", "postgres://")):
        return StateURL("postgresql", text)
    raise StateURLError(f"state URL {url!r} is not sqlite:///PATH or postgresql://user@host:port/db")


def set_state_url(url: str | None) -> None:
    """The state URL for this process (``None``: back to the environment or the default)."""
    global _chosen_url
    if url:
        parse_state_url(url)  # refuse a bad one here, in one line
    _chosen_url = url or None


def state_url_for(processed_dir: Path) -> StateURL:
    chosen = _chosen_url or os.environ.get(STATE_URL_ENV, "").strip()
    if chosen:
        return parse_state_url(chosen)
    path = Path(processed_dir) / STATE_FILE
    return StateURL("sqlite", f"sqlite:///{path}", path)


def state_exists(processed_dir: Path) -> bool:
    """Whether a run has created the state this processed dir uses."""
    target = state_url_for(processed_dir)
    if target.is_sqlite:
        assert target.path is not None
        return target.path.exists()
    from pipeline.state_pg import pg_state_exists

    return pg_state_exists(target.url)


def connect(processed_dir: Path, readonly: bool = False) -> Any:
    """A connection to the state of ``processed_dir``, in autocommit mode (callers BEGIN)."""
    return connect_url(state_url_for(processed_dir), readonly, processed_dir)


def connect_url(target: StateURL, readonly: bool = False, processed_dir: Path | None = None) -> Any:
    if not target.is_sqlite:
        from pipeline.state_pg import connect_pg

        return connect_pg(target, readonly)
    assert target.path is not None
    return connect_sqlite(target.path, readonly, processed_dir)


def table_names(conn: Any) -> list[str]:
    """The state's tables, in either database."""
    if isinstance(conn, sqlite3.Connection):
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    return [row[0] for row in conn.execute(sql)]


def column_names(conn: Any, table: str) -> list[str]:
    return [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]


def connect_sqlite(path: Path, readonly: bool = False, processed_dir: Path | None = None) -> sqlite3.Connection:
    from pipeline.state import StateError

    if readonly:
        if not path.exists():
            raise StateError(f"no newsdedup state in {processed_dir or path} (run `newsdedup run` first; a state "
                             f"kept in another database is named by --state-url or ${STATE_URL_ENV})")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    # 32 MB of page cache: with 128 MB a backlog's later runs peaked ~100 MB higher, no faster.
    conn.execute("PRAGMA cache_size=-32768")
    conn.row_factory = sqlite3.Row
    return conn


def integrity_problems(conn: Any, limit: int, quick: bool = False) -> list[str]:
    """What the database's own check finds wrong (empty: nothing). PostgreSQL keeps its pages
    checksummed and its tables crash-safe itself; a SQLite file can be truncated or overwritten."""
    if not isinstance(conn, sqlite3.Connection):
        return []
    pragma = "quick_check" if quick else "integrity_check"
    problems = [" ".join(row[0].split()) for row in conn.execute(f"PRAGMA {pragma}({int(limit)})")]
    return [] if problems == ["ok"] else problems
