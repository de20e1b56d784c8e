"""The exit codes docs/cli.md promises: 1 for bad input, usage errors included (Click's own default is 2,
which Cesar keeps for a failing environment), 2 for the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cesar.cli import cli


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["transcribe"],
        ["transcribe", "a.wav", "--format", "docx"],
        ["transcribe", "a.wav", "--num-speakers", "99"],
        ["submit"],
        ["remote", "list", "--limit", "0"],
        ["remote", "transcript", "job", "-f", "docx"],
        ["serve", "--workers", "many"],
        ["models", "no-such-command"],
        ["jobs", "purge"],
    ],
)
def test_a_usage_error_exits_1_as_any_bad_input(argv: list[str]) -> None:
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1, result.output
    assert "Error: " in result.stderr and "Traceback" not in result.output


def test_the_environment_failing_still_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["worker", "--db", f"sqlite:///{tmp_path / 'new.db'}", "--once"])
    assert result.exit_code == 2
    assert result.output.startswith("error: the database schema is behind")


def test_help_and_version_exit_0() -> None:
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["transcribe", "--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["--version"]).exit_code == 0
