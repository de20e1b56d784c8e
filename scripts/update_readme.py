"""Rewrite the README's settings table from the settings object (``make readme``; a test checks it)."""

from __future__ import annotations

import re
from pathlib import Path

from cesar_common.settings import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"
#: the table: its header row to the first line that is not a table row
TABLE = re.compile(r"^\| Variable \| Default \| Meaning \|\n(?:\|.*\n)*", re.MULTILINE)


def updated(text: str) -> str:
    if not TABLE.search(text):
        raise SystemExit("README.md has no settings table (a '| Variable | Default | Meaning |' header)")
    return TABLE.sub(lambda _match: settings_table(), text, count=1)


if __name__ == "__main__":
    README.write_text(updated(README.read_text(encoding="utf-8")), encoding="utf-8")
