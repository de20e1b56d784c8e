"""Where to cut a long file into parts (``CESAR_SPLIT_SECONDS``).

Cuts fall in the middle of pauses that voice activity detection finds, so no word is cut in two and none is
heard twice. What a part is asked and how the parts' transcripts merge is the worker's business
(``cesar_worker.part_results``). NumPy and faster-whisper (:mod:`faster_whisper_adapter`) are imported inside
the functions that need them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cesar_common.transcription.audio import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

#: pauses at least this long are places to cut (voice activity detection's min_silence_duration_ms)
PAUSE_MS = 300
#: speech padding of the detected regions, so a cut never clips a word's soft start or end
PAD_MS = 100
#: no part shorter than this share of the planned length, whatever the pauses
MIN_SHARE = 0.5
#: how far from its planned place a cut may move to fall in a pause (seconds; at most half a part)
SEARCH_SECONDS = 30.0
#: the middles (seconds into the file) of the pauses between two times
PauseFinder = Callable[[float, float], list[float]]

__all__ = ["PauseFinder", "Span", "SplitPlan", "pause_middles", "pauses_in", "plan_cuts", "speech_regions"]


@dataclass(frozen=True, slots=True)
class Span:
    """One part of a long file: seconds into the file."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """A long file's parts and its samples (16 kHz mono float32), and the one language for every part."""

    parts: list[Span]
    samples: np.ndarray
    language: str | None
    language_probability: float | None

    def pcm(self, index: int) -> bytes:
        """Part ``index``'s audio as 16-bit little-endian PCM (what ``job_part_audio`` stores)."""
        import numpy as np

        part = self.parts[index]
        first, last = round(part.start * SAMPLE_RATE), round(part.end * SAMPLE_RATE)
        clipped = np.clip(self.samples[first:last], -1.0, 32767 / 32768)
        return bytes((clipped * 32768.0).astype("<i2").tobytes())


def speech_regions(samples: np.ndarray) -> list[tuple[int, int]]:
    """Where someone speaks, as (start, end) sample indices, pauses of ``PAUSE_MS`` kept apart."""
    from cesar_common.transcription.faster_whisper_adapter import speech_timestamps

    return speech_timestamps(samples, min_silence_ms=PAUSE_MS, pad_ms=PAD_MS)


def pauses_in(samples: np.ndarray) -> PauseFinder:
    """Where ``samples`` pause between two times, found by voice activity detection of that stretch only:
    the cost grows with the number of cuts, not with the length of the file."""

    def between(start: float, end: float) -> list[float]:
        first, last = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
        return [start + middle for middle in pause_middles(last - first, speech_regions(samples[first:last]))]

    return between


def plan_cuts(total_seconds: float, split_seconds: float, pauses_between: PauseFinder) -> list[Span]:
    """Parts of about ``split_seconds`` covering the whole file, each cut in the middle of the pause nearest
    its planned place (within ``SEARCH_SECONDS``); where speech never pauses, at the planned place itself.
    ``pauses_between(start, end)`` gives the middles of the pauses in that stretch (:func:`pauses_in`)."""
    total = round(total_seconds, 3)
    if split_seconds <= 0 or total <= split_seconds:
        return [Span(0.0, total)]
    count = math.ceil(total / split_seconds)
    length = total / count
    reach = min(SEARCH_SECONDS, length / 2)
    cuts: list[float] = []
    for index in range(1, count):
        planned = index * length
        earliest = max(planned - reach, (cuts[-1] if cuts else 0.0) + MIN_SHARE * length)
        latest = min(planned + reach, total - MIN_SHARE * length)
        if latest <= earliest:
            break  # what is left is too short to be a part of its own
        candidates = [middle for middle in pauses_between(earliest, latest) if earliest <= middle <= latest]
        cut = min(candidates, key=lambda middle: abs(middle - planned)) if candidates else planned
        cuts.append(round(cut, 3))
    bounds = [0.0, *cuts, total]
    return [Span(start, end) for start, end in itertools.pairwise(bounds)]


def pause_middles(total_samples: int, regions: Sequence[tuple[int, int]]) -> list[float]:
    """The middles (seconds) of the silences of at least ``PAUSE_MS`` around and between speech regions."""
    shortest = PAUSE_MS * SAMPLE_RATE // 1000
    middles = []
    previous_end = 0
    for start, end in [*regions, (total_samples, total_samples)]:
        if start - previous_end >= shortest:
            middles.append((previous_end + start) / 2 / SAMPLE_RATE)
        previous_end = max(previous_end, end)
    return middles
