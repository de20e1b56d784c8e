"""Put a diarizer's speaker turns on a transcript. Pure Python (the API may use it; no NumPy, no
faster_whisper).

Each word goes to the turn it overlaps most. A diarizer resolves turns to about half a second (the bundled
one's voice prints span 1.6 s), so its changes of speaker land up to a second off, often mid-sentence; the
words themselves say better where one speaker stops:

1. a sentence one speaker says almost all of (:data:`DOMINANT_SHARE` of its words) is theirs whole;
2. every change of speaker moves to the best word boundary within :data:`REACH_SECONDS` (taking no word of
   a sentence kept whole): after a sentence end, else after a clause end (a comma, ...), else at the
   longest pause;
3. a piece of a sentence shorter than :data:`MIN_SECONDS` goes to the speaker of the piece beside it.

Segments are then split where the speaker changes, and a segment shorter than :data:`MIN_SECONDS` is widened
into the silence around it or, without room for that, joined to its nearer neighbour: no cue of a diarized
transcript is shorter (unless the whole transcript is).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from cesar_common.diarization.backend import Turn
from cesar_common.transcription.result import Segment, Word
from cesar_common.transcription.sentences import ends_clause, ends_sentence, split_words

__all__ = ["DOMINANT_SHARE", "MIN_SECONDS", "REACH_SECONDS", "SpeakerFinder", "label_segments"]

#: the shortest piece a speaker gets, and the shortest segment (cue) of a diarized transcript: about the
#: resolution of the bundled diarizer, so a shorter piece's speaker is a guess (and a shorter cue cannot
#: be read)
MIN_SECONDS = 0.5
#: the share of a sentence's words one speaker must have to be given the whole sentence
DOMINANT_SHARE = 0.85
#: how far a change of speaker may move to a word boundary the words support
REACH_SECONDS = 1.0
# a shorter gap between words is Whisper's 20 ms grid, not a pause
_MIN_PAUSE = 0.1
# times are kept to the millisecond
_EPSILON = 0.0005


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
    """``segments`` with speakers (see the module's notes): those with words split where the speaker
    changes, short ones widened or joined, every word and segment labelled, ids renumbered from 0."""
    if not turns:
        return tuple(replace(segment, id=index) for index, segment in enumerate(segments))
    finder = SpeakerFinder(turns)
    words = [word for segment in segments for word in segment.words or ()]
    speakers = _settled(words, [finder.speaker(word.start, word.end) for word in words])
    labelled: list[Segment] = []
    position = 0
    for segment in segments:
        if not segment.words:
            labelled.append(replace(segment, speaker=finder.speaker(segment.start, segment.end)))
            continue
        own = speakers[position : position + len(segment.words)]
        position += len(segment.words)
        labelled += _split(segment, [replace(w, speaker=s) for w, s in zip(segment.words, own, strict=True)])
    return tuple(replace(segment, id=index) for index, segment in enumerate(_no_short_cues(labelled)))


def _settled(words: Sequence[Word], speakers: list[str | None]) -> list[str | None]:
    """Each word's speaker, from the turns' (``speakers``) by steps 1 to 3 of the module's notes."""
    sentences = []
    first = 0
    for sentence in split_words(words):
        sentences.append((first, first + len(sentence)))
        first += len(sentence)
    whole = [_given_whole(speakers, first, stop) for first, stop in sentences]
    # a sentence kept whole keeps its speaker: a change may move to its edges, not take any of its words
    settled = [kept for (first, stop), kept in zip(sentences, whole, strict=True) for _ in range(first, stop)]
    _move_changes(words, speakers, settled)
    for (first, stop), kept in zip(sentences, whole, strict=True):
        if not kept:
            _fold_fragments(words, speakers, first, stop)
    return speakers


def _given_whole(speakers: list[str | None], first: int, stop: int) -> bool:
    """Give ``speakers[first:stop]`` (a sentence) to one speaker when they have almost all of it."""
    name, count = Counter(speakers[first:stop]).most_common(1)[0]
    if count < DOMINANT_SHARE * (stop - first):
        return False
    speakers[first:stop] = [name] * (stop - first)
    return True


def _move_changes(words: Sequence[Word], speakers: list[str | None], settled: Sequence[bool]) -> None:
    """Move each change of speaker (a boundary: the index of the word after it) to the best supported
    boundary within reach, neither emptying the runs on either side nor moving a ``settled`` word."""
    change = 1
    while change < len(words):
        if speakers[change] == speakers[change - 1]:
            change += 1
            continue
        left, right = speakers[change - 1], speakers[change]
        first, last = change - 1, change
        while first > 0 and speakers[first - 1] == left:
            first -= 1
        while last + 1 < len(words) and speakers[last + 1] == right:
            last += 1
        at = _gap_middle(words, change)
        within = [
            boundary
            for boundary in range(first + 1, last + 1)
            if abs(_gap_middle(words, boundary) - at) <= REACH_SECONDS
            and not any(settled[min(boundary, change) : max(boundary, change)])
        ]
        best = max(
            within, key=lambda boundary: (*_support(words, boundary), -abs(_gap_middle(words, boundary) - at))
        )
        speakers[best:change] = [right] * (change - best)
        speakers[change:best] = [left] * (best - change)
        change = max(best, change) + 1


def _gap_middle(words: Sequence[Word], boundary: int) -> float:
    return (words[boundary - 1].end + words[boundary].start) / 2


def _support(words: Sequence[Word], boundary: int) -> tuple[int, float]:
    """How strongly the words say a speaker may stop at ``boundary``: the punctuation before it (2 a
    sentence end, 1 a clause end), then the pause."""
    before = words[boundary - 1].word
    mark = 2 if ends_sentence(before) else 1 if ends_clause(before) else 0
    pause = words[boundary].start - words[boundary - 1].end
    return mark, pause if pause >= _MIN_PAUSE else 0.0


def _fold_fragments(words: Sequence[Word], speakers: list[str | None], first: int, stop: int) -> None:
    """Give each piece of ``words[first:stop]`` (a sentence) shorter than :data:`MIN_SECONDS`, shortest
    first, to the piece beside it across the shorter pause (the longer piece on a tie)."""
    while True:
        runs = _runs(speakers, first, stop)
        lengths = [words[end - 1].end - words[start].start for start, end in runs]
        short = min(range(len(runs)), key=lambda index: lengths[index])
        if len(runs) < 2 or lengths[short] >= MIN_SECONDS - _EPSILON:
            return
        sides = []
        for side in (short - 1, short + 1):
            if 0 <= side < len(runs):
                boundary = runs[max(side, short)][0]
                sides.append((words[boundary].start - words[boundary - 1].end, -lengths[side], side))
        host = runs[min(sides)[2]]
        start, end = runs[short]
        speakers[start:end] = [speakers[host[0]]] * (end - start)


def _runs(speakers: Sequence[str | None], first: int, stop: int) -> list[tuple[int, int]]:
    """``speakers[first:stop]`` as runs of one speaker, (start, end) index pairs."""
    runs: list[tuple[int, int]] = []
    for index in range(first, stop):
        if runs and speakers[runs[-1][0]] == speakers[index]:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs


def _split(segment: Segment, words: list[Word]) -> list[Segment]:
    """``segment`` with its labelled ``words``: one segment per run of one speaker."""
    pieces = [words[start:end] for start, end in _runs([word.speaker for word in words], 0, len(words))]
    decoded = segment.decoded
    if len(pieces) > 1 and decoded is not None:
        decoded = replace(decoded, tokens=None)  # a piece is no longer the window the tokens decode
    return [
        replace(
            segment,
            start=segment.start if index == 0 else piece[0].start,
            end=segment.end if index == len(pieces) - 1 else piece[-1].end,
            text=segment.text if len(pieces) == 1 else _text(piece),
            words=tuple(piece),
            decoded=decoded,
            speaker=piece[0].speaker,
        )
        for index, piece in enumerate(pieces)
    ]


def _no_short_cues(segments: list[Segment]) -> list[Segment]:
    """``segments`` with each one of text shorter than :data:`MIN_SECONDS` widened into the silence
    around it or, where there is not room, joined to its nearer neighbour (the longer on a tie)."""
    result = list(segments)
    index = 0
    while index < len(result):
        segment = result[index]
        if not segment.text.strip() or segment.duration >= MIN_SECONDS - _EPSILON:
            index += 1
            continue
        before = _spoken(result, index, -1)
        after = _spoken(result, index, 1)
        widened = _widened(
            segment,
            None if before is None else result[before].end,
            None if after is None else result[after].start,
        )
        if widened is not None:
            result[index] = widened
            index += 1
            continue
        sides = [
            (
                max(result[near].start - segment.end, segment.start - result[near].end),
                -result[near].duration,
                near,
            )
            for near in (before, after)
            if near is not None
        ]
        if not sides:
            index += 1  # the whole transcript is this one short segment
            continue
        low, high = sorted((index, min(sides)[2]))
        result[low : high + 1] = [_joined(result[low : high + 1])]
        index = low  # joined, it may still be short
    return result


def _spoken(segments: Sequence[Segment], index: int, step: int) -> int | None:
    """The index of the nearest segment with text before (``step`` -1) or after (1) ``index``."""
    index += step
    while 0 <= index < len(segments):
        if segments[index].text.strip():
            return index
        index += step
    return None


def _widened(segment: Segment, previous_end: float | None, next_start: float | None) -> Segment | None:
    """``segment`` widened to :data:`MIN_SECONDS` into the gaps between it and its neighbours, evenly
    where both have room; None where they have too little. Never before the first segment or after the
    last: a transcript (or a part of a long file) does not know what lies beyond."""
    need = MIN_SECONDS - segment.duration
    room_before = 0.0 if previous_end is None else max(segment.start - previous_end, 0.0)
    room_after = 0.0 if next_start is None else max(next_start - segment.end, 0.0)
    if room_before + room_after < need - _EPSILON:
        return None
    earlier = round(min(room_before, max(need / 2, need - room_after)), 3)
    return replace(
        segment, start=round(segment.start - earlier, 3), end=round(segment.end + need - earlier, 3)
    )


def _joined(segments: Sequence[Segment]) -> Segment:
    """One segment of ``segments`` (neighbours), said by the speaker of the longest."""
    host = max(
        (segment for segment in segments if segment.text.strip()), key=lambda segment: segment.duration
    )
    words = [word for segment in segments for word in segment.words or ()]
    decoded = host.decoded
    if decoded is not None:
        decoded = replace(decoded, tokens=None)
    return replace(
        host,
        start=min(segment.start for segment in segments),
        end=max(segment.end for segment in segments),
        text=" ".join(segment.text.strip() for segment in segments if segment.text.strip()),
        words=tuple(replace(word, speaker=host.speaker) for word in words)
        if any(segment.words is not None for segment in segments)
        else None,
        decoded=decoded,
    )


def _text(words: list[Word]) -> str:
    # the transcript's words are stored without their leading spaces
    return " ".join(word.word for word in words)
