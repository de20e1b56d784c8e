"""Put a diarizer's speaker turns on a transcript: each word on the turn it overlaps most, segments split
where the speaker changes. Pure Python (the API may use it; no NumPy, no faster_whisper)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import replace

from cesar_common.diarization.backend import Turn
from cesar_common.transcription.result import Segment, Word

__all__ = ["SpeakerFinder", "label_segments"]


class SpeakerFinder:
    """Which speaker talks over a span of time, in ``turns`` (any order, possibly overlapping)."""

    def __init__(self, turns: Sequence[Turn]) -> None:
        self._turns = sorted(turns, key=lambda turn: turn.start)
        self._starts = [turn.start for turn in self._turns]
        self._longest = max((turn.end - turn.start for turn in self._turns), default=0.0)

    def speaker(self, start: float, end: float) -> str | None:
        """The speaker whose turns overlap ``start``-``end`` most; where none overlaps, the nearest turn's;
        None when there are no turns at all."""
        if not self._turns:
            return None
        first = bisect.bisect_left(self._starts, start - self._longest)
        last = bisect.bisect_right(self._starts, end)
        overlaps: dict[str, float] = {}
        for turn in self._turns[first:last]:
            shared = min(turn.end, end) - max(turn.start, start)
            if shared > 0:
                overlaps[turn.speaker] = overlaps.get(turn.speaker, 0.0) + shared
        if overlaps:
            return max(overlaps, key=lambda name: overlaps[name])
        # between turns (a word VAD called silence): the nearest turn
        nearby = self._turns[max(first - 1, 0) : last + 1]
        return min(nearby, key=lambda turn: max(turn.start - end, start - turn.end)).speaker


def label_segments(segments: Sequence[Segment], turns: Sequence[Turn]) -> tuple[Segment, ...]:
    """``segments`` with speakers: those with words split where the speaker changes, every word and
    segment labelled, ids renumbered from 0."""
    finder = SpeakerFinder(turns)
    labelled: list[Segment] = []
    for segment in segments:
        if not segment.words:
            speaker = finder.speaker(segment.start, segment.end)
            labelled.append(replace(segment, speaker=speaker))
            continue
        words = [replace(word, speaker=finder.speaker(word.start, word.end)) for word in segment.words]
        pieces = _runs(words)
        decoded = segment.decoded
        if len(pieces) > 1 and decoded is not None:
            decoded = replace(decoded, tokens=None)  # a piece is no longer the window the tokens decode
        for index, piece in enumerate(pieces):
            labelled.append(
                replace(
                    segment,
                    start=segment.start if index == 0 else piece[0].start,
                    end=segment.end if index == len(pieces) - 1 else piece[-1].end,
                    text=segment.text if len(pieces) == 1 else _text(piece),
                    words=tuple(piece),
                    decoded=decoded,
                    speaker=piece[0].speaker,
                )
            )
    return tuple(replace(segment, id=index) for index, segment in enumerate(labelled))


def _runs(words: list[Word]) -> list[list[Word]]:
    runs: list[list[Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def _text(words: list[Word]) -> str:
    # the transcript's words are stored without their leading spaces
    return " ".join(word.word for word in words)
