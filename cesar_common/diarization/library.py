"""The voice library's arithmetic: a voice print of one person's sample, and which found speakers are
people the library knows. NumPy only (the API may import it; reading a sample needs faster-whisper's VAD
and the encoder, which only :func:`sample_print` loads).

A voice print is the mean of a voice's 1.6 s prints (:mod:`.encoder`) scaled to unit length, as the
diarizer gives each speaker it finds (:meth:`.local.LocalDiarizer.diarize_with_voices`). A found speaker is a
person of the library when the cosine distance between its print and the nearest of the person's prints is
at most :data:`MATCH_DISTANCE`; each person names at most one speaker of a job and each speaker at most one
person, closest pairs first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MATCH_DISTANCE",
    "MIN_SAMPLE_SECONDS",
    "PRINT_SIZE",
    "Library",
    "Match",
    "SamplePrint",
    "from_bytes",
    "match_voices",
    "sample_print",
    "to_bytes",
]

#: numbers in a voice print
PRINT_SIZE = 256
#: the largest cosine distance at which a found speaker is named after a person of the library: midway
#: between the farthest own print and the nearest other person's measured on the fixtures and slightly
#: changed copies (bench/speaker_naming.py): at most 0.090 (a woman of the telephone call enrolled from
#: 5 s of its first half, found in its second), at least 0.149 (the other woman); BENCHMARKS.md
#: ("Named speakers")
MATCH_DISTANCE = 0.12
#: the least speech a sample must hold to make a voice print
MIN_SAMPLE_SECONDS = 3.0
_DTYPE = np.dtype("<f4")


def to_bytes(vector: Sequence[float] | np.ndarray) -> bytes:
    """A voice print as stored: 256 little-endian float32 numbers."""
    array = np.asarray(vector, dtype=_DTYPE)
    if array.shape != (PRINT_SIZE,):
        raise ValueError(f"a voice print has {PRINT_SIZE} numbers, not {array.size}")
    return array.tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=_DTYPE)


@dataclass(frozen=True, slots=True)
class Library:
    """The voice prints a job may be matched against, one row each, with whose they are (``owners``:
    the index of the person in ``ids``/``names`` for each row); a person's rows are together, in the order
    of ``ids``."""

    ids: tuple[str, ...]
    names: tuple[str, ...]
    prints: np.ndarray  # (rows, 256) float32, unit rows
    owners: np.ndarray  # (rows,) int

    @classmethod
    def build(cls, rows: Sequence[tuple[str, str, bytes]]) -> Library:
        """From ``(person id, name, stored print)`` rows, in any order."""
        index: dict[str, int] = {}
        names: list[str] = []
        owners = np.empty(len(rows), dtype=np.intp)
        prints = np.empty((len(rows), PRINT_SIZE), dtype=np.float32)
        for row, (person, name, data) in enumerate(rows):
            if person not in index:
                index[person] = len(names)
                names.append(name)
            owners[row] = index[person]
            prints[row] = from_bytes(data)
        # each person's rows together: their nearest print is then one reduction (see match_voices)
        order = np.argsort(owners, kind="stable")
        return cls(tuple(index), tuple(names), prints[order], owners[order])

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class Match:
    """A found speaker (``label``) named after a person of the library."""

    label: str
    speaker_id: str
    name: str
    distance: float


def match_voices(
    voices: Mapping[str, Sequence[float] | np.ndarray],
    library: Library,
    *,
    threshold: float = MATCH_DISTANCE,
) -> dict[str, Match]:
    """The found speakers (label -> voice print) the library knows, by label. A person's distance to a
    speaker is that of their nearest print; pairs within ``threshold`` are taken closest first, each
    person and each speaker once (two speakers of one job are never one person)."""
    if not voices or not len(library):
        return {}
    labels = list(voices)
    found = np.asarray([np.asarray(voices[label], dtype=np.float32) for label in labels])
    found /= np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
    # (prints, speakers): with both cores of a 2-core machine busy, this way round took 0.2 ms (median)
    # for 3,000 prints, the other way 14 ms (OpenBLAS's threads waiting for each other)
    distances = 1.0 - library.prints @ found.T
    # each person's nearest print: the minimum over their rows, which lie together
    firsts = np.flatnonzero(np.diff(library.owners, prepend=-1))
    nearest = np.minimum.reduceat(distances, firsts, axis=0)  # (people, speakers)
    people, speakers = np.nonzero(nearest <= threshold)
    matches: dict[str, Match] = {}
    taken: set[int] = set()
    for at in np.argsort(nearest[people, speakers], kind="stable"):
        person, speaker = int(people[at]), int(speakers[at])
        distance = float(nearest[person, speaker])
        if labels[speaker] in matches or person in taken:
            continue
        taken.add(person)
        matches[labels[speaker]] = Match(
            labels[speaker], library.ids[person], library.names[person], round(max(distance, 0.0), 4)
        )
    return matches


@dataclass(frozen=True, slots=True)
class SamplePrint:
    """The voice print of a sample, and the seconds of speech it was taken from."""

    vector: list[float]
    seconds: float


def sample_print(samples: np.ndarray, *, should_stop: Callable[[], bool] | None = None) -> SamplePrint:
    """The voice print of a sample of one voice (16 kHz mono float32). An InvalidInputError when it holds
    less than :data:`MIN_SAMPLE_SECONDS` of speech or more than one voice."""
    from cesar_common.diarization.local import default_diarizer
    from cesar_common.errors import InvalidInputError

    turns, voices = default_diarizer().diarize_with_voices(samples, should_stop=should_stop)
    spoken: dict[str, float] = {}
    for turn in turns:
        spoken[turn.speaker] = spoken.get(turn.speaker, 0.0) + turn.end - turn.start
    total = sum(spoken.values())
    if total < MIN_SAMPLE_SECONDS:
        raise InvalidInputError(
            f"the sample holds {total:.1f} s of speech: a voice print needs at least "
            f"{MIN_SAMPLE_SECONDS:g} s of one person speaking"
        )
    if len(voices) > 1:
        raise InvalidInputError(
            f"the sample holds {len(voices)} voices ({', '.join(f'{s:.1f} s' for s in spoken.values())} of "
            "speech): give a sample of one person speaking"
        )
    (vector,) = voices.values()
    return SamplePrint(list(vector), round(total, 3))
