"""``newsdedup serve`` end to end: a real Prefect server, the served ``ingest`` deployment on
a short interval schedule, manual triggers, the concurrency limit, a trigger nothing would
run, a ``serve`` killed with SIGKILL (the next one cleans up), and SIGHUP.

One ``newsdedup serve`` process for the module (it starts the Prefect server as its child
on a free loopback port, with PREFECT_HOME under the pytest tmp dir). The tests run in
order and share it; the SIGKILL test replaces it with a second one on the same port and
home, which the SIGHUP test stops. Teardown kills every process started here by PID
(process group), always. Everything waits by polling with generous deadlines: nothing here
asserts a duration.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.serve import ServeError, clear_previous_state, command_line, process_alive, write_state
from tests.conftest import SEED_FILES, SEEDS

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
DEPLOYMENT = "schedtest"
UNSERVED = "nobody-serves-this"  # a deployment of the same flow that no runner polls
INTERVAL = 20  # seconds between scheduled runs
DEADLINE = 150.0  # generous: a loaded 2-core CI machine


@dataclass
class Served:
    process: subprocess.Popen[bytes] | None
    server_pid: int
    api_url: str
    raw: Path
    processed: Path
    env: dict[str, str]
    log: Path
    port: int = 0
    deployment_id: str = ""
    groups: list[int] = field(default_factory=list)  # every process group started here: killed in teardown

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def runs(self) -> list[dict[str, Any]]:
        return self.api("POST", "/flow_runs/filter", {
            "flow_runs": {"deployment_id": {"any_": [self.deployment_id]}},
            "sort": "EXPECTED_START_TIME_ASC", "limit": 200, "offset": 0})

    def run(self, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/flow_runs/{run_id}")

    def report(self, run_id: str) -> str | None:
        found = self.api("POST", "/artifacts/filter", {
            "artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": ["ingest-report"]}},
            "limit": 1, "offset": 0, "sort": "CREATED_DESC"})
        return found[0]["data"] if found else None

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(what: str, check: Callable[[], Any], served: Served | None = None, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        if served is not None and served.process.poll() is not None:
            pytest.fail(f"newsdedup serve exited ({served.process.returncode}) while waiting for {what}:\n"
                        f"{served.log_tail()}")
        if time.monotonic() > deadline:
            tail = served.log_tail() if served is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(1.0)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _start_serve(served: Served, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "newsdedup"), "serve", "--name", DEPLOYMENT, "--interval", str(INTERVAL), "--port",
             str(served.port), "--raw-dir", str(served.raw), "--processed-dir", str(served.processed),
             "--lock-wait", "120"],
            cwd=served.raw.parent, env=served.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    served.groups.append(process.pid)
    served.process, served.log = process, log
    return process


def _newsdedup(served: Served, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "newsdedup"), *args], env=dict(served.env, **env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=DEADLINE + 60)


def _state_file(served: Served) -> Path:
    return Path(served.env["PREFECT_HOME"]) / "newsdedup-serve.json"


def _record_paths(processed: Path) -> set[str]:
    from pipeline.records import read_records

    return {r["source"]["path"] for r in read_records(processed)}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("serve")
    raw, processed, home = base / "raw", base / "processed", base / "prefect-home"
    raw.mkdir()
    for name in SEED_FILES:
        shutil.copy2(SEEDS / name, raw / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",  # the runner looks for due runs every 2 s, not 10
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",  # a waiting run retries every 2 s
    })
    port = _free_port()
    served = Served(None, 0, f"http://127.0.0.1:{port}/api", raw, processed, env, base / "serve.log", port=port)
    try:
        _start_serve(served, base / "serve.log")
        info = _wait_for("newsdedup serve to start the server and serve",
                         lambda: json.loads(_state_file(served).read_text()), served)
        served.server_pid = int(info["server_pid"])
        served.groups.append(served.server_pid)
        assert info["api_url"] == served.api_url
        deployment = _wait_for("the deployment", lambda: served.api("GET", f"/deployments/name/ingest/{DEPLOYMENT}"),
                               served)
        served.deployment_id = deployment["id"]
        # Registered now, so that by its test it is long past Prefect's grace for a first poll.
        served.api("POST", "/deployments/", {"name": UNSERVED, "flow_id": deployment["flow_id"]})
        yield served
    finally:
        for pid in served.groups:
            if served.process is not None and pid == served.process.pid and served.process.poll() is None:
                served.process.send_signal(signal.SIGTERM)
                try:
                    served.process.wait(60)
                except subprocess.TimeoutExpired:
                    pass
        for pid in served.groups:
            _kill_group(pid)
        if served.process is not None:
            served.process.wait(10)


def test_deployment_has_schedule_and_concurrency_limit(served: Served) -> None:
    deployment = served.api("GET", f"/deployments/{served.deployment_id}")
    assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [INTERVAL]
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployment["parameters"]["raw_dir"] == str(served.raw)
    assert deployment["parameters"]["processed_dir"] == str(served.processed)


def test_scheduled_run_writes_records_and_a_report(served: Served) -> None:
    def completed_scheduled_run() -> dict[str, Any] | None:
        done = [r for r in served.runs() if r["auto_scheduled"] and r["state_type"] == "COMPLETED"]
        return done[0] if done else None

    run = _wait_for("a scheduled run to complete", completed_scheduled_run, served)
    assert _record_paths(served.processed) == set(SEED_FILES)
    report = _wait_for("the run's report artifact", lambda: served.report(run["id"]), served)
    assert f"run `{run['id']}`" in report and "): completed" in report
    assert (served.processed / "last_run.md").exists()


def test_manual_trigger_processes_a_new_file(served: Served) -> None:
    shutil.copy2(SEEDS / SEED_FILES[0], served.raw / "manual_1.txt")
    # No PREFECT_API_URL: `newsdedup trigger` finds the server `newsdedup serve` recorded.
    result = subprocess.run([str(BIN / "newsdedup"), "trigger", "--name", DEPLOYMENT, "--wait", "--timeout",
                             str(DEADLINE)], env=served.env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=DEADLINE + 60)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = re.search(r"\(([0-9a-f-]{36})\)", result.stdout).group(1)  # type: ignore[union-attr]
    assert served.run(run_id)["state_type"] == "COMPLETED"
    assert "# newsdedup ingest run" in result.stdout  # --wait prints the run's report
    # The triggered run started after the file was added, so by its end the file is in.
    assert "manual_1.txt" in _record_paths(served.processed)
    assert served.report(run_id)


def test_two_triggers_at_once_run_one_at_a_time_and_lose_nothing(served: Served) -> None:
    for name in ("burst_1.txt", "burst_2.txt"):
        shutil.copy2(SEEDS / SEED_FILES[1], served.raw / name)
    env = dict(served.env, PREFECT_API_URL=served.api_url)
    command = [str(BIN / "prefect"), "deployment", "run", f"ingest/{DEPLOYMENT}"]
    triggers = [subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    run_ids = []
    for trigger in triggers:
        out, _ = trigger.communicate(timeout=DEADLINE)
        assert trigger.returncode == 0, out
        run_ids.append(re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1))  # type: ignore[union-attr]

    def both_final() -> list[dict[str, Any]] | None:
        runs = [served.run(i) for i in run_ids]
        return runs if all(r["state_type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED") for r in runs) else None

    runs = _wait_for("both triggered runs to finish", both_final, served, timeout=DEADLINE + 60)
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"], [r["state"] for r in runs]

    # One at a time: no two runs of the deployment (scheduled ones included) overlapped.
    finished = sorted((r for r in served.runs() if r["start_time"] and r["end_time"]), key=lambda r: r["start_time"])
    for earlier, later in zip(finished, finished[1:], strict=False):
        assert later["start_time"] >= earlier["end_time"], (earlier["name"], later["name"])
    # The limit was hit, not dodged: a run that found the slot taken waited for it.
    histories = [served.api("GET", f"/flow_run_states/?flow_run_id={i}") for i in run_ids]
    waited = [h for h in histories if any(st["name"] == "AwaitingConcurrencySlot" for st in h)]
    assert waited, "neither triggered run ever waited for the concurrency slot"
    # Nothing lost: every raw file has its record, and no run failed on the processed/ lock.
    assert _record_paths(served.processed) == {p.name for p in served.raw.iterdir()}
    assert not [r for r in served.runs() if r["state_type"] in ("FAILED", "CRASHED")]


def test_trigger_refuses_a_deployment_nothing_serves(served: Served) -> None:
    unserved = served.api("GET", f"/deployments/name/ingest/{UNSERVED}")
    done = _newsdedup(served, "trigger", "--name", UNSERVED, PREFECT_API_URL=served.api_url)
    assert done.returncode == 3, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"no runner or worker has polled ingest/{UNSERVED} ever" in done.stderr
    assert served.api("POST", "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [unserved["id"]]}}}) == []


def test_sigkill_leaves_a_stale_state_file_the_next_serve_cleans_up(served: Served) -> None:
    state_file = _state_file(served)
    killed_pid, orphan_pid = served.process.pid, served.server_pid
    # The server is held stopped, so that the SIGTERM the parent's death sends it stays pending:
    # it stands for a server that outlived its serve (an older newsdedup, a system without
    # parent-death signals), with the port still bound.
    os.killpg(orphan_pid, signal.SIGSTOP)
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(30)
    killed_at = datetime.datetime.now(datetime.timezone.utc)
    assert process_alive(orphan_pid) and state_file.exists()

    # A trigger now would create a run nobody executes: refused, without asking the (stopped) server.
    done = _newsdedup(served, "trigger", "--name", DEPLOYMENT)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"(pid {killed_pid}) is not running" in done.stderr and "no run was created" in done.stderr

    # The next serve, same home and port: the orphan is stopped (it is ours: same command line).
    second = _start_serve(served, served.log.with_name("serve-2.log"))
    info = _wait_for("the second serve to record its own server",
                     lambda: (found := json.loads(state_file.read_text()))["pid"] == second.pid and found, served)
    served.server_pid = int(info["server_pid"])
    served.groups.append(served.server_pid)
    log = served.log.read_text()
    assert f"newsdedup serve (pid {killed_pid}) did not stop cleanly" in log
    assert f"stopped the Prefect server it left running (pid {orphan_pid})" in log
    assert not process_alive(orphan_pid)
    def polled_since_the_kill() -> bool:
        last = served.api("GET", f"/deployments/{served.deployment_id}")["last_polled"]
        return bool(last) and datetime.datetime.fromisoformat(last) > killed_at

    _wait_for("the second serve's runner to poll", polled_since_the_kill, served)


def test_sighup_stops_the_runner_and_the_server(served: Served) -> None:
    served.process.send_signal(signal.SIGHUP)  # the terminal or SSH session closed
    served.process.wait(90)
    assert served.process.returncode == 0, served.log_tail()
    _wait_for("the Prefect server to exit", lambda: not process_alive(served.server_pid), timeout=60)
    assert not _state_file(served).exists()
    log = served.log.read_text()
    assert "SIGHUP received" in log and "All deployments have been paused" in log


def test_a_tied_child_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom flows.serve import spawn_tied\n"
         "child = spawn_tied([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
         "print(child.pid, flush=True)\ntime.sleep(300)"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    child_pid = 0
    try:
        child_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert process_alive(child_pid)
        parent.kill()
        parent.wait(30)
        _wait_for("the child to exit after its parent's SIGKILL", lambda: not process_alive(child_pid), timeout=60)
    finally:
        _kill_group(parent.pid)
        if child_pid:
            _kill_group(child_pid)  # its own session: its pid is its group
        parent.wait(10)


def test_a_stale_state_file_never_stops_a_process_that_is_not_ours(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        state_file = tmp_path / "newsdedup-serve.json"
        gone = subprocess.Popen(["true"])
        gone.wait()
        # A killed serve whose server PID now belongs to another program.
        write_state(state_file, {"pid": gone.pid, "command": ["newsdedup", "serve"], "server_pid": stranger.pid,
                                 "server_command": ["python", "prefect", "server", "start"]})
        clear_previous_state(state_file)
        assert process_alive(stranger.pid) and not state_file.exists()
        reported = capsys.readouterr().err
        assert f"pid {stranger.pid}, recorded as its Prefect server, now runs another program" in reported
        # A state file of an older serve records no command lines: reported, never stopped.
        write_state(state_file, {"pid": gone.pid, "server_pid": stranger.pid, "api_url": "x"})
        clear_previous_state(state_file)
        assert process_alive(stranger.pid) and not state_file.exists()
        assert f"still runs: left alone (stop it with kill {stranger.pid}" in capsys.readouterr().err
        # A serve that still runs (this process, by its own command line) is not stale.
        write_state(state_file, {"pid": os.getpid(), "command": command_line(os.getpid()), "ui_url": "x"})
        with pytest.raises(ServeError, match="already running"):
            clear_previous_state(state_file)
    finally:
        stranger.kill()
        stranger.wait(10)
