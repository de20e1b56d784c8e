"""The bundled diarizer on real and synthetic conversations, scored against their true speaker turns with
pyannote.metrics (diarization error rate: collar 0.25 s, overlapping speech scored)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from pyannote.core import Annotation, Timeline
from pyannote.core import Segment as Span
from pyannote.metrics.diarization import DiarizationErrorRate

from cesar_common.diarization.backend import SpeakerCount, Turn
from cesar_common.diarization.local import LocalDiarizer
from cesar_common.diarization.speakers import SpeakerFinder
from cesar_common.transcription.audio import decode_samples


@pytest.fixture(scope="module")
def diarizer() -> LocalDiarizer:
    return LocalDiarizer()


def _reference(path: Path) -> Annotation:
    annotation = Annotation()
    for line in path.read_text().splitlines():
        fields = line.split()
        start, duration = float(fields[3]), float(fields[4])
        annotation[Span(start, start + duration)] = fields[7]
    return annotation


def _hypothesis(turns: list[Turn]) -> Annotation:
    annotation = Annotation()
    for turn in turns:
        annotation[Span(turn.start, turn.end)] = turn.speaker
    return annotation


def _der(audio: Path, samples: np.ndarray, turns: list[Turn]) -> float:
    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    scored = Timeline([Span(0.0, len(samples) / 16000)])  # the whole file
    return float(metric(_reference(audio.with_suffix(".rttm")), _hypothesis(turns), uem=scored))


@pytest.mark.parametrize(
    ("name", "count", "speakers", "most"),
    [
        ("two_speakers.wav", SpeakerCount(), 2, 0.10),
        ("two_speakers.wav", SpeakerCount(exact=2), 2, 0.08),
        ("three_voices.wav", SpeakerCount(), 3, 0.15),
        ("three_voices.wav", SpeakerCount(exact=3), 3, 0.15),
    ],
)
def test_error_rate_on_conversations(
    diarizer: LocalDiarizer, audio_dir: Path, name: str, count: SpeakerCount, speakers: int, most: float
) -> None:
    audio = audio_dir / name
    samples = decode_samples(audio)
    turns = diarizer.diarize(samples, count)
    assert len({turn.speaker for turn in turns}) == speakers
    assert _der(audio, samples, turns) <= most


def test_one_voice_is_one_speaker(diarizer: LocalDiarizer, audio_dir: Path) -> None:
    turns = diarizer.diarize(decode_samples(audio_dir / "speech_en_long.flac"))
    assert {turn.speaker for turn in turns} == {"SPEAKER_00"}


def test_speakers_are_named_by_first_appearance(diarizer: LocalDiarizer, audio_dir: Path) -> None:
    turns = diarizer.diarize(decode_samples(audio_dir / "three_voices.wav"))
    firsts = [
        next(turn.start for turn in turns if turn.speaker == name)
        for name in sorted({t.speaker for t in turns})
    ]
    assert firsts == sorted(firsts)
    assert all(a.end <= b.start for a, b in itertools.pairwise(turns))


def test_words_go_to_their_speaker(diarizer: LocalDiarizer, audio_dir: Path) -> None:
    """Each word of the call's transcript (its utterance's span shared evenly among its words) on the
    turn it overlaps most: under the best matching of found to true speakers, most are right."""
    turns = diarizer.diarize(decode_samples(audio_dir / "two_speakers.wav"), SpeakerCount(exact=2))
    finder = SpeakerFinder(turns)
    pairs: list[tuple[str, str | None]] = []
    for line in (audio_dir / "two_speakers.stm").read_text().splitlines():
        _, _, truth, start, end, *words = line.split()
        share = (float(end) - float(start)) / len(words)
        for index in range(len(words)):
            begin = float(start) + index * share
            pairs.append((truth, finder.speaker(begin, begin + share)))
    truths = sorted({truth for truth, _ in pairs})
    found = sorted({turn.speaker for turn in turns})
    right = max(
        sum(mapping.get(speaker) == truth for truth, speaker in pairs)
        for mapping in (dict(zip(order, truths, strict=False)) for order in itertools.permutations(found))
    )
    assert right / len(pairs) >= 0.85


def test_silence_has_no_speakers(diarizer: LocalDiarizer, audio_dir: Path) -> None:
    assert diarizer.diarize(decode_samples(audio_dir / "silence.wav")) == []


def test_speaker_count_bounds(diarizer: LocalDiarizer, audio_dir: Path) -> None:
    samples = decode_samples(audio_dir / "three_voices.wav")
    assert len({t.speaker for t in diarizer.diarize(samples, SpeakerCount(maximum=2))}) == 2
    story = decode_samples(audio_dir / "speech_en_long.flac")
    assert len({t.speaker for t in diarizer.diarize(story, SpeakerCount(minimum=2))}) == 2


def test_short_speech_is_one_speaker(diarizer: LocalDiarizer, audio_dir: Path) -> None:
    samples = decode_samples(audio_dir / "speech_en.wav")[:16000]
    turns = diarizer.diarize(np.ascontiguousarray(samples))
    assert {turn.speaker for turn in turns} <= {"SPEAKER_00"}
