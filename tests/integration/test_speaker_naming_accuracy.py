"""Naming the people of the voice library in diarized transcripts (issue 30), on real audio with the real
tiny.en and the bundled diarizer, scored word by word against the reference turns (RTTM): a word's true
speaker is the one turn at its middle; words outside every turn or in overlap are not scored.

- The real telephone call: Diane and Sheila enrolled from their own turns in its first half (at most
  20 s each), its second half transcribed alone: at least 90 % of its words carry the right name.
- The same half between an operator's announcements in a synthetic voice nobody enrolled
  (call_third_voice.flac): no word of the operator carries a name; Diane's and Sheila's still do.
- Six synthetic voices in a meeting (voices_meeting.flac), three enrolled from samples of their own
  (voice_*.flac): no word of the other three carries a name; each enrolled voice is named in at least 90 %
  of its words.

The distances behind ``MATCH_DISTANCE`` and how far from it these cases stay: ``bench/speaker_naming.py``
(which holds the reference helpers used here) and BENCHMARKS.md ("Named speakers"). Each file is
transcribed and diarized once per module.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from speaker_naming import (
    CALL,
    CALL_SPLIT,
    ENROLLED,
    MEETING,
    NAMES,
    THIRD_VOICE,
    VOICES,
    call_prints,
    library,
    reference,
    scored_words,
    shares,
    voice_prints,
)

from cesar_common.diarization.library import Library
from cesar_common.diarization.naming import name_speakers
from cesar_common.transcription.loading import LoadedModel, load_model
from cesar_common.transcription.whisper import DecodeOptions, transcribe

#: the least share of an enrolled person's words that must carry their name (issue 30)
MOST_RIGHT = 0.90
CALL_PEOPLE = ("Diane", "Sheila")


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("tiny.en", device="cpu", compute_type="int8")


@pytest.fixture(scope="module")
def call_library() -> Library:
    return library(call_prints())


@pytest.fixture(scope="module")
def synthetic_library() -> Library:
    return library(voice_prints(ENROLLED))


def _named(
    model: LoadedModel, audio: Path, people: Library, start: float | None = None
) -> list[tuple[str, str]]:
    """``(reference speaker, the word's speaker)`` for the scored words of ``audio`` (from ``start`` s)
    transcribed, diarized and named after ``people``."""
    # sequential: the batched pipeline leaves out the operator's announcements and Diane's first turn in
    # call_third_voice.flac (tiny.en writes nothing for the first 9 s), words the test needs
    options = DecodeOptions(diarize=True, word_timestamps=True, start_time=start, batch_size=1)
    result = transcribe(model, audio, options)
    named, _ = name_speakers([segment.to_dict() for segment in result.segments], result.voices, people)
    return scored_words(named, reference(audio.with_suffix(".rttm")))


@pytest.fixture(scope="module")
def second_half(model: LoadedModel, call_library: Library) -> list[tuple[str, str]]:
    return _named(model, CALL, call_library, CALL_SPLIT)


@pytest.fixture(scope="module")
def with_operator(model: LoadedModel, call_library: Library) -> list[tuple[str, str]]:
    return _named(model, THIRD_VOICE, call_library)


@pytest.fixture(scope="module")
def meeting(model: LoadedModel, synthetic_library: Library) -> list[tuple[str, str]]:
    return _named(model, MEETING, synthetic_library)


def test_the_call_names_each_person_in_its_second_half(second_half: list[tuple[str, str]]) -> None:
    right = sum(speaker == NAMES[truth] for truth, speaker in second_half)
    assert len(second_half) >= 30, second_half  # about 40 words in 12 s
    assert right / len(second_half) >= MOST_RIGHT, shares(second_half, CALL_PEOPLE)
    assert {truth for truth, _ in second_half} == {"speaker90", "speaker91"}


def test_an_unenrolled_voice_is_never_given_a_name(with_operator: list[tuple[str, str]]) -> None:
    counts = shares(with_operator, CALL_PEOPLE)
    named, words = counts.pop("third")
    assert words >= 20, with_operator  # two announcements of 15 and 16 words
    assert named == 0, with_operator
    theirs = [(truth, speaker) for truth, speaker in with_operator if truth != "third"]
    right = sum(speaker == NAMES[truth] for truth, speaker in theirs)
    assert right / len(theirs) >= MOST_RIGHT, counts
    assert set(counts) == {"speaker90", "speaker91"}


def test_three_of_six_synthetic_voices_enrolled(meeting: list[tuple[str, str]]) -> None:
    counts = shares(meeting, [NAMES[voice] for voice in ENROLLED])
    assert set(counts) == set(VOICES)
    for voice, (named, words) in counts.items():
        assert words >= 15, counts  # each says two sentences
        if voice in ENROLLED:
            assert named / words >= MOST_RIGHT, (voice, counts)
        else:
            assert named == 0, (voice, counts)
