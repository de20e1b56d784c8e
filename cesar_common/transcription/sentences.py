"""Cut the batched pipeline's window-long segments into sentence-sized ones, by their words' times.

The batched pipeline decodes each VAD window (up to 30 s) without timestamp tokens, so a segment is a
whole window: too long for a subtitle cue. Its words carry times, though: a segment ends after a word
that ends a sentence, or, past :data:`MAX_SECONDS` without one, at the best place in it (after a
comma, else at the longest pause).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["MAX_SECONDS", "ends_clause", "ends_sentence", "piece_text", "split_words"]

MAX_SECONDS = 10.0  # longer than most sentences, about as long as a two-line subtitle stays readable
# with the full-width forms Chinese and Japanese use
_SENTENCE_ENDS = (".", "?", "!", "\u2026", "\u3002", "\uff1f", "\uff01")
_CLAUSE_ENDS = (",", ";", ":", "\u3001", "\uff0c", "\uff1b", "\uff1a")
_CLOSERS = "\"')]}\u00bb\u201d\u2019"


class TimedWord(Protocol):
    @property
    def word(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


W = TypeVar("W", bound=TimedWord)


def split_words(words: Sequence[W]) -> list[list[W]]:
    """``words`` in order, grouped into sentences of at most about :data:`MAX_SECONDS` each."""
    pieces: list[list[W]] = []
    current: list[W] = []
    for word in words:
        current.append(word)
        if _ends_with(word.word, _SENTENCE_ENDS):
            pieces.append(current)
            current = []
        elif len(current) > 1 and float(current[-1].end) - float(current[0].start) > MAX_SECONDS:
            cut = _best_cut(current)
            pieces.append(current[:cut])
            current = current[cut:]
    if current:
        pieces.append(current)
    return pieces


def piece_text(words: Sequence[TimedWord]) -> str:
    """The words' text as Whisper spelled it (each word brings its own leading space)."""
    return "".join(word.word for word in words).strip()


def ends_sentence(word: str) -> bool:
    """Whether ``word`` ends a sentence (a full stop, question or exclamation mark, before any closing
    quote or bracket)."""
    return _ends_with(word, _SENTENCE_ENDS)


def ends_clause(word: str) -> bool:
    """Whether ``word`` ends a clause (a comma, semicolon or colon) without ending the sentence."""
    return _ends_with(word, _CLAUSE_ENDS)


def _best_cut(words: Sequence[TimedWord]) -> int:
    """How many of ``words`` to keep: up to the last clause end, else the longest pause (the last of
    equals), looking only past the first third so that neither side is a stray word or two."""
    first = max(len(words) // 3, 1)
    for index in range(len(words), first - 1, -1):
        if _ends_with(words[index - 1].word, _CLAUSE_ENDS):
            return index

    def pause_before(index: int) -> tuple[float, int]:
        return float(words[index].start) - float(words[index - 1].end), index

    return max(range(first, len(words)), key=pause_before)


def _ends_with(word: str, marks: tuple[str, ...]) -> bool:
    return word.strip().rstrip(_CLOSERS).endswith(marks)
