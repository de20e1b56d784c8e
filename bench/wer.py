"""Word error rate of a transcript against a reference text, as the accuracy test and benchmarks measure it.

Both texts are normalised first, so that only the words count: case, punctuation and apostrophes go,
and numbers from 0 to 99 compare equal whether written in words or digits ("one" = "1",
"twenty one" = "21"). jiwer (a dev dependency) computes the rate.
"""

from __future__ import annotations

import re

# fmt: off
_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# fmt: on
# numbers become words, one word per digit group: "21" -> "twenty one", "1" -> "one"
_NUMBER_NAMES = {str(n): _UNITS[n] for n in range(20)} | {
    str(10 * t + u): f"{_TENS[t - 2]} {_UNITS[u]}" if u else _TENS[t - 2]
    for t in range(2, 10)
    for u in range(10)
}
_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_NOT_WORD = re.compile(r"[^\w]+")
_SPOKEN_TEXT = re.compile(
    r"Spoken text of (?P<name>[\w.-]+)(?P<aside>\s*\([^)]*\))?:\s*\"(?P<text>[^\"]+)\"", re.DOTALL
)


def normalise(text: str) -> str:
    """Lower case words separated by single spaces, without punctuation, numbers as words."""
    text = _APOSTROPHES.sub("", text.lower())  # "miller's" and "millers" are the same word here
    words = _NOT_WORD.sub(" ", text).split()
    return " ".join(_NUMBER_NAMES.get(word, word) for word in words)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words in the reference, after :func:`normalise`."""
    import jiwer

    expected = normalise(reference)
    if not expected:
        raise ValueError("the reference text has no words")
    return float(jiwer.wer(expected, normalise(hypothesis)))


def reference_from_readme(readme: str, name: str) -> str:
    """The reference text of audio ``name`` (its stem) in a fixtures README's "Spoken text of ..." lines.

    A text the README says is "said twice" is returned twice.
    """
    for match in _SPOKEN_TEXT.finditer(readme):
        if match["name"] == name:
            text = " ".join(match["text"].split())
            return f"{text} {text}" if "twice" in (match["aside"] or "") else text
    raise KeyError(f"no spoken text for {name!r} in the README")
