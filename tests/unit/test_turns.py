"""Turns in a live stream (server VAD) and the worker's record of them, through fake speech probabilities
and a fake decoder."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cesar_api.compat.g711 import decode
from cesar_common.db.records import AudioFormat, LiveState
from cesar_common.transcription.streaming import Word
from cesar_common.transcription.turns import WINDOW, TurnDetector, TurnEvent, TurnOptions
from cesar_worker.live_turns import Turns

SR = 16000
WINDOW_SECONDS = WINDOW / SR  # 32 ms


def scripted(speech: list[tuple[float, float]]) -> Any:
    """Probabilities from a script: 0.9 inside the ``speech`` spans (seconds), 0.05 outside. The samples'
    values are their indices in the session, so the script knows where each window lies."""

    def probabilities(samples: np.ndarray) -> np.ndarray:
        starts = samples.reshape(-1, WINDOW)[:, 0] / SR
        return np.array(
            [0.9 if any(a <= t < b for a, b in speech) else 0.05 for t in starts], dtype=np.float32
        )

    return probabilities


def feed(detector: TurnDetector, seconds: float, *, chunk: float = 0.1) -> list[TurnEvent]:
    events, at = [], 0
    total = round(seconds * SR)
    while at < total:
        size = min(round(chunk * SR), total - at)
        events += detector.feed(np.arange(at, at + size, dtype=np.float32))
        at += size
    return events


def test_speech_starts_with_its_padding_and_stops_after_the_silence() -> None:
    detector = TurnDetector(scripted([(1.0, 2.0), (2.2, 3.0), (5.0, 6.0)]), TurnOptions())
    events = feed(detector, 8.0)
    kinds = [event.kind for event in events]
    assert kinds == ["start", "stop", "start", "stop"], "a 0.2 s pause is no turn end at 500 ms"
    assert events[0].time == pytest.approx(1.0 - 0.3, abs=WINDOW_SECONDS)
    assert events[1].time == pytest.approx(3.0 + 0.5, abs=2 * WINDOW_SECONDS)
    assert events[2].time == pytest.approx(4.7, abs=WINDOW_SECONDS)


def test_a_short_silence_duration_cuts_at_short_pauses_and_padding_never_reaches_back_past_a_turn() -> None:
    options = TurnOptions(threshold=0.5, prefix_padding_ms=1000, silence_duration_ms=100)
    events = feed(TurnDetector(scripted([(1.0, 2.0), (2.3, 3.0)]), options), 4.0)
    assert [event.kind for event in events] == ["start", "stop", "start", "stop"]
    assert events[2].time >= events[1].time


def test_a_threshold_above_the_speech_probability_hears_nothing() -> None:
    assert feed(TurnDetector(scripted([(1.0, 2.0)]), TurnOptions(threshold=0.95)), 3.0) == []


def test_chunks_of_any_size_find_the_same_turns() -> None:
    speech = [(0.5, 1.5), (2.5, 3.0)]
    one = feed(TurnDetector(scripted(speech), TurnOptions()), 4.0, chunk=0.1)
    other = feed(TurnDetector(scripted(speech), TurnOptions()), 4.0, chunk=0.037)
    assert one == other


def test_options_from_a_stored_config_fill_in_defaults() -> None:
    assert TurnOptions.from_config({"type": "server_vad", "threshold": 0.7}) == TurnOptions(0.7, 300, 500)


def live(**fields: Any) -> LiveState:
    return LiveState("job", AudioFormat.PCM_S16LE, 24000, 0, 0, 0.0, None, "", None, **fields)


def decoder(text: str) -> Any:
    def decode(samples: np.ndarray, prompt: str | None) -> list[Word]:
        decode.prompts.append(prompt)  # type: ignore[attr-defined]
        return [Word(0.0, 0.5, f" {word}", 0.9) for word in text.split()]

    decode.prompts = []  # type: ignore[attr-defined]
    return decode


def test_a_turn_is_its_audio_decoded_whole_prompted_with_the_turns_before() -> None:
    turns = Turns(live(turn_detection={"type": "none"}), resumed=False)
    turns.add_audio(np.zeros(SR, dtype=np.float32), 0.0)
    segments = [{"text": "hello word"}]
    turns.tag(segments)
    assert segments[0]["turn"] == 0
    first = decoder("Hello world.")
    turns.complete(1.0, 3, first)
    assert turns.recent[-1] == {
        "index": 0,
        "start": 0.0,
        "end": 1.0,
        "complete": True,
        "chunks": 3,
        "transcript": "Hello world.",
    }
    turns.add_audio(np.zeros(SR, dtype=np.float32), 1.0)
    second = decoder("Again.")
    turns.complete(2.0, 5, second)
    assert turns.index == 2 and turns.recent[-1]["start"] == 1.0
    assert second.prompts == ["Hello world."]


def test_a_decoding_that_lost_the_turn_leaves_the_confirmed_segments_as_its_transcript() -> None:
    turns = Turns(live(turn_detection={"type": "none"}), resumed=False)
    turns.add_audio(np.zeros(SR, dtype=np.float32), 0.0)
    turns.tag([{"text": "one two three four five six"}])
    turns.complete(1.0, 1, decoder("Six."))
    assert "transcript" not in turns.recent[-1]


def test_a_worker_taking_over_goes_on_from_the_stored_turns_and_marks() -> None:
    stored = (
        {"index": 0, "start": 0.0, "end": 1.0, "complete": True, "chunks": 4, "transcript": "One."},
        {"index": 1, "start": 1.5, "end": None, "complete": False},
    )
    marks = ({"chunks": 4, "action": "commit"}, {"chunks": 9, "action": "commit"})
    turns = Turns(live(turn_detection={"type": "none"}, turns=stored, marks=marks), resumed=True)
    assert (turns.index, turns.marks_done) == (1, 1)
    assert turns.pending_marks(live(marks=marks), chunks_read=8) == []
    assert turns.pending_marks(live(marks=marks), chunks_read=9) == ["commit"]
    turns.complete(3.0, 9, decoder("Two."))
    assert "transcript" not in turns.recent[-1], "its first audio went with the worker before"
    assert turns.recent[-1]["start"] == 1.5


def test_g711_decodes_as_the_standard_tables_say() -> None:
    # μ-law 0xFF and A-law 0xD5 are zero; the extremes are ±32124 and ±32256
    pcm = np.frombuffer(decode(bytes([0xFF, 0x00, 0x80]), alaw=False), dtype="<i2")
    assert pcm.tolist() == [0, -32124, 32124]
    pcm = np.frombuffer(decode(bytes([0xD5, 0x2A, 0xAA]), alaw=True), dtype="<i2")
    assert pcm.tolist() == [8, -32256, 32256]


def test_audio_past_the_turn_end_that_came_with_it_starts_the_next_turn() -> None:
    heard: list[float] = []

    def decode(samples: np.ndarray, prompt: str | None) -> list[Word]:
        heard.append(samples.size / SR)
        return [Word(0.0, 0.5, " Yes.", 0.9)]

    turns = Turns(live(turn_detection={"type": "none"}), resumed=False)
    turns.add_audio(np.zeros(3 * SR, dtype=np.float32), 10.0)  # 10 to 13 s, the turn ended at 12 s
    turns.complete(12.0, 1, decode)
    turns.add_audio(np.zeros(SR, dtype=np.float32), 13.0)
    turns.complete(14.0, 2, decode)
    assert heard == [2.0, 2.0]


def test_a_clear_drops_the_open_turns_audio() -> None:
    heard: list[float] = []

    def decode(samples: np.ndarray, prompt: str | None) -> list[Word]:
        heard.append(samples.size / SR)
        return []

    turns = Turns(live(turn_detection={"type": "none"}), resumed=False)
    turns.add_audio(np.zeros(2 * SR, dtype=np.float32), 0.0)
    turns.clear(2.0)
    turns.add_audio(np.zeros(SR, dtype=np.float32), 2.0)
    turns.complete(3.0, 1, decode)
    assert heard == [1.0]
