"""The CLI's choice lists stay equal to the settings' Literal types they mirror."""

from __future__ import annotations

from typing import get_args

from cesar_common.cli._common import COMPUTE_TYPES, DEVICE_NAMES, LOG_LEVELS
from cesar_common.settings import ComputeType, Device, Settings


def test_cli_choices_match_the_settings() -> None:
    assert set(DEVICE_NAMES) == set(get_args(Device))
    assert set(COMPUTE_TYPES) == set(get_args(ComputeType))
    assert set(LOG_LEVELS) == set(get_args(Settings.model_fields["log_level"].annotation))
