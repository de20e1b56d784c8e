"""The README documents every setting and the two commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from cesar_common.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme_table(field: str) -> None:
    assert f"| `CESAR_{field.upper()}` |" in README


def test_the_two_commands_come_first() -> None:
    head = README[: README.index("## The CLI")]
    assert "make serve" in head
    assert "make test" in head
