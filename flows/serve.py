"""Run the ingest flow on a schedule: a local Prefect server plus the served deployment.

``newsdedup serve`` (and ``make serve``) calls :func:`serve`; ``newsdedup trigger`` calls
:func:`trigger`. Prefect's embedded mode cannot schedule ("Cannot schedule flows on an
ephemeral server"), so unless ``PREFECT_API_URL`` points at a server already, ``serve``
starts ``prefect server start --host 127.0.0.1`` as a child process (SQLite under
``$PREFECT_HOME/server``), waits for ``/api/health``, then serves the ``ingest``
deployment from this process. Ctrl-C or SIGTERM stops the runner (which pauses the
schedule) and then the server.

Runs never overlap: the deployment has a global concurrency limit of 1; a run that finds
the slot taken waits in the Scheduled state "AwaitingConcurrencySlot" and starts when the
slot frees (ENQUEUE; the server started here retries it every 10 s, Prefect's default
is 30 s: ``PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS``). ``--on-collision cancel``
cancels it instead ("Deployment concurrency limit reached."): files are never lost either
way, the next run picks them up.

The ``prefect`` imports are inside the functions: the CLI starts without loading Prefect.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOW_NAME = "ingest"
DEFAULT_DEPLOYMENT = "newsdedup"
DEFAULT_PORT = 4200
DEFAULT_INTERVAL = 15 * 60
STATE_FILE = "newsdedup-serve.json"  # under PREFECT_HOME: how `newsdedup trigger` finds the server


class ServeError(Exception):
    """serve/trigger cannot go on; the message says why and what to do."""


def prefect_home() -> Path:
    """PREFECT_HOME if set, else ``.prefect`` in the current directory (never ~/.prefect)."""
    return Path(os.environ.get("PREFECT_HOME") or Path.cwd() / ".prefect").resolve()


def state_path() -> Path:
    return prefect_home() / STATE_FILE


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
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        return cls(process, f"http://{host}:{port}/api", log_path)

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
    from prefect.schedules import Cron, Interval

    if cron and interval:
        raise ServeError("give either --cron or --interval, not both")
    if cron:
        return Cron(cron, timezone=timezone)
    return Interval(float(interval or DEFAULT_INTERVAL), timezone=timezone)


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
                print(f"newsdedup serve: paused the schedule of {deployment}", flush=True)
    except Exception as exc:  # nothing to pause (never registered), or the API is gone
        if type(exc).__name__ != "ObjectNotFound":
            print(f"newsdedup serve: could not check that {deployment} is paused ({type(exc).__name__})",
                  file=sys.stderr, flush=True)


def _run_runner(flow: Any, *, name: str, schedule: Any, parameters: dict[str, Any], concurrency: Any) -> None:
    """``flow.serve(...)`` with a clean stop on Ctrl-C and SIGTERM alike.

    Prefect 3.8's own SIGTERM handler calls the sync ``Runner.stop()`` from inside the
    event loop, where it returns a coroutine nobody awaits: the runner exits without
    cancelling its in-flight runs, which then crash when the server goes away. Here both
    signals schedule ``Runner.astop()`` on the loop (cancel in-flight runs, pause the
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
        print(f"newsdedup serve: {signal.Signals(signum).name} received, stopping the runner "
              "(in-flight runs are cancelled, the schedule is paused)", flush=True)
        loop.call_soon_threadsafe(lambda: loop.create_task(runner.astop()))  # type: ignore[union-attr]

    async def main() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        await runner.start()

    runner.handle_sigterm = on_signal  # type: ignore[method-assign]  # start() installs this for SIGTERM
    previous_int = signal.signal(signal.SIGINT, on_signal)  # asyncio.run leaves a custom SIGINT handler alone
    try:
        asyncio.run(main())
    finally:
        signal.signal(signal.SIGINT, previous_int)


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
    parameters = {"raw_dir": str(Path(raw_dir).resolve()), "processed_dir": str(Path(processed_dir).resolve()),
                  "lock_wait_seconds": lock_wait_seconds}
    schedule_text = f"cron {cron!r}" if cron else f"every {float(interval or DEFAULT_INTERVAL):g} s"
    if timezone:
        schedule_text += f" ({timezone})"

    # SIGTERM before the runner installs its own handler (it then exits via SystemExit).
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    server: LocalServer | None = None
    state = state_path()
    try:
        api_url = os.environ.get("PREFECT_API_URL")
        if api_url:
            print(f"newsdedup serve: using the Prefect server at {api_url} (PREFECT_API_URL); starting none")
            if not api_healthy(api_url, timeout=10):
                raise ServeError(f"the Prefect API at {api_url} does not answer /health: start it, "
                                 "or unset PREFECT_API_URL to let `newsdedup serve` start one")
        else:
            server = LocalServer.start(home, host, port)
            print(f"newsdedup serve: starting a Prefect server on {host}:{port} "
                  f"(pid {server.process.pid}, data in {home / 'server'}, log {server.log_path})", flush=True)
            server.wait_healthy(startup_timeout)
            api_url = server.api_url
            os.environ["PREFECT_API_URL"] = api_url

        from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

        from flows.ingest import ingest

        strategy = {"enqueue": ConcurrencyLimitStrategy.ENQUEUE,
                    "cancel": ConcurrencyLimitStrategy.CANCEL_NEW}[on_collision]
        schedule = _schedule(cron, interval, timezone)
        state.write_text(json.dumps({"api_url": api_url, "ui_url": ui_url(api_url),
                                     "deployment": f"{FLOW_NAME}/{name}", "pid": os.getpid(),
                                     "server_pid": server.process.pid if server else None}, indent=2) + "\n")
        print("\n".join([
            f"newsdedup serve: deployment '{FLOW_NAME}/{name}', {schedule_text}, one run at a time "
            f"({'a colliding run waits' if on_collision == 'enqueue' else 'a colliding run is cancelled'})",
            f"  raw dir       {parameters['raw_dir']}",
            f"  processed dir {parameters['processed_dir']}",
            f"  Prefect UI    {ui_url(api_url)}",
            "  run it now    newsdedup trigger --wait",
            f"           or  PREFECT_API_URL={api_url} prefect deployment run '{FLOW_NAME}/{name}'",
            "  stop          Ctrl-C",
        ]), flush=True)
        _run_runner(ingest, name=name, schedule=schedule, parameters=parameters,
                    concurrency=ConcurrencyLimitConfig(limit=1, collision_strategy=strategy))
    except ServeError as exc:
        print(f"newsdedup serve: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        try:
            _ensure_paused(os.environ.get("PREFECT_API_URL"), f"{FLOW_NAME}/{name}")
            if server is not None:
                print("newsdedup serve: stopping the Prefect server", flush=True)
                server.stop()
            state.unlink(missing_ok=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
    print("newsdedup serve: stopped", flush=True)
    return 0


# --- trigger ---------------------------------------------------------------------------

FINAL_OK = {"COMPLETED"}


def resolve_api_url() -> str:
    """PREFECT_API_URL, else the server a running ``newsdedup serve`` recorded."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    path = state_path()
    try:
        return str(json.loads(path.read_text())["api_url"])
    except (OSError, ValueError, KeyError):
        raise ServeError(f"no Prefect server to talk to: start `newsdedup serve` (it records its address in "
                         f"{path}) or set PREFECT_API_URL") from None


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


def trigger(*, name: str = DEFAULT_DEPLOYMENT, parameters: dict[str, Any] | None = None, wait: bool = False,
            timeout: float = 3600.0, poll: float = 2.0) -> int:
    """Start a run of the served deployment now; with ``wait``, exit 0 only if it completed."""
    try:
        api_url = resolve_api_url()
    except ServeError as exc:
        print(f"newsdedup trigger: {exc}", file=sys.stderr)
        return 2
    os.environ["PREFECT_API_URL"] = api_url
    if not api_healthy(api_url, timeout=10):
        print(f"newsdedup trigger: the Prefect API at {api_url} does not answer; is `newsdedup serve` running?",
              file=sys.stderr)
        return 2

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    deployment = f"{FLOW_NAME}/{name}"
    try:
        flow_run = run_deployment(deployment, parameters=parameters or {}, timeout=0, as_subflow=False,
                                  tags=["manual"])
    except ObjectNotFound:
        print(f"newsdedup trigger: no deployment {deployment!r} on {api_url}", file=sys.stderr)
        return 2
    print(f"newsdedup trigger: started run {flow_run.name!r} ({flow_run.id}) of {deployment}")
    print(f"  {ui_url(api_url)}/runs/flow-run/{flow_run.id}", flush=True)
    if not wait:
        return 0

    deadline = time.monotonic() + timeout
    last = None
    with get_client(sync_client=True) as client:
        while True:
            try:
                run = client.read_flow_run(flow_run.id)
            except Exception as exc:  # the server went away (stopped, restarted) while we waited
                print(f"newsdedup trigger: lost the Prefect API at {api_url} while waiting ({type(exc).__name__}); "
                      f"the state of run {flow_run.id} is unknown", file=sys.stderr)
                return 5
            state = run.state
            label = f"{state.type.value} ({state.name})" if state else "unknown"
            if label != last:
                print(f"  state: {label}", flush=True)
                last = label
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline:
                print(f"newsdedup trigger: run {flow_run.id} not finished after {timeout:.0f} s", file=sys.stderr)
                return 4
            time.sleep(poll)
    if state.type.value not in FINAL_OK:
        print(f"newsdedup trigger: run {flow_run.id} ended {state.type.value}: {state.message or ''}".rstrip(),
              file=sys.stderr)
        return 1
    report = read_report(api_url, str(flow_run.id))
    if report:
        print(report, end="")
    return 0
