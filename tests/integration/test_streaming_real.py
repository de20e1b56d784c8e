"""Live decoding for real: the bundled tiny.en fed speech half a second at a time, as a live session's worker
feeds it, decoding whenever a step's worth of audio arrived.

The short sentence keeps this quick; the 70 s story is streamed the same way, through `cesar serve`, by
``tests/e2e/test_live.py`` (its word error rate is asserted there, against the file's transcription), and
measured by ``bench/live.py``. Streamed alone here, the story came to a word error rate of 0.18 (tiny.en,
int8, 2-core CPU) in about 70 passes, its first telling alone (35 s) to 0.205, where decoding the same 35 s
at once gives 0.14-0.15: a streaming pass confirms words with a second or two of audio after them, where a
file's decoding sees the whole sentence.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cesar_common.transcription.loading import LoadedModel, load_model
from cesar_common.transcription.result import Word
from cesar_common.transcription.streaming import (
    LocalAgreement,
    StreamingOptions,
    sentence_segments,
    whisper_decoder,
)
from cesar_common.transcription.whisper import decode

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
CHUNK_SECONDS = 0.5
SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def streaming_model() -> LoadedModel:
    return load_model("tiny.en", device="cpu", compute_type="int8")


@dataclass
class Streamed:
    words: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    audio_end_at_confirmation: list[float]  # one per word
    passes: int
    seconds: float
    audio_seconds: float


def stream(model: LoadedModel, samples: np.ndarray) -> Streamed:
    decoder = whisper_decoder(model, language="en")
    passes = 0

    def counting(audio: np.ndarray, prompt: str | None) -> list[Word]:
        nonlocal passes
        passes += 1
        return decoder(audio, prompt)

    live = LocalAgreement(counting, StreamingOptions())
    chunk = int(CHUNK_SECONDS * SAMPLE_RATE)
    segments: list[dict[str, Any]] = []
    ends: list[float] = []
    began = time.perf_counter()
    for at in range(0, len(samples), chunk):
        live.add_audio(samples[at : at + chunk])
        updates = [live.step()] if live.ready() else []
        if at + chunk >= len(samples):
            updates.append(live.finish())
        for update in updates:
            for segment in update.segments:
                segments.append(segment)
                ends += [live.audio_end] * len(segment["words"])
    words = [word for segment in segments for word in segment["words"]]
    return Streamed(words, segments, ends, passes, time.perf_counter() - began, live.audio_end)


@pytest.fixture(scope="module")
def speech(streaming_model: LoadedModel) -> Streamed:
    return stream(streaming_model, decode(AUDIO / "speech_en.wav"))


def test_speech_streams_into_confirmed_words(speech: Streamed) -> None:
    text = " ".join(str(segment["text"]) for segment in speech.segments).lower()
    for word in ("lazy", "transcription", "reliable"):
        assert word in text, text
    assert speech.audio_seconds == pytest.approx(7.15, abs=0.1)
    # about a pass a second, the last one by finish()
    assert speech.audio_seconds - 2 <= speech.passes <= speech.audio_seconds + 2
    delays = [
        end - float(word["end"])
        for word, end in zip(speech.words, speech.audio_end_at_confirmation, strict=True)
    ]
    # confirmed about two steps after it was said, as LocalAgreement-2 promises
    assert float(np.median(delays)) <= 2.0


def test_confirmed_words_are_in_order_and_never_ahead_of_the_audio(speech: Streamed) -> None:
    assert len(speech.words) >= 12
    starts = [float(word["start"]) for word in speech.words]
    assert all(later >= earlier for earlier, later in itertools.pairwise(starts))
    for word, audio_end in zip(speech.words, speech.audio_end_at_confirmation, strict=True):
        assert float(word["start"]) <= float(word["end"]) <= audio_end
        assert all(type(word[key]) is float for key in ("start", "end", "probability"))


def test_the_pieces_join_into_sentences(speech: Streamed) -> None:
    sentences = sentence_segments(speech.segments)
    assert 1 <= len(sentences) <= len(speech.segments)
    joined = [word for segment in sentences for word in segment["words"]]
    assert joined == speech.words


def test_silence_confirms_nothing(streaming_model: LoadedModel) -> None:
    streamed = stream(streaming_model, decode(AUDIO / "silence.wav"))
    assert streamed.segments == [] and streamed.passes == 5
