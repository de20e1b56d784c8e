"""Rewrite the table of decoding options in docs/decoding.md from their declaration (``make docs-decoding``).

``tests/unit/test_decoding_rules.py`` fails while the page's table differs from what this writes.
"""

from __future__ import annotations

import re
from pathlib import Path

from cesar_common.job_options import decoding_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "decoding.md"
#: the table: its header row to the first line that is not a table row
TABLE = re.compile(r"^\| Option \| Flag \| Meaning \| Default \| Range \|\n(?:\|.*\n)*", re.MULTILINE)


def updated(text: str) -> str:
    if not TABLE.search(text):
        raise SystemExit(
            f"{PAGE.name} has no options table (a '| Option | Flag | Meaning | Default | Range |' header)"
        )
    return TABLE.sub(lambda _match: decoding_table(), text, count=1)


if __name__ == "__main__":
    PAGE.write_text(updated(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
