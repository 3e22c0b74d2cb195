"""The writer lock on ``processed/.lock``: one run writes to a processed dir at a time.

The lock file is opened with ``O_NOFOLLOW`` and must be a regular file: a symlink put in
its place is refused, never followed (following it would truncate whatever it points at),
and so is a directory, a FIFO or a device. The OS drops the lock when the process dies.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from pipeline.state_backend import state_url_for

LOCK_FILE = ".lock"

# Locks held with share_in_process=True, by processed dir: nested writer_lock calls of the same
# process (the flow that `newsdedup run` starts) enter at once instead of refusing themselves.
_SHARED: dict[str, int] = {}
_SHARED_GUARD = threading.Lock()

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _kind(path: Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "not a regular file"
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(path: Path, kind: str) -> Exception:
    from pipeline.state import StateError  # lazily: pipeline.state re-exports this module's names

    return StateError(
        f"{path} is {kind}, not the regular lock file newsdedup keeps there; nothing was changed. "
        f"Remove it (`rm {'-r ' if kind == 'a directory' else ''}{path}`; no state is kept in it) and run again."
    )


def _open_lock(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EMLINK, errno.EOPNOTSUPP):
            raise _not_regular(path, _kind(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_regular(path, _kind(path))
    os.set_blocking(fd, True)
    return fd


@contextmanager
def writer_lock(processed_dir: Path, wait_seconds: float = 0.0, share_in_process: bool = False) -> Iterator[None]:
    """Exclusive lock on ``processed/.lock``; the OS drops it when the process dies.

    ``share_in_process``: while held, other ``writer_lock`` calls of this process on the same
    dir enter without locking again (``newsdedup run`` holds the lock from its first check to
    the end of the flow it starts, so a second run started meanwhile is refused at once)."""
    from pipeline.state import ProcessedDirLocked, utc_now

    processed_dir = Path(processed_dir)
    processed_dir.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(processed_dir)
    with _SHARED_GUARD:
        nested = key in _SHARED
        if nested:
            _SHARED[key] += 1
    if nested:
        try:
            yield
        finally:
            with _SHARED_GUARD:
                _SHARED[key] -= 1
        return
    fd = _open_lock(processed_dir / LOCK_FILE)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                    holder = "".join(ch if ch.isprintable() else "?" for ch in holder)
                    raise ProcessedDirLocked(
                        f"another newsdedup run is writing to {processed_dir} ({holder or 'pid unknown'}); "
                        "this run exits without changing anything. Try again when it has finished."
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {utc_now()}".encode(), 0)
        with ExitStack() as database_lock:
            target = state_url_for(processed_dir)
            if not target.is_sqlite:  # runs on other hosts share the database, not this lock file
                from pipeline.state_pg import advisory_writer_lock

                database_lock.enter_context(advisory_writer_lock(target, deadline))
            yield from _held(key, share_in_process)
    finally:
        os.close(fd)  # closing releases the flock


def _held(key: str, share_in_process: bool) -> Iterator[None]:
    if share_in_process:
        with _SHARED_GUARD:
            _SHARED[key] = 0
    try:
        yield
    finally:
        if share_in_process:
            with _SHARED_GUARD:
                _SHARED.pop(key, None)
