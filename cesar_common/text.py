"""Text from outside (request fields, file names, URLs, ids, numbers) before it reaches a column or a log.

A NUL byte cannot be stored in a PostgreSQL text column at all, and other control characters (escape
sequences, line breaks) in a file name or a URL forge log lines and terminal output. Fields refuse them
(a 4xx naming the field); names that are only shown, such as an upload's file name, lose them.

A number sent from outside (a cookie's expiry, an event id, a header) is read by :func:`plain_number` alone:
``str.isdigit()`` accepts digits ``int()`` refuses (``²``) or reads (``٣``), and ``int()`` raises on more
than 4,300 digits, so the pair turned hostile headers into 500s and tracebacks.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_NUMBER_DIGITS",
    "TEXT_WHITESPACE",
    "control_character",
    "is_plain_token",
    "plain_number",
    "without_control_characters",
]

#: C0 controls and DEL; C1 controls (U+0080 to U+009F) too: terminals read some of them as escapes
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: what a free-text field (a prompt) may contain beside printable text
TEXT_WHITESPACE = "\t\n\r"
#: the most digits a number from outside may have: any such number fits a signed 64-bit integer, the
#: largest either database stores (a 19-digit one may not, and SQLite raises on binding it)
MAX_NUMBER_DIGITS = 18


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


def plain_number(text: str, *, max_digits: int = MAX_NUMBER_DIGITS) -> int | None:
    """``text`` as a whole number when it is 1 to ``max_digits`` ASCII digits and nothing else (no sign,
    space or underscore); None otherwise. The one way to read a number a client or a server sent."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None
