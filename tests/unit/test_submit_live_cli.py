"""`cesar submit --live`: what it refuses before anything is sent (one line, exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cesar.cli import cli

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "speech_en.wav"
NOWHERE = "http://127.0.0.1:9"  # nothing is sent: no server needed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--live", str(SPEECH)], f"error: --live takes URLs of live streams: {SPEECH} is a file"),
        (["https://radio.example/live.m3u8", "--max-seconds", "60"], "error: --max-seconds is the length"),
        (
            ["--live", "https://radio.example/live.m3u8", "--max-seconds", "0"],
            "Invalid value for '--max-seconds'",
        ),
    ],
)
def test_what_cannot_be_a_live_stream_is_refused_before_anything_is_sent(
    argv: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["submit", "--server", NOWHERE, *argv])
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
