"""A live session's turns, for OpenAI's Realtime API (``/v1/realtime``): the worker decides them.

A session opened with ``turn_detection`` is cut into turns, each an item of the client's conversation: with
``server_vad``, where speech starts and stops (:class:`~cesar_common.transcription.turns.TurnDetector`); with
``none``, where the client commits. Either way the client may commit (close the turn now) or clear (drop
what is not confirmed yet) at any time: its marks apply after the audio chunk it had sent when it did.
Closing a turn flushes the stream (:meth:`LocalAgreement.flush`): every word of the turn is confirmed, in
segments that carry the turn's index, and the turn is written complete in the same report, so the API,
which reads the turns before the segments, has every segment of a complete turn when it sees it complete.
The turn's transcript is its whole audio decoded once more, prompted with the turns before, as OpenAI
transcribes a committed turn: a pass that hears the whole turn makes fewer errors than the confirmed
segments, each decided with a second or two of audio after it (the figures: BENCHMARKS.md).
The last turns are kept in the session's row (``live_sessions.turns``); a worker taking the session over
goes on from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cesar_common.db.records import LiveState
from cesar_common.transcription.audio import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

    from cesar_common.transcription.streaming import DecodeWords
    from cesar_common.transcription.turns import TurnDetector, TurnEvent

__all__ = ["Turns"]

#: the turns kept in the session's row (the API relays each as it changes, so a few are plenty)
KEPT = 16
#: a turn longer than this is not decoded again: its transcript is its confirmed segments
TURN_AUDIO_SECONDS = 120.0
#: the last characters of the turns before that prompt a turn's decoding
PROMPT_CHARS = 200


class Turns:
    """The turns of one session, as its loop finds them."""

    def __init__(self, live: LiveState, *, resumed: bool) -> None:
        """``resumed``: another worker ran the session before (the open turn's first audio is gone)."""
        recent = [dict(turn) for turn in live.turns]
        self.recent: list[dict[str, Any]] = recent[-KEPT:]
        last = recent[-1] if recent else None
        # the turn the next segments belong to
        self.index = 0 if last is None else int(last["index"]) + (1 if last["complete"] else 0)
        done = [turn for turn in recent if turn["complete"]]
        applied_to = int(done[-1].get("chunks", 0)) if done else 0
        self.marks_done = sum(1 for mark in live.marks if int(mark["chunks"]) <= applied_to and done)
        self._config: dict[str, Any] | None = None
        self.detector: TurnDetector | None = None
        self.has_content = bool(last is not None and not last["complete"])
        self._audio: list[np.ndarray] = []  # the open turn's samples since the last turn ended
        self._audio_samples = 0
        self._audio_start = 0.0  # the session time of its first sample
        self._whole = not resumed  # whether the open turn's audio is all here
        self._confirmed_words = 0  # in the open turn's segments
        self._context = " ".join(str(turn.get("transcript", "")) for turn in recent if turn["complete"])

    def configure(self, config: dict[str, Any] | None, start: float) -> None:
        """Follow the session's ``turn_detection`` (changed by the client's ``session.update``)."""
        if config == self._config:
            return
        self._config = config
        if config is None or config.get("type") != "server_vad":
            self.detector = None
            return
        from cesar_common.transcription import faster_whisper_adapter
        from cesar_common.transcription.turns import TurnDetector, TurnOptions

        self.detector = TurnDetector(
            faster_whisper_adapter.speech_probabilities, TurnOptions.from_config(config), start=start
        )

    def add_audio(self, samples: np.ndarray, start: float) -> None:
        """The session's samples from session time ``start`` on."""
        if not self._audio:
            self._audio_start = start
        if self._audio_samples <= TURN_AUDIO_SECONDS * SAMPLE_RATE:
            self._audio.append(samples)
            self._audio_samples += samples.size

    def hear(self, samples: np.ndarray) -> list[TurnEvent]:
        return [] if self.detector is None else self.detector.feed(samples)

    def next_mark(self, live: LiveState) -> int | None:
        """After how many chunks the next mark not applied yet applies (reading stops there until it is)."""
        marks = live.marks[self.marks_done :]
        return int(marks[0]["chunks"]) if marks else None

    def pending_marks(self, live: LiveState, chunks_read: int) -> list[str]:
        """The actions of the client's marks whose audio has all been read, not applied yet (now they are)."""
        actions = []
        for mark in live.marks[self.marks_done :]:
            if int(mark["chunks"]) > chunks_read:
                break
            actions.append(str(mark["action"]))
            self.marks_done += 1
        return actions

    def started(self, time: float) -> None:
        """Speech started: the open turn begins at ``time``."""
        if self.recent and self.recent[-1]["index"] == self.index:
            return
        self._keep({"index": self.index, "start": time, "end": None, "complete": False})
        self.has_content = True

    def tag(self, segments: list[dict[str, Any]]) -> None:
        for segment in segments:
            segment["turn"] = self.index
            self._confirmed_words += len(str(segment["text"]).split())
        if segments:
            self.has_content = True

    def complete(self, time: float, chunks: int, decode: DecodeWords) -> None:
        """Close the open turn at session time ``time``, after the session's first ``chunks`` chunks, with
        its audio decoded by ``decode`` as its transcript."""
        if self.recent and self.recent[-1]["index"] == self.index:
            turn = self.recent[-1]
        else:  # no speech start was seen (the client commits): the turn began where the last one ended
            previous = self.recent[-1]["end"] if self.recent else 0.0
            turn = {"index": self.index, "start": previous, "end": None, "complete": False}
            self._keep(turn)
        turn.update(end=round(max(time, float(turn["start"] or 0.0)), 3), complete=True, chunks=chunks)
        # The samples past ``time`` arrived with those before it (a worker behind reads seconds at once):
        # they are the next turn's start
        audio = self._take_audio(time)
        transcript = self._transcript(audio, decode)
        if transcript is not None:
            turn["transcript"] = transcript
            self._context = f"{self._context} {transcript}".strip()[-PROMPT_CHARS:]
        self.index += 1
        self.has_content = False
        if self.detector is not None:
            self.detector.ended(time)

    def clear(self, time: float) -> None:
        """The client dropped what it sent before session time ``time``: the open turn starts there."""
        self._take_audio(time)
        self._confirmed_words = 0

    def _take_audio(self, time: float) -> np.ndarray | None:
        """The open turn's samples before session time ``time`` (None: too long to keep); those after it
        stay, for the next turn."""
        import numpy as np

        if not self._audio:
            return None
        audio = np.concatenate(self._audio)
        too_long = self._audio_samples > TURN_AUDIO_SECONDS * SAMPLE_RATE
        cut = min(max(round((time - self._audio_start) * SAMPLE_RATE), 0), audio.size)
        rest = audio[cut:]
        self._audio, self._audio_samples, self._audio_start = ([rest] if rest.size else []), rest.size, time
        return None if too_long else audio[:cut]

    def _transcript(self, audio: np.ndarray | None, decode: DecodeWords) -> str | None:
        """The turn's audio decoded whole; None when it was too long (or a takeover left it partial)."""
        whole, self._whole = self._whole, True
        confirmed, self._confirmed_words = self._confirmed_words, 0
        if not whole or audio is None or not audio.size:
            return None
        words = decode(audio, self._context or None)
        if len(words) < confirmed / 2:
            # Whisper now and then stops early in a window (a hallucinated end); the segments heard the
            # whole turn
            return None
        return "".join(word.word for word in words).strip()

    def _keep(self, turn: dict[str, Any]) -> None:
        self.recent.append(turn)
        del self.recent[:-KEPT]
