"""The CLI's choices come from the one declaration of each list (cesar_common.choices)."""

from __future__ import annotations

from typing import get_args

import click

from cesar.cli import cli
from cesar_common.choices import COMPUTE_TYPES, DEVICES, LOG_LEVELS, TASKS, TRANSCRIPT_FORMATS
from cesar_common.settings import Settings


def _choices(command: str, option: str) -> tuple[str, ...]:
    found = cli.commands[command]
    param = next(p for p in found.params if option in getattr(p, "opts", ()))
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


def test_cli_choices_are_the_declared_lists() -> None:
    assert _choices("transcribe", "--device") == DEVICES
    assert _choices("transcribe", "--compute-type") == COMPUTE_TYPES
    assert _choices("transcribe", "--format") == TRANSCRIPT_FORMATS
    assert _choices("transcribe", "--task") == TASKS
    assert _choices("serve", "--log-level") == LOG_LEVELS


def test_settings_use_the_same_lists() -> None:
    assert get_args(Settings.model_fields["device"].annotation) == DEVICES
    assert get_args(Settings.model_fields["compute_type"].annotation) == COMPUTE_TYPES
    assert get_args(Settings.model_fields["log_level"].annotation) == LOG_LEVELS
