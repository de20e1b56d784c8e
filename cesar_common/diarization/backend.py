"""What a diarizer is: audio in, speaker turns out. A backend (the bundled :mod:`.local` one, or another
such as pyannote where a user has it) implements :class:`Diarizer`; the jobs only see this interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cesar_common.errors import CesarError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DiarizationStopped",
    "Diarizer",
    "ProgressCallback",
    "SpeakerCount",
    "StopCheck",
    "Turn",
    "named_by_appearance",
    "speaker_name",
]

#: asked now and then; True stops the work (raises the caller's own error from there)
StopCheck = Callable[[], bool]
#: (fraction done, 1.0)
ProgressCallback = Callable[[float, float], None]


class DiarizationStopped(CesarError):
    """``should_stop`` asked the diarization to stop."""


def speaker_name(index: int) -> str:
    """The label of the ``index``-th speaker to appear: ``SPEAKER_00``, ``SPEAKER_01``, ..."""
    return f"SPEAKER_{index:02d}"


@dataclass(frozen=True, slots=True)
class Turn:
    """One speaker talking, from ``start`` to ``end`` seconds."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True, slots=True)
class SpeakerCount:
    """What the caller knows of the number of speakers: exactly ``exact``, or between ``minimum`` and
    ``maximum`` (each optional); nothing means found automatically."""

    exact: int | None = None
    minimum: int | None = None
    maximum: int | None = None


class Diarizer(Protocol):
    def diarize(
        self,
        samples: np.ndarray,
        count: SpeakerCount = SpeakerCount(),
        *,
        should_stop: StopCheck | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[Turn]:
        """The speaker turns of 16 kHz mono float32 ``samples``, in time order, speakers named by first
        appearance (:func:`speaker_name`); no turn where nobody speaks. Raises :class:`DiarizationStopped`
        once ``should_stop()`` turns true."""
        ...


def named_by_appearance(turns: list[Turn]) -> list[Turn]:
    """``turns`` in time order, their speakers renamed ``SPEAKER_00``, ... in order of first appearance."""
    ordered = sorted(turns, key=lambda turn: (turn.start, turn.end))
    names: dict[str, str] = {}
    for turn in ordered:
        names.setdefault(turn.speaker, speaker_name(len(names)))
    return [Turn(turn.start, turn.end, names[turn.speaker]) for turn in ordered]
