"""The engine's diarization step with the real tiny.en and a stand-in diarizer: where its turns land (the
clip's offset), what the segments keep, progress over both steps, and a stop during it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from cesar_common.diarization.backend import (
    DiarizationStopped,
    ProgressCallback,
    SpeakerCount,
    StopCheck,
    Turn,
)
from cesar_common.transcription.loading import LoadedModel, load_model
from cesar_common.transcription.whisper import DecodeOptions, TranscriptionCancelled, transcribe

CALL = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "two_speakers.wav"


class HalfAndHalf:
    """Speaker A for the clip's first 12 s, B after; reports its progress in three steps."""

    def __init__(self, *, stop: bool = False) -> None:
        self.stop = stop
        self.seen: list[tuple[float, SpeakerCount]] = []

    def diarize(
        self,
        samples: np.ndarray,
        count: SpeakerCount = SpeakerCount(),
        *,
        should_stop: StopCheck | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[Turn]:
        self.seen.append((len(samples) / 16000, count))
        if self.stop:
            raise DiarizationStopped("stop")
        for done in (0.25, 0.5, 0.75):
            if on_progress is not None:
                on_progress(done, 1.0)
        end = len(samples) / 16000
        return [Turn(0.0, 12.0, "SPEAKER_00"), Turn(12.0, end, "SPEAKER_01")]


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("tiny.en", device="cpu", compute_type="int8")


def test_turns_land_in_file_time_and_progress_covers_both_steps(model: LoadedModel) -> None:
    diarizer = HalfAndHalf()
    reports: list[tuple[float, float]] = []
    options = DecodeOptions(diarize=True, num_speakers=2, start_time=5.0, batch_size=1)
    result = transcribe(
        model, CALL, options, diarizer=diarizer, on_progress=lambda d, t: reports.append((d, t))
    )
    assert diarizer.seen == [(25.0, SpeakerCount(exact=2))]  # the clip, not the file
    # the clip's 12 s is the file's 17 s
    for segment in result.segments:
        expected = "SPEAKER_00" if segment.end <= 17.0 else "SPEAKER_01" if segment.start >= 17.0 else None
        if expected is not None:
            assert segment.speaker == expected, segment
    assert [speaker["speaker"] for speaker in result.speakers()] == ["SPEAKER_00", "SPEAKER_01"]
    assert all(segment.words is None for segment in result.segments)  # word times were not asked for
    assert [item.id for item in result.segments] == list(range(len(result.segments)))
    done = [value for value, _ in reports]
    assert all(a <= b for a, b in itertools.pairwise(done)) and done[-1] == reports[-1][1] == 25.0
    # the transcription takes the first 60 %, the diarizer the rest (its quarters: 70, 80, 90 %)
    steps = [value for value in done if value > 15.0 + 1e-9]
    assert steps == pytest.approx([17.5, 20.0, 22.5, 25.0])


def test_words_stay_when_asked_for(model: LoadedModel) -> None:
    options = DecodeOptions(diarize=True, word_timestamps=True, end_time=15.0, batch_size=1)
    result = transcribe(model, CALL, options, diarizer=HalfAndHalf())
    words = [word for segment in result.segments for word in segment.words or ()]
    assert words and all(word.speaker in ("SPEAKER_00", "SPEAKER_01") for word in words)


def test_a_stop_during_diarization_cancels(model: LoadedModel) -> None:
    options = DecodeOptions(diarize=True, end_time=5.0, batch_size=1)
    with pytest.raises(TranscriptionCancelled):
        transcribe(model, CALL, options, diarizer=HalfAndHalf(stop=True))
