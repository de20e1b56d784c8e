"""`cesar worker`: options and environment map onto settings; problems come out as one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cesar.cli import cli
from cesar_worker import worker as worker_module


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_run_worker(settings: Any, **kwargs: Any) -> int:
        seen.append({"settings": settings, **kwargs})
        return 0

    monkeypatch.setattr(worker_module, "run_worker", fake_run_worker)
    return seen


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, ["worker", *args], env=env, catch_exceptions=False)


def test_help_lists_the_options_and_their_variables() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    options = "--db CESAR_DATABASE_URL --model CESAR_MODEL --device --compute-type --threads CESAR_THREADS"
    for text in [*options.split(), "--once", "--worker-id", "--preload", "--log-level"]:
        assert text in result.output


def test_options_become_settings(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke(
        "--db", url, "--device", "CPU", "--compute-type", "int8", "--threads", "3", "--once",
        "--worker-id", "gpu-box-1", "--log-level", "warning",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (call,) = calls
    settings = call["settings"]
    assert (settings.database_url, settings.device, settings.compute_type, settings.threads) == (
        url, "cpu", "int8", 3,
    )  # fmt: skip
    assert (call["once"], call["worker_id"], call["preload"]) == (True, "gpu-box-1", False)


def test_environment_variables_work_like_options(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    env = {"CESAR_DATABASE_URL": url, "CESAR_MODEL": "base.en", "CESAR_THREADS": "2"}
    assert invoke(env=env).exit_code == 0
    settings = calls[0]["settings"]
    assert (settings.database_url, settings.model, settings.threads) == (url, "base.en", 2)
    assert calls[0]["preload"] is False  # CESAR_MODEL alone does not preload


def test_model_on_the_command_line_is_preloaded(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    assert invoke("--db", f"sqlite:///{tmp_path / 'x.db'}", "--model", "base.en").exit_code == 0
    assert (calls[0]["settings"].model, calls[0]["preload"]) == ("base.en", True)


def test_a_bad_setting_is_one_line(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["worker", "--db", f"sqlite:///{tmp_path / 'x.db'}"], env={"CESAR_LEASE_SECONDS": "-1"}
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: invalid settings: CESAR_LEASE_SECONDS: Input should be greater than 0"
    )
    assert calls == []


def test_an_outdated_schema_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["worker", "--db", f"sqlite:///{tmp_path / 'new.db'}", "--once"])
    assert result.exit_code == 2
    assert result.output.startswith("error: the database schema is behind this version of Cesar")
    assert len(result.output.strip().splitlines()) == 1
