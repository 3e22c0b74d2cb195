"""pipeline.settings: one model, read from defaults, a config file, the environment, flags."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pipeline.dedup import DedupSettings
from pipeline.settings import SPECS, SettingsError, check_parameters, load_settings


def test_later_sources_win_and_each_value_says_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "newsdedup.toml").write_text('threshold = 0.5\nbatch_size = 50\nmax_run_bytes = "64MB"\n')
    settings = load_settings({"batch_size": "20", "dask_workers": None}, cwd=tmp_path,
                             environ={"NEWSDEDUP_BATCH_SIZE": "30", "NEWSDEDUP_SHINGLE_SIZE": "4"})
    assert settings["threshold"] == 0.5 and settings.sources["threshold"] == "newsdedup.toml"
    assert settings["shingle_size"] == 4 and settings.sources["shingle_size"] == "env NEWSDEDUP_SHINGLE_SIZE"
    assert settings["batch_size"] == 20 and settings.sources["batch_size"] == "--batch-size"
    assert settings["max_run_bytes"] == 64 * 1024 * 1024
    assert settings["dask_workers"] == 0 and settings.sources["dask_workers"] == "default"
    assert settings.dedup() == DedupSettings(threshold=0.5, shingle_size=4)
    ingest = settings.ingest(lock_wait_seconds=5.0)
    assert (ingest.batch_size, ingest.max_run_bytes, ingest.lock_wait_seconds) == (20, 64 * 1024 * 1024, 5.0)
    assert "newsdedup.toml" in settings.describe().splitlines()[1]


def test_pyproject_table_and_an_explicit_config_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.newsdedup]\nmin_words = 6\n')
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings["min_words"] == 6 and settings.sources["min_words"] == "pyproject.toml [tool.newsdedup]"
    other = tmp_path / "strict.toml"
    other.write_text("paragraph_share = 0.9\n")
    settings = load_settings(config_file=other, cwd=tmp_path, environ={})
    assert settings["paragraph_share"] == 0.9 and settings["min_words"] == 8  # the explicit file only


@pytest.mark.parametrize(("toml", "env", "flags", "message"), [
    ("treshold = 0.5\n", {}, {}, "newsdedup.toml: unknown setting 'treshold' (did you mean threshold?)"),
    ("threshold = 1.7\n", {}, {}, "newsdedup.toml: threshold: must be in (0, 1], got 1.7"),
    ("[detection]\nthreshold = 0.5\n", {}, {}, "not tables"),
    ("threshold = \n", {}, {}, "cannot be read as TOML"),
    ("", {"NEWSDEDUP_BATCH_SIZE": "abc"}, {}, "NEWSDEDUP_BATCH_SIZE: expected a whole number, got 'abc'"),
    ("", {}, {"threshold": "abc"}, "--threshold: expected a number, got 'abc'"),
    ("", {}, {"threshold": "nan"}, "--threshold: expected a finite number"),
    ("", {}, {"dask_workers": "-1"}, "--dask-workers: must be in [0, 256], got -1"),
    ("", {}, {"max_file_bytes": "20XB"}, "--max-file-bytes: expected a number of bytes"),
    ("shingle_size = true\n", {}, {}, "expected a number, got true"),
    ("", {}, {"bands": "20"}, "bands * rows must not exceed num_perm: bands=20 (--bands), rows=2 (default)"),
])
def test_every_bad_value_is_one_line_naming_it_and_its_source(tmp_path: Path, toml: str, env: dict[str, str],
                                                              flags: dict[str, str], message: str) -> None:
    if toml:
        (tmp_path / "newsdedup.toml").write_text(toml)
    with pytest.raises(SettingsError) as refused:
        load_settings(flags, cwd=tmp_path, environ=env)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_flow_parameters_are_checked_before_a_run_is_created() -> None:
    check_parameters({"threshold": 0.5, "batch_size": 50, "raw_dir": "/data/raw"})  # others are not settings
    with pytest.raises(SettingsError, match="-p threshold=abc: expected a number"):
        check_parameters({"threshold": "abc"})
    with pytest.raises(SettingsError, match=r"-p batch_size=0: must be at least 1"):
        check_parameters({"batch_size": 0})


def test_the_flow_takes_every_setting_as_a_parameter() -> None:
    from flows.ingest import ingest

    parameters = inspect.signature(ingest.fn).parameters
    assert set(SPECS) <= set(parameters)
    assert all(parameters[name].default is None for name in SPECS)  # None: from the file, env or defaults
