"""Sentences of no duration that repeat the one before are the decoder looping: they are dropped."""

from __future__ import annotations

from cesar_common.transcription import whisper
from cesar_common.transcription.faster_whisper_adapter import WhisperSegment
from cesar_common.transcription.result import Segment


def raw(start: float, end: float, text: str) -> WhisperSegment:
    return WhisperSegment(
        start=start, end=end, text=text, words=None, seek=0, temperature=0.0, avg_logprob=-0.2,
        compression_ratio=1.5, no_speech_prob=0.1, tokens=(1, 2),
    )  # fmt: skip


def collect(*segments: WhisperSegment) -> list[Segment]:
    got: list[Segment] = []
    result = whisper._collect(
        segments, 0.0, 60.0, whisper.DecodeOptions(), None, got.append, None, split=False
    )
    assert [segment.id for segment in got] == [segment.id for segment in result]
    return result


def test_zero_length_repeats_go_and_the_ids_stay_in_order() -> None:
    result = collect(raw(6.4, 7.2, " Hello."), raw(8.2, 8.3, " Hello."), raw(8.8, 8.8, " Hello."),
                     raw(8.9, 8.9, "hello"), raw(9.0, 9.9, " I didn't know you were there."))  # fmt: skip
    assert [(segment.id, segment.text) for segment in result] == [
        (0, "Hello."), (1, "Hello."), (2, "I didn't know you were there."),
    ]  # fmt: skip


def test_a_real_repeat_or_a_short_new_sentence_stays() -> None:
    kept = collect(raw(1.0, 1.5, " Yes."), raw(2.0, 2.4, " Yes."), raw(3.0, 3.0, " No."))
    assert [segment.text for segment in kept] == ["Yes.", "Yes.", "No."]
