"""``newsdedup serve`` end to end: a real Prefect server, the served ``ingest`` deployment on
a short interval schedule, manual triggers, the concurrency limit, and a clean shutdown.

One ``newsdedup serve`` process for the module (it starts the Prefect server as its child
on a free loopback port, with PREFECT_HOME under the pytest tmp dir). The tests run in
order and share it. Teardown kills both processes by PID (process group), always.
Everything waits by polling with generous deadlines: nothing here asserts a duration.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SEED_FILES, SEEDS

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
DEPLOYMENT = "schedtest"
INTERVAL = 20  # seconds between scheduled runs
DEADLINE = 150.0  # generous: a loaded 2-core CI machine


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    server_pid: int
    api_url: str
    raw: Path
    processed: Path
    env: dict[str, str]
    log: Path
    deployment_id: str = ""

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its dead parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


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
    log = base / "serve.log"
    port = _free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "newsdedup"), "serve", "--name", DEPLOYMENT, "--interval", str(INTERVAL), "--port", str(port),
             "--raw-dir", str(raw), "--processed-dir", str(processed), "--lock-wait", "120"],
            cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    state_file = home / "newsdedup-serve.json"
    served = Served(process, 0, f"http://127.0.0.1:{port}/api", raw, processed, env, log)
    try:
        info = _wait_for("newsdedup serve to start the server and serve", lambda: json.loads(state_file.read_text()),
                         served)
        served.server_pid = int(info["server_pid"])
        assert info["api_url"] == served.api_url
        deployment = _wait_for("the deployment", lambda: served.api("GET", f"/deployments/name/ingest/{DEPLOYMENT}"),
                               served)
        served.deployment_id = deployment["id"]
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(process.pid)
        if served.server_pid:
            _kill_group(served.server_pid)
        process.wait(10)


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


def test_sigterm_stops_the_runner_and_the_server(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)  # what Ctrl-C does too (SIGINT takes the same path)
    served.process.wait(90)
    assert served.process.returncode == 0, served.log_tail()
    _wait_for("the Prefect server to exit", lambda: not _alive(served.server_pid), timeout=60)
    assert not (Path(served.env["PREFECT_HOME"]) / "newsdedup-serve.json").exists()
    assert "All deployments have been paused" in served.log.read_text()
