"""Run the ingest flow on a schedule: a local Prefect server plus the served deployment.

``newsdedup serve`` (and ``make serve``) calls :func:`serve`; ``newsdedup trigger`` calls
:func:`trigger`. Prefect's embedded mode cannot schedule ("Cannot schedule flows on an
ephemeral server"), so unless ``PREFECT_API_URL`` points at a server already, ``serve``
starts ``prefect server start --host 127.0.0.1`` as a child process (SQLite under
``$PREFECT_HOME/server``), waits for ``/api/health``, then serves the ``ingest``
deployment from this process. Ctrl-C, SIGTERM or SIGHUP (the terminal or SSH session
closed) stops the runner (which pauses the schedule) and then the server.

The server never outlives ``serve``: on Linux it gets SIGTERM when ``serve`` dies, even by
SIGKILL (parent-death signal). ``serve`` records itself and its server, with their command
lines, in ``$PREFECT_HOME/newsdedup-serve.json``; a start that finds this file from a
``serve`` that is gone stops the server it names if that PID still runs the recorded
command line (a server that outlived its ``serve``), and otherwise only reports it.
``trigger`` refuses to start a run that nothing would execute: the recorded ``serve`` must
be alive, and the deployment must have been polled lately by a runner or worker.

Runs never overlap: the deployment has a global concurrency limit of 1; a run that finds
the slot taken waits in the Scheduled state "AwaitingConcurrencySlot" and starts when the
slot frees (ENQUEUE; the server started here retries it every 10 s, Prefect's default
is 30 s: ``PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS``). ``--on-collision cancel``
cancels it instead ("Deployment concurrency limit reached."): files are never lost either
way, the next run picks them up.

The ``prefect`` imports are inside the functions: the CLI starts without loading Prefect.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOW_NAME = "ingest"
DEFAULT_DEPLOYMENT = "newsdedup"
DEFAULT_PORT = 4200
DEFAULT_INTERVAL = 15 * 60
STATE_FILE = "newsdedup-serve.json"  # under PREFECT_HOME: how `newsdedup trigger` finds the server
# A runner polls for due runs every 10 s (PREFECT_RUNNER_POLL_FREQUENCY), a worker every 10-15 s;
# Prefect's own foreman marks a deployment NOT_READY after 60 s without a poll.
RUNNER_SILENCE_SECONDS = 90.0


class ServeError(Exception):
    """serve/trigger cannot go on; the message says why and what to do."""


def prefect_home() -> Path:
    """PREFECT_HOME if set, else ``.prefect`` in the current directory (never ~/.prefect)."""
    return Path(os.environ.get("PREFECT_HOME") or Path.cwd() / ".prefect").resolve()


def state_path() -> Path:
    return prefect_home() / STATE_FILE


def say(text: str, *, err: bool = False) -> None:
    """Print, but never fail: after SIGHUP the terminal may be gone, and the cleanup must go on."""
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def ui_url(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/api")


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200 and response.read().strip() == b"true"
    except (OSError, urllib.error.URLError, ValueError):
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# --- processes: alive, whose, tied to us -------------------------------------------------


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) said it exists


def command_line(pid: int) -> list[str] | None:
    """The argv ``pid`` runs with (None when it is gone or cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None  # Linux, and the process is gone
        raw = b""
    except OSError:
        return None
    if raw:
        return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]
    try:  # no /proc: ps gives the command as one string
        found = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip().split() if found.returncode == 0 and found.stdout.strip() else None


def runs_command(pid: int | None, recorded: list[str] | None) -> bool:
    """True if ``pid`` is alive and still runs the command line recorded for it (not a reused PID)."""
    if not pid or not recorded or not process_alive(pid):
        return False
    return command_line(pid) == recorded


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent SIGTERM when its parent dies (Linux prctl
    PR_SET_PDEATHSIG); None where there is no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def tie() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before the call: nobody would signal us
            os.kill(os.getpid(), signal.SIGTERM)

    return tie


def spawn_tied(command: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (Ctrl-C in the terminal reaches only us, who stop
    it in order) that still dies when this process dies, however it dies."""
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent(os.getpid()), **popen)


def stop_process_group(pid: int, timeout: float = 20.0) -> bool:
    """SIGTERM (then SIGKILL) to the process group ``pid`` leads, for a process that is not
    our child (we cannot wait for it: poll). SIGCONT too, so a stopped one acts on it."""
    try:
        target_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return True
    send = os.killpg if target_group else os.kill
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            send(pid, sig)
            send(pid, signal.SIGCONT)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return True
            time.sleep(0.2)
    return not process_alive(pid)


# --- the state file ----------------------------------------------------------------------


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    path = path or state_path()
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(dict(state), indent=2) + "\n")
    os.replace(partial, path)  # a reader never sees half a file


def serve_alive(state: Mapping[str, Any]) -> bool:
    """The ``newsdedup serve`` a state file names still runs (same PID, same command line)."""
    return runs_command(state.get("pid"), state.get("command"))


def clear_previous_state(path: Path) -> None:
    """Before a start: a state file left by a ``serve`` that is gone (SIGKILL, a crash, a
    reboot) is removed; a server it left running is stopped if it is ours, else reported.
    Raises ServeError if that ``serve`` is still running, or its server cannot be stopped."""
    state = read_state(path)
    if state is None:
        path.unlink(missing_ok=True)
        return
    if serve_alive(state):
        raise ServeError(f"newsdedup serve is already running (pid {state['pid']}, Prefect UI {state.get('ui_url')}): "
                         f"stop it first (Ctrl-C in its terminal, or kill {state['pid']})")
    pid, server_pid = state.get("pid"), state.get("server_pid")
    left = f"newsdedup serve (pid {pid}) did not stop cleanly (killed?)"
    if server_pid and runs_command(server_pid, state.get("server_command")):
        if not stop_process_group(int(server_pid)):
            raise ServeError(f"{left} and its Prefect server (pid {server_pid}) is still running and did not "
                             f"stop: stop it (kill -9 {server_pid}), then start again")
        say(f"newsdedup serve: a previous {left}; stopped the Prefect server it left running (pid {server_pid})")
    elif server_pid and process_alive(int(server_pid)) and not state.get("server_command"):
        # Written by an older newsdedup serve, which recorded no command lines: whose it is, is unknown.
        say(f"newsdedup serve: a previous {left}; pid {server_pid}, recorded as its Prefect server, still runs: "
            f"left alone (stop it with kill {server_pid} if it is that server)", err=True)
    elif server_pid and process_alive(int(server_pid)):
        say(f"newsdedup serve: a previous {left}; pid {server_pid}, recorded as its Prefect server, now runs "
            "another program: left alone", err=True)
    else:
        say(f"newsdedup serve: a previous {left}; removed its stale state file {path}")
    path.unlink(missing_ok=True)


@dataclass
class LocalServer:
    """A ``prefect server start`` child in its own process group, logging to a file."""

    process: subprocess.Popen[bytes]
    api_url: str
    log_path: Path

    @classmethod
    def start(cls, home: Path, host: str, port: int) -> LocalServer:
        if not port_free(host, port):
            raise ServeError(f"port {port} on {host} is in use: pass --port, or point PREFECT_API_URL at the "
                             f"Prefect server already running there (export PREFECT_API_URL=http://{host}:{port}/api)")
        server_home = home / "server"
        server_home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("PREFECT_API_URL", None)
        env.update({"PREFECT_HOME": str(server_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "DO_NOT_TRACK": "1", "PREFECT_UI_API_URL": f"http://{host}:{port}/api"})
        env.setdefault("PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS", "10")
        log_path = home / "server.log"
        prefect_bin = Path(sys.executable).with_name("prefect")
        command = [str(prefect_bin) if prefect_bin.exists() else "prefect",
                   "server", "start", "--host", host, "--port", str(port)]
        with open(log_path, "ab") as log:
            # Own session: Ctrl-C in the terminal reaches this process only, which stops the
            # runner first (it needs the API to pause the schedule), then the server.
            process = spawn_tied(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return cls(process, f"http://{host}:{port}/api", log_path)

    def command_line(self) -> list[str] | None:
        return command_line(self.process.pid)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(f"prefect server exited with code {self.process.returncode}; "
                                 f"see {self.log_path}:\n{self._log_tail()}")
            if api_healthy(self.api_url):
                return
            time.sleep(0.5)
        raise ServeError(f"prefect server not healthy after {timeout:.0f} s; see {self.log_path}")

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _schedule(cron: str | None, interval: float | None, timezone: str | None) -> Any:
    """The schedule, checked by Prefect's own rules (raises ServeError with one line)."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.schedules import Cron, Interval
    from pydantic import ValidationError

    if cron and interval:
        raise ServeError("give either --cron or --interval, not both")
    seconds = float(interval or DEFAULT_INTERVAL)
    if seconds <= 0:
        raise ServeError(f"--interval must be a positive number of seconds, not {interval:g}")
    for option, check in (("--timezone", lambda: timezone and CronSchedule(cron="0 0 * * *", timezone=timezone)),
                          ("--cron", lambda: cron and CronSchedule(cron=cron))):
        try:
            check()
        except ValidationError as exc:
            raise ServeError(f"{option}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    return Cron(cron, timezone=timezone) if cron else Interval(seconds, timezone=timezone)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _ensure_paused(api_url: str | None, deployment: str) -> None:
    """Pause the schedule even if the runner was stopped before it could (a signal in its
    first seconds): a schedule left active on a shared server would pile up runs."""
    if not api_url or not api_healthy(api_url, timeout=5):
        return
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            found = client.read_deployment_by_name(deployment)
            if not found.paused:
                client.pause_deployment(found.id)
                say(f"newsdedup serve: paused the schedule of {deployment}")
    except Exception as exc:  # nothing to pause (never registered), or the API is gone
        if type(exc).__name__ != "ObjectNotFound":
            say(f"newsdedup serve: could not check that {deployment} is paused ({type(exc).__name__})", err=True)


def _run_runner(flow: Any, *, name: str, schedule: Any, parameters: dict[str, Any], concurrency: Any) -> None:
    """``flow.serve(...)`` with a clean stop on Ctrl-C, SIGTERM and SIGHUP alike.

    Prefect 3.8's own SIGTERM handler calls the sync ``Runner.stop()`` from inside the
    event loop, where it returns a coroutine nobody awaits: the runner exits without
    cancelling its in-flight runs, which then crash when the server goes away. Here each
    signal schedules ``Runner.astop()`` on the loop (cancel in-flight runs, pause the
    schedule, return); a second signal interrupts at once.
    """
    import asyncio

    from prefect.runner import Runner

    runner = Runner(name=f"newsdedup-{name}", pause_on_shutdown=True)
    runner.add_flow(flow, name=name, schedules=[schedule], parameters=parameters, concurrency_limit=concurrency,
                    description="newsdedup: ingest new and changed files from raw/ into processed/",
                    tags=["newsdedup"])
    loop: asyncio.AbstractEventLoop | None = None
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping or loop is None or not runner.started:
            raise KeyboardInterrupt
        stopping = True
        say(f"newsdedup serve: {signal.Signals(signum).name} received, stopping the runner "
            "(in-flight runs are cancelled, the schedule is paused)")
        loop.call_soon_threadsafe(lambda: loop.create_task(runner.astop()))  # type: ignore[union-attr]

    async def main() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        await runner.start()

    runner.handle_sigterm = on_signal  # type: ignore[method-assign]  # start() installs this for SIGTERM
    # asyncio.run leaves a custom SIGINT handler alone; SIGHUP: the terminal or SSH session closed.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGHUP)}
    try:
        asyncio.run(main())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    *,
    raw_dir: str = "raw",
    processed_dir: str = "processed",
    name: str = DEFAULT_DEPLOYMENT,
    cron: str | None = None,
    interval: float | None = None,
    timezone: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    lock_wait_seconds: float = 300.0,
    on_collision: str = "enqueue",
    startup_timeout: float = 120.0,
) -> int:
    """Start what a schedule needs (unless PREFECT_API_URL is set) and serve the deployment."""
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home)
    for key, value in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}.items():
        os.environ.setdefault(key, value)
    external_api = os.environ.get("PREFECT_API_URL")
    # Prefect reads its settings once, when first imported: the address of the server this
    # process will start must be in the environment before the schedule is checked below.
    os.environ["PREFECT_API_URL"] = external_api or f"http://{host}:{port}/api"
    parameters = {"raw_dir": str(Path(raw_dir).resolve()), "processed_dir": str(Path(processed_dir).resolve()),
                  "lock_wait_seconds": lock_wait_seconds}
    schedule_text = f"cron {cron!r}" if cron else f"every {float(interval or DEFAULT_INTERVAL):g} s"
    if timezone:
        schedule_text += f" ({timezone})"
    deployment = f"{FLOW_NAME}/{name}"

    # Until the runner installs its handlers: SIGTERM and SIGHUP stop here as Ctrl-C does.
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    server: LocalServer | None = None
    state = state_path()
    owns_state = False
    api_url = ""
    try:
        # Everything that can be refused is checked before a server starts.
        schedule = _schedule(cron, interval, timezone)
        clear_previous_state(state)
        record: dict[str, Any] = {"pid": os.getpid(), "command": command_line(os.getpid()),
                                  "deployment": deployment, "started_at": time.time()}
        if external_api:
            say(f"newsdedup serve: using the Prefect server at {external_api} (PREFECT_API_URL); starting none")
            if not api_healthy(external_api, timeout=10):
                raise ServeError(f"the Prefect API at {external_api} does not answer /health: start it, "
                                 "or unset PREFECT_API_URL to let `newsdedup serve` start one")
            api_url = external_api
            record.update(api_url=api_url, ui_url=ui_url(api_url), server_pid=None, server_command=None)
        else:
            server = LocalServer.start(home, host, port)
            api_url = server.api_url
            # Recorded before waiting: a serve killed while its server starts is cleaned up next time.
            record.update(api_url=api_url, ui_url=ui_url(api_url), server_pid=server.process.pid,
                          server_command=server.command_line())
            write_state(state, record)
            owns_state = True
            say(f"newsdedup serve: starting a Prefect server on {host}:{port} "
                f"(pid {server.process.pid}, data in {home / 'server'}, log {server.log_path})")
            server.wait_healthy(startup_timeout)

        from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

        from flows.ingest import ingest

        strategy = {"enqueue": ConcurrencyLimitStrategy.ENQUEUE,
                    "cancel": ConcurrencyLimitStrategy.CANCEL_NEW}[on_collision]
        write_state(state, record)
        owns_state = True
        say("\n".join([
            f"newsdedup serve: deployment '{deployment}', {schedule_text}, one run at a time "
            f"({'a colliding run waits' if on_collision == 'enqueue' else 'a colliding run is cancelled'})",
            f"  raw dir       {parameters['raw_dir']}",
            f"  processed dir {parameters['processed_dir']}",
            f"  Prefect UI    {ui_url(api_url)}",
            "  run it now    newsdedup trigger --wait",
            f"           or  PREFECT_API_URL={api_url} prefect deployment run '{deployment}'",
            "  stop          Ctrl-C",
        ]))
        _run_runner(ingest, name=name, schedule=schedule, parameters=parameters,
                    concurrency=ConcurrencyLimitConfig(limit=1, collision_strategy=strategy))
    except ServeError as exc:
        say(f"newsdedup serve: {exc}", err=True)
        return 2
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for sig in previous:  # a second signal must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        try:
            if owns_state:
                _ensure_paused(api_url, deployment)
            if server is not None:
                say("newsdedup serve: stopping the Prefect server")
                server.stop()
            if owns_state:
                state.unlink(missing_ok=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    say("newsdedup serve: stopped")
    return 0


# --- trigger ---------------------------------------------------------------------------

FINAL_OK = {"COMPLETED"}


def resolve_api_url() -> tuple[str, dict[str, Any] | None]:
    """PREFECT_API_URL, else the server a ``newsdedup serve`` recorded; with the state file
    of the ``serve`` behind that server, if there is one."""
    state = read_state()
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        if state is None or not state.get("api_url"):
            raise ServeError(f"no Prefect server to talk to: start `newsdedup serve` (it records its address in "
                             f"{state_path()}) or set PREFECT_API_URL")
        api_url = str(state["api_url"])
    if state is not None and str(state.get("api_url", "")).rstrip("/") != api_url.rstrip("/"):
        state = None  # that file is about another server
    return api_url, state


def read_report(api_url: str, flow_run_id: str) -> str | None:
    """The run's ``ingest-report`` markdown, read over plain HTTP (the 3.8 client's
    read_artifacts sends nulls that the server here refuses)."""
    body = json.dumps({"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": ["ingest-report"]}},
                       "limit": 1, "offset": 0, "sort": "CREATED_DESC"}).encode()
    request = urllib.request.Request(f"{api_url.rstrip('/')}/artifacts/filter", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            found = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return found[0]["data"] if found else None


def check_parameters(flow: Any, given: Mapping[str, str]) -> dict[str, Any]:
    """``-p KEY=VALUE`` texts as the flow's typed parameters. Raises ServeError (one line) for
    a name the flow does not take or a value its type refuses: before any run is created."""
    import inspect
    import typing

    from pydantic import TypeAdapter, ValidationError

    function = getattr(flow, "fn", flow)
    accepted = inspect.signature(function).parameters
    hints = typing.get_type_hints(function)
    typed: dict[str, Any] = {}
    for key, text in given.items():
        if key not in accepted:
            raise ServeError(f"the {getattr(flow, 'name', function.__name__)} flow has no parameter {key!r}; "
                             f"it takes {', '.join(accepted)}")
        adapter = TypeAdapter(hints.get(key, Any))
        try:
            typed[key] = adapter.validate_strings(text)
        except ValidationError as exc:
            try:  # a list or an object, given as JSON
                typed[key] = adapter.validate_json(text)
            except ValidationError:
                hint = hints.get(key)
                named = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]  # int | None: int
                expected = " or ".join(getattr(t, "__name__", str(t)) for t in named)
                raise ServeError(f"parameter {key}={text!r} is not a valid {expected}: "
                                 f"{exc.errors()[0]['msg']}") from None
    from pipeline.settings import SettingsError
    from pipeline.settings import check_parameters as check_settings

    try:  # settings also have a range: -p threshold=1.7 is refused here, not by the run
        check_settings(typed)
    except SettingsError as exc:
        raise ServeError(str(exc)) from None
    return typed


def _since_polled(deployment: Any) -> float | None:
    """Seconds since a runner or worker last asked the server for this deployment's runs."""
    if deployment.last_polled is None:
        return None
    return (datetime.datetime.now(datetime.timezone.utc) - deployment.last_polled).total_seconds()


def _dead_serve(state: Mapping[str, Any] | None) -> str | None:
    if state is None or serve_alive(state):
        return None
    return (f"the newsdedup serve recorded in {state_path()} (pid {state.get('pid')}) is not running "
            "(killed?): start `newsdedup serve` again")


def _unserved(client: Any, deployment: Any, state: Mapping[str, Any] | None) -> str | None:
    """Why nothing would run this deployment's runs now, or None when something serves it."""
    dead = _dead_serve(state)
    if dead:
        return dead
    silence = _since_polled(deployment)
    created = deployment.created
    if silence is None and created and (datetime.datetime.now(datetime.timezone.utc) - created).total_seconds() < 30:
        # Just registered: the runner's first poll may still be on its way.
        deadline = time.monotonic() + 15
        while silence is None and time.monotonic() < deadline:
            time.sleep(1)
            deployment = client.read_deployment(deployment.id)
            silence = _since_polled(deployment)
    if silence is not None and silence <= RUNNER_SILENCE_SECONDS:
        return None
    when = "ever" if silence is None else f"for {silence:.0f} s"
    return (f"no runner or worker has polled {FLOW_NAME}/{deployment.name} {when}: start `newsdedup serve` "
            "(or a worker for its work pool)")


def trigger(*, name: str = DEFAULT_DEPLOYMENT, parameters: Mapping[str, str] | None = None,
            overrides: Mapping[str, Any] | None = None, wait: bool = False, timeout: float = 3600.0,
            poll: float = 2.0) -> int:
    """Start a run of the served deployment now; with ``wait``, exit 0 only if it completed.

    ``parameters`` are ``-p`` texts, checked and typed against the flow's signature;
    ``overrides`` are typed already. Exit codes: 0 started (with ``wait``: completed), 1 the
    run ended otherwise, 2 bad parameters or no server/deployment, 3 nothing serves the
    deployment, 4 ``wait`` timed out, 5 the API went away while waiting.
    """
    deployment_name = f"{FLOW_NAME}/{name}"
    try:
        api_url, state = resolve_api_url()
    except ServeError as exc:
        say(f"newsdedup trigger: {exc}", err=True)
        return 2
    dead = _dead_serve(state)
    if dead:  # no need to ask a server that nobody serves from (a stopped one would not even answer)
        say(f"newsdedup trigger: {dead}; no run was created", err=True)
        return 3
    os.environ["PREFECT_API_URL"] = api_url  # before Prefect is imported: it reads settings once

    from flows.ingest import ingest

    try:
        run_parameters = {**check_parameters(ingest, parameters or {}), **(overrides or {})}
    except ServeError as exc:
        say(f"newsdedup trigger: {exc}", err=True)
        return 2
    if not api_healthy(api_url, timeout=10):
        say(f"newsdedup trigger: the Prefect API at {api_url} does not answer; is `newsdedup serve` running?",
            err=True)
        return 2

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(deployment_name)
        except ObjectNotFound:
            say(f"newsdedup trigger: no deployment {deployment_name!r} on {api_url}", err=True)
            return 2
        reason = _unserved(client, deployment, state)
        if reason:
            say(f"newsdedup trigger: {reason}; no run was created", err=True)
            return 3
        flow_run = run_deployment(deployment_name, parameters=run_parameters, timeout=0, as_subflow=False,
                                  tags=["manual"])
        say(f"newsdedup trigger: started run {flow_run.name!r} ({flow_run.id}) of {deployment_name}")
        say(f"  {ui_url(api_url)}/runs/flow-run/{flow_run.id}")
        if not wait:
            return 0

        deadline = time.monotonic() + timeout
        last = None
        next_runner_check = time.monotonic() + 10
        while True:
            try:
                run = client.read_flow_run(flow_run.id)
                waiting = run.state is None or run.state.type.value in ("SCHEDULED", "PENDING")
                if waiting and time.monotonic() >= next_runner_check:
                    next_runner_check = time.monotonic() + 10
                    reason = _unserved(client, client.read_deployment(deployment.id), state)
                    if reason:
                        say(f"newsdedup trigger: run {flow_run.id} is waiting and nothing serves it any more: "
                            f"{reason}", err=True)
                        return 3
            except Exception as exc:  # the server went away (stopped, restarted) while we waited
                say(f"newsdedup trigger: lost the Prefect API at {api_url} while waiting ({type(exc).__name__}); "
                    f"the state of run {flow_run.id} is unknown", err=True)
                return 5
            run_state = run.state
            label = f"{run_state.type.value} ({run_state.name})" if run_state else "unknown"
            if label != last:
                say(f"  state: {label}")
                last = label
            if run_state is not None and run_state.is_final():
                break
            if time.monotonic() > deadline:
                say(f"newsdedup trigger: run {flow_run.id} not finished after {timeout:.0f} s", err=True)
                return 4
            time.sleep(poll)
    if run_state.type.value not in FINAL_OK:
        say(f"newsdedup trigger: run {flow_run.id} ended {run_state.type.value}: {run_state.message or ''}".rstrip(),
            err=True)
        return 1
    report = read_report(api_url, str(flow_run.id))
    if report:
        try:
            print(report, end="", flush=True)
        except OSError:
            pass
    return 0
