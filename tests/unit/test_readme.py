"""The README documents every setting (its table is written from the settings object) and the two commands."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_settings_table_is_the_one_written_from_the_settings() -> None:
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.updated(README) == README, "the settings table is stale: run `make readme`"


def test_the_two_commands_come_first() -> None:
    head = README[: README.index("## The CLI")]
    assert "make serve" in head
    assert "make test" in head
