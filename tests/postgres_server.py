"""A real PostgreSQL server for the tests: a cluster in a temporary directory, on a free loopback
port, run as an unprivileged user (``nobody`` when the tests run as root: initdb refuses root),
stopped by PID always. Debian's ``postgresql`` package provides the binaries; the Makefile's
test target and .ci/run install it when it is missing."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

SKIP_REASON = ("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
               "install Debian's postgresql package (`make test` does when run as root)")


def server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields the server's URL (superuser ``newsdedup``, database ``postgres``)."""
    bindir = server_bin()
    assert bindir is not None, SKIP_REASON
    base = Path(tempfile.mkdtemp(prefix="newsdedup-pg-"))
    as_user: dict[str, int] = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
    data, sockets = base / "data", base / "sockets"
    server = None
    try:
        subprocess.run([
            str(bindir / "initdb"), "-D", str(data), "-U", "newsdedup", "--auth=trust", "--no-sync",
            "--encoding=UTF8", "--locale=C"], check=True, capture_output=True, cwd=base, **as_user)
        (base / "sockets").mkdir()
        if as_user:
            os.chown(sockets, as_user["user"], as_user["group"])
        port = _free_port()
        # fsync off: the tests kill clients, never the machine, so the server's own durability is not at stake.
        server = subprocess.Popen([str(bindir / "postgres"), "-D", str(data), "-k", str(sockets), "-p", str(port),
                                   "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                  stdout=subprocess.DEVNULL, stderr=open(base / "server.log", "wb"), cwd=base,
                                  **as_user)
        url = f"postgresql://newsdedup@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log = (base / "server.log").read_text()[-500:]
                    raise RuntimeError(f"PostgreSQL did not start: {log}") from None
                time.sleep(0.1)
        yield url
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGQUIT)  # immediate shutdown: a throwaway cluster needs no checkpoint
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """A new empty database on the server; its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return server_url.rsplit("/", 1)[0] + f"/{name}"
