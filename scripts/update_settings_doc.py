"""Rewrite the settings table of docs/settings.md from the settings object (``make docs-settings``).

``tests/unit/test_docs.py`` fails while the page's table differs from what this writes.
"""

from __future__ import annotations

import re
from pathlib import Path

from cesar_common.settings import settings_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
#: the table: its header row to the first line that is not a table row
TABLE = re.compile(r"^\| Variable \| Default \| Meaning \|\n(?:\|.*\n)*", re.MULTILINE)


def updated(text: str) -> str:
    if not TABLE.search(text):
        raise SystemExit(f"{PAGE.name} has no settings table (a '| Variable | Default | Meaning |' header)")
    return TABLE.sub(lambda _match: settings_table(), text, count=1)


if __name__ == "__main__":
    PAGE.write_text(updated(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
