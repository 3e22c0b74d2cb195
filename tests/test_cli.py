"""The `newsdedup` command as a user runs it: a real process, the real flow (embedded Prefect);
its help, version and argument checks in process (no interpreter start-up)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from flows.cli import build_parser, main
from pipeline.state import writer_lock
from tests.conftest import ROOT

NEWSDEDUP = [sys.executable, "-m", "flows.cli"]


def newsdedup(*args: str, env_home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PREFECT_HOME=str(env_home))
    return subprocess.run([*NEWSDEDUP, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def _without_prefect_home(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_HOME"}
    env["HOME"] = str(tmp_path / "home")
    return env


def test_run_reads_a_backlog_in_bounded_runs_then_records_and_status(seed_raw: Path, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    home = tmp_path / "prefect-home"
    # `python -m flows.ingest` is `newsdedup run`: from a project dir with no PREFECT_HOME set,
    # Prefect's database goes into that dir's .prefect, not ~/.prefect, and no telemetry errors are logged.
    done = subprocess.run([sys.executable, "-m", "flows.ingest", "--raw-dir", str(seed_raw), "--processed-dir",
                           str(processed), "--max-run-bytes", "6000"], cwd=tmp_path,
                          env=_without_prefect_home(tmp_path), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "files left: running again" in done.stdout
    assert done.stdout.count("# newsdedup ingest run") >= 3
    assert (tmp_path / ".prefect").is_dir() and not (tmp_path / "home" / ".prefect").exists()
    assert "telemetry" not in done.stderr.lower()
    assert (processed / "report.html").is_file()  # written once, by the backlog's last run

    listed = newsdedup("records", str(processed), env_home=home)
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(records) == 5
    assert sum(r["repeats"] for r in records) == 6

    status = newsdedup("status", str(processed), "--json", env_home=home)
    assert json.loads(status.stdout)["records"] == 5
    assert json.loads(status.stdout)["raw_dir"] == str(seed_raw.resolve())  # what source.path is relative to

    with writer_lock(processed):
        refused = newsdedup("run", "--raw-dir", str(seed_raw), "--processed-dir", str(processed), env_home=home)
    assert refused.returncode == 3
    assert "another newsdedup run is writing" in refused.stderr


def test_run_with_a_missing_raw_dir_fails_fast_and_clearly(tmp_path: Path) -> None:
    done = newsdedup("run", "--raw-dir", str(tmp_path / "typo"), "--processed-dir", str(tmp_path / "p"),
                     env_home=tmp_path / "home")
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert not (tmp_path / "home").exists()  # Prefect never started


def test_run_with_nothing_new_returns_at_once(seed_raw: Path, tmp_path: Path) -> None:
    from pipeline.ingest import pending_files, run_ingest

    processed = tmp_path / "processed"
    assert pending_files(seed_raw, processed) is None  # no state yet: a run is needed
    (seed_raw / "notes.docx").write_bytes(b"PK")  # reported once, then known
    run_ingest(seed_raw, processed)
    assert pending_files(seed_raw, processed) == 0
    done = newsdedup("run", "--raw-dir", str(seed_raw), "--processed-dir", str(processed), env_home=tmp_path / "h")
    assert done.returncode == 0 and "nothing new" in done.stdout
    assert not (tmp_path / "h").exists()  # Prefect never started
    (seed_raw / "new.txt").write_text("A new article arrives with a few words of its own to say.")
    assert pending_files(seed_raw, processed) == 1


def test_python_m_flows_ingest_takes_the_nothing_new_shortcut(seed_raw: Path, tmp_path: Path) -> None:
    from pipeline.ingest import run_ingest

    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    done = subprocess.run([sys.executable, "-m", "flows.ingest", "--raw-dir", str(seed_raw), str(processed)],
                          cwd=tmp_path, env=_without_prefect_home(tmp_path), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "nothing new" in done.stdout, done.stderr
    assert not (tmp_path / ".prefect").exists() and not (tmp_path / "home").exists()  # Prefect never started


# --- help, version, arguments ----------------------------------------------------------------

COMMANDS = ("run", "records", "passages", "export", "status", "check", "serve", "trigger")


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_help_is_plain_text_with_defaults_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    top = _help(capsys)
    assert "``" not in top and ":func:" not in top
    assert "examples:" in top and "exit codes:" in top
    for command in COMMANDS:
        text = _help(capsys, command)
        assert "``" not in text and ":func:" not in text, command
        assert "examples:" in text and "exit codes:" in text and "\n  0  " in text, command
        assert "PROCESSED_DIR" in text and "--processed-dir" in text, command
    assert "--raw-dir DIR         the dir the articles are read from (default: raw)" in _help(capsys, "run")
    serve = _help(capsys, "serve")
    assert "(default: 300.0)" in serve and "(default: enqueue)" in serve and "SIGHUP" in serve
    assert "3  nothing serves the deployment" in _help(capsys, "trigger")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"newsdedup {version('newsdedup')}"


def test_every_command_takes_the_processed_dir_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import _resolve_processed_dir

    extra = {"export": ["--out", "-"]}
    for command in COMMANDS:
        parsed = []
        for form in (["/data/p"], ["--processed-dir", "/data/p"]):
            args = build_parser().parse_args([command, *form, *extra.get(command, [])])
            _resolve_processed_dir(args)
            parsed.append(args.processed_dir)
        assert parsed == ["/data/p", "/data/p"], command
        args = build_parser().parse_args([command, *extra.get(command, [])])
        _resolve_processed_dir(args)
        assert args.processed_dir == (None if command == "trigger" else "processed"), command
    with pytest.raises(SystemExit) as exited:
        main(["records", "a", "--processed-dir", "b"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["serve", "--port", "0"], ["serve", "--interval", "-5"], ["trigger", "-p", "novalue"],
                 ["run", "--wait", "soon"], ["nosuchcommand"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--help" in err, (argv, err)


def test_status_lists_the_raw_files_not_processed_yet(seed_raw: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.ingest import run_ingest

    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    (seed_raw / "late.txt").write_text("A late article with a few words of its own to say about the day.")
    changed = sorted(seed_raw.glob("*.txt"))[0]
    changed.write_text(changed.read_text() + "\nA correction was appended.\n")
    (seed_raw / "notes.docx").write_bytes(b"PK")
    with pytest.raises(SystemExit) as exited:
        main(["status", "--processed-dir", str(processed), "--raw-dir", str(seed_raw)])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "3 not processed yet:" in text
    assert "  new      late.txt" in text and f"  changed  {changed.name}" in text
    assert "  refused  notes.docx: " in text
    with pytest.raises(SystemExit):
        main(["status", str(processed), "--raw-dir", str(seed_raw), "--json"])
    listed = json.loads(capsys.readouterr().out)["not_processed"]
    assert [(item["path"], item["why"]) for item in listed if item["why"] in ("new", "changed")] == \
        sorted([("late.txt", "new"), (changed.name, "changed")])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_refuses_a_bad_schedule_before_starting_a_server(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    for option, value, message in (("--cron", "every tuesday", 'Invalid cron string: "every tuesday"'),
                                   ("--timezone", "Mars/Olympus", 'Invalid timezone: "Mars/Olympus"')):
        done = newsdedup("serve", option, value, "--port", str(_free_port()), env_home=home)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.strip() == f"newsdedup serve: {option}: {message}" + (
            " (specify in IANA tzdata format, for example, America/New_York)" if option == "--timezone" else "")
        assert not (home / "server.log").exists()  # no server was started


def test_trigger_checks_parameters_against_the_flow_before_asking_a_server(tmp_path: Path) -> None:
    # Nothing listens on this port: the parameter is refused before any request is sent.
    api = f"http://127.0.0.1:{_free_port()}/api"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "home"), PREFECT_API_URL=api)
    done = subprocess.run([*NEWSDEDUP, "trigger", "-p", "batch_size=abc"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("newsdedup trigger: parameter batch_size='abc' is not a valid int: ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_check_parameters_types_known_names_and_refuses_the_rest() -> None:
    from flows.ingest import ingest
    from flows.serve import ServeError, check_parameters

    assert check_parameters(ingest, {"batch_size": "50", "raw_dir": "123", "lock_wait_seconds": "1.5",
                                     "progress_bar": "true"}) == {
        "batch_size": 50, "raw_dir": "123", "lock_wait_seconds": 1.5, "progress_bar": True}
    with pytest.raises(ServeError, match="the ingest flow has no parameter 'treshold'; it takes raw_dir, "):
        check_parameters(ingest, {"treshold": "0.5"})
    with pytest.raises(ServeError, match="parameter batch_size='two' is not a valid int"):
        check_parameters(ingest, {"batch_size": "two"})
    assert check_parameters(ingest, {"dask_workers": "4", "dask_address": "tcp://10.0.0.5:8786"}) == {
        "dask_workers": 4, "dask_address": "tcp://10.0.0.5:8786"}


def _in_process(*args: str, capsys: Any, flow: Any = None) -> subprocess.CompletedProcess[str]:
    """`newsdedup ARGS` in this process; the flow is replaced (``flow``, or one that must not start)."""
    from flows import cli

    def no_flow(**_: Any) -> dict[str, Any]:
        raise AssertionError("the flow must not start")

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exited:
        patch.setitem(sys.modules, "flows.ingest", types.SimpleNamespace(ingest=flow or no_flow))
        patch.setattr(cli, "_prefect_env", lambda: None)
        cli.main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return subprocess.CompletedProcess(list(args), int(exited.value.code or 0), out.out, out.err)


def test_config_prints_the_effective_settings_and_their_sources(tmp_path: Path, capsys: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "newsdedup.toml").write_text("threshold = 0.5\n")
    monkeypatch.setenv("NEWSDEDUP_DASK_WORKERS", "2")
    done = _in_process("config", "--batch-size", "50", capsys=capsys)
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in done.stdout.splitlines()[1:]}
    assert rows["threshold"] == ["0.5", "newsdedup.toml"]
    assert rows["dask_workers"] == ["2", "env NEWSDEDUP_DASK_WORKERS"]
    assert rows["batch_size"] == ["50", "--batch-size"]
    assert rows["shingle_size"] == ["3", "default"]
    as_json = json.loads(_in_process("config", "--json", capsys=capsys).stdout)
    assert as_json["threshold"] == {"value": 0.5, "from": "newsdedup.toml", "group": "detection",
                                    "env": "NEWSDEDUP_THRESHOLD", "flag": "--threshold"}
    (tmp_path / "newsdedup.toml").write_text("threshold = 0.5\nbatchsize = 3\n")
    bad = _in_process("config", capsys=capsys)
    assert bad.returncode == 2
    assert bad.stderr == "newsdedup: newsdedup.toml: unknown setting 'batchsize' (did you mean batch_size?)\n"


def test_run_passes_its_settings_to_the_flow_and_refuses_bad_ones_before_it(seed_raw: Path, tmp_path: Path,
                                                                              capsys: Any) -> None:
    from pipeline.ingest import run_ingest

    processed = tmp_path / "processed"
    got: list[dict[str, Any]] = []

    def flow(raw_dir: str, processed_dir: str, **params: Any) -> dict[str, Any]:
        got.append(params)
        return run_ingest(Path(raw_dir), Path(processed_dir)).as_dict()

    run = ("run", "--raw-dir", str(seed_raw), "--processed-dir", str(processed))
    done = _in_process(*run, "--batch-size", "2", "--dask-workers", "0", "--threshold", "0.5", capsys=capsys,
                       flow=flow)
    assert done.returncode == 0, done.stderr
    assert (got[0]["batch_size"], got[0]["dask_workers"], got[0]["threshold"]) == (2, 0, 0.5)
    for flag, value, message in [("--threshold", "1.7", "--threshold: must be in (0, 1], got 1.7"),
                                 ("--batch-size", "abc", "--batch-size: expected a whole number, got 'abc'")]:
        bad = _in_process(*run, flag, value, capsys=capsys)
        assert (bad.returncode, bad.stderr) == (2, f"newsdedup: {message}\n")


def test_run_over_settings_and_raw_dirs_the_state_cannot_take(seed_raw: Path, tmp_path: Path, capsys: Any) -> None:
    from pipeline.ingest import run_ingest

    processed = tmp_path / "processed"
    run_ingest(seed_raw, processed)
    run = ("run", "--raw-dir", str(seed_raw), "--processed-dir", str(processed))
    # Nothing new, but other decision settings: a run re-decides (the shortcut does not apply).
    started: list[dict[str, Any]] = []

    def flow(raw_dir: str, processed_dir: str, **params: Any) -> dict[str, Any]:
        started.append(params)
        from pipeline.settings import SPECS, load_settings

        settings = load_settings({k: v for k, v in params.items() if k in SPECS}).ingest()
        return run_ingest(Path(raw_dir), Path(processed_dir), settings).as_dict()

    assert _in_process(*run, "--paragraph-share", "0.5", capsys=capsys, flow=flow).returncode == 0
    assert len(started) == 1
    assert "nothing new" in _in_process(*run, "--paragraph-share", "0.5", capsys=capsys).stdout
    # Signature settings: refused with the exact command that rebuilds; it works as printed.
    refused = _in_process(*run, "--paragraph-share", "0.5", "--shingle-size", "4", capsys=capsys)
    command = f"newsdedup reindex {processed} --shingle-size 4"
    assert refused.returncode == 2 and refused.stderr.rstrip().endswith(command)
    rebuilt = _in_process(*command.split()[1:], "--paragraph-share", "0.5", capsys=capsys)
    assert rebuilt.returncode == 0 and "reindexed" in rebuilt.stdout
    again = _in_process(*run, "--paragraph-share", "0.5", "--shingle-size", "4", capsys=capsys)
    assert "nothing new" in again.stdout
    # Another raw dir: refused, naming both and the fix.
    extra = tmp_path / "extra-raw"
    extra.mkdir()
    other = _in_process("run", "--raw-dir", str(extra), "--processed-dir", str(processed), capsys=capsys)
    assert other.returncode == 2 and len(other.stderr.splitlines()) == 1
    assert str(seed_raw) in other.stderr and str(extra) in other.stderr and "--processed-dir" in other.stderr


def test_trigger_takes_settings_as_parameters_and_checks_their_range_before_any_run() -> None:
    from flows.ingest import ingest
    from flows.serve import ServeError, check_parameters

    assert check_parameters(ingest, {"threshold": "0.5", "shingle_size": "4"}) == {"threshold": 0.5, "shingle_size": 4}
    with pytest.raises(ServeError, match=r"^-p threshold=1.7: must be in \(0, 1\], got 1.7$"):
        check_parameters(ingest, {"threshold": "1.7"})
