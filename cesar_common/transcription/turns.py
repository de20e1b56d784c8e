"""Turns in a live stream: where someone starts and stops speaking, as OpenAI's Realtime API's server VAD
decides it (``turn_detection: {"type": "server_vad", "threshold", "prefix_padding_ms",
"silence_duration_ms"}``).

Silero VAD (the one Whisper's decoding uses) gives each 32 ms window a probability of speech. A turn starts
at the first window at or above ``threshold``, ``prefix_padding_ms`` earlier (never before the last turn's
end); it stops once the probability has stayed below ``threshold - 0.15`` (Silero's own hysteresis) for
``silence_duration_ms``. OpenAI's threshold is the same kind of number (0 to 1, 0.5 by default).

Silero is a recurrent model: each call starts it afresh, so every call is given the last
:data:`CONTEXT_WINDOWS` windows again before the new ones, and their probabilities are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cesar_common.transcription.audio import SAMPLE_RATE

__all__ = ["SpeechProbabilities", "TurnDetector", "TurnEvent", "TurnOptions"]

#: 512 samples of 16 kHz mono audio -> the probability that each 512-sample window holds speech
SpeechProbabilities = Callable[[np.ndarray], np.ndarray]

WINDOW = 512
#: windows heard again at each call, so that the model starts each call in context (0.5 s)
CONTEXT_WINDOWS = 16
#: how far below the threshold the probability must fall to count as silence (Silero's default)
HYSTERESIS = 0.15


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """OpenAI's ``server_vad`` options, with its defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TurnOptions:
        """The options a session's stored ``turn_detection`` names (missing ones: the defaults)."""
        default = cls()
        return cls(
            threshold=float(config.get("threshold", default.threshold)),
            prefix_padding_ms=int(config.get("prefix_padding_ms", default.prefix_padding_ms)),
            silence_duration_ms=int(config.get("silence_duration_ms", default.silence_duration_ms)),
        )


@dataclass(frozen=True, slots=True)
class TurnEvent:
    kind: Literal["start", "stop"]
    time: float  # session seconds: where the turn starts (padding included), or where it stopped


class TurnDetector:
    """Speech starts and stops in audio fed in order. Not thread-safe (one session's loop feeds it)."""

    def __init__(
        self, probabilities: SpeechProbabilities, options: TurnOptions, *, start: float = 0.0
    ) -> None:
        """``start``: the session time of the first sample fed."""
        self._probabilities = probabilities
        self.options = options
        self._pending = np.zeros(0, dtype=np.float32)  # fed samples short of a whole window
        self._context = np.zeros(0, dtype=np.float32)  # the last windows already judged
        self._time = float(start)  # the session time of the first pending sample
        self.speaking = False
        self._silent_since: float | None = None
        self._last_end = float(start)

    def feed(self, samples: np.ndarray) -> list[TurnEvent]:
        """The turns' starts and stops in ``samples`` (16 kHz mono float32), in order."""
        audio = np.concatenate((self._pending, np.asarray(samples, dtype=np.float32).reshape(-1)))
        whole = audio.size - audio.size % WINDOW
        self._pending = audio[whole:]
        if whole == 0:
            return []
        fresh = audio[:whole]
        judged = np.concatenate((self._context, fresh))
        probabilities = self._probabilities(judged)[-(whole // WINDOW) :]
        self._context = judged[-CONTEXT_WINDOWS * WINDOW :]
        events = []
        for probability in probabilities:
            event = self._judge(float(probability))
            if event is not None:
                events.append(event)
            self._time += WINDOW / SAMPLE_RATE
        return events

    def ended(self, time: float) -> None:
        """The turn was closed at ``time`` another way (the client committed it): a new one starts at the
        next speech."""
        self.speaking = False
        self._silent_since = None
        self._last_end = max(self._last_end, time)

    def _judge(self, probability: float) -> TurnEvent | None:
        options = self.options
        if not self.speaking:
            if probability >= options.threshold:
                self.speaking = True
                self._silent_since = None
                start = max(self._time - options.prefix_padding_ms / 1000, self._last_end)
                return TurnEvent("start", round(start, 3))
            return None
        if probability >= max(options.threshold - HYSTERESIS, 0.01):
            self._silent_since = None
            return None
        if self._silent_since is None:
            self._silent_since = self._time
        end = self._time + WINDOW / SAMPLE_RATE
        if end - self._silent_since >= options.silence_duration_ms / 1000:
            self.speaking = False
            self._silent_since = None
            self._last_end = end
            return TurnEvent("stop", round(end, 3))
        return None
