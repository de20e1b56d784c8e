"""Text from outside (request fields, file names, URLs, ids) before it reaches a column or a log line.

A NUL byte cannot be stored in a PostgreSQL text column at all, and other control characters (escape
sequences, line breaks) in a file name or a URL forge log lines and terminal output. Fields refuse them
(a 4xx naming the field); names that are only shown, such as an upload's file name, lose them.
"""

from __future__ import annotations

import re

__all__ = ["TEXT_WHITESPACE", "control_character", "is_plain_token", "without_control_characters"]

#: C0 controls and DEL; C1 controls (U+0080 to U+009F) too: terminals read some of them as escapes
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: what a free-text field (a prompt) may contain beside printable text
TEXT_WHITESPACE = "\t\n\r"


def control_character(text: str, *, allowed: str = "") -> str | None:
    """The first control character in ``text`` that is not in ``allowed``, as ``U+XXXX``; None if none."""
    for match in _CONTROL.finditer(text):
        if match.group() not in allowed:
            return f"U+{ord(match.group()):04X}"
    return None


def without_control_characters(text: str) -> str:
    return _CONTROL.sub("", text)


def is_plain_token(text: str, *, max_length: int) -> bool:
    """A short printable ASCII word with no spaces (ids, cursors' parts, worker names)."""
    return 0 < len(text) <= max_length and text.isascii() and text.isprintable() and " " not in text
