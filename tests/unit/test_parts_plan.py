"""Cutting a long file at pauses, and merging its parts' transcripts (no database, no Whisper)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from cesar_common.db.parts import live_copy
from cesar_common.db.records import FinishedPart
from cesar_common.diarization.library import PRINT_SIZE, Library, to_bytes
from cesar_common.diarization.linking import link_voices
from cesar_common.job_options import TranscribeOptions
from cesar_common.transcription.audio import SAMPLE_RATE
from cesar_common.transcription.cuts import (
    SEARCH_SECONDS,
    PauseFinder,
    Span,
    SplitPlan,
    pause_middles,
    plan_cuts,
)
from cesar_worker.part_results import merge_parts, part_options

SR = SAMPLE_RATE


def speaking(total: float, *speech: tuple[float, float]) -> PauseFinder:
    """A pause finder for a file of ``total`` seconds where people speak during ``speech``."""
    middles = pause_middles(
        round(total * SR), [(round(start * SR), round(end * SR)) for start, end in speech]
    )
    return lambda start, end: [middle for middle in middles if start <= middle <= end]


def test_a_short_file_is_one_part() -> None:
    assert plan_cuts(100, 600, speaking(100, (0, 100))) == [Span(0.0, 100.0)]
    assert plan_cuts(1000, 0, speaking(1000, (0, 1000))) == [Span(0.0, 1000.0)]


def test_cuts_fall_in_the_middle_of_the_pause_nearest_the_planned_place() -> None:
    # speech with a pause every 70 s (2 s long), 560 s in all, cut into parts of about 150 s
    speech = [(70.0 * n, 70.0 * n + 68.0) for n in range(8)]
    parts = plan_cuts(560, 150, speaking(560, *speech))
    assert len(parts) == 4
    assert parts[0].start == 0.0 and parts[-1].end == 560.0
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    pauses = {70.0 * n + 69.0 for n in range(1, 8)}
    assert all(part.end in pauses for part in parts[:-1])  # in a pause's middle, never in speech
    planned = [140.0, 280.0, 420.0]
    assert all(abs(part.end - at) <= SEARCH_SECONDS for part, at in zip(parts, planned, strict=False))


def test_speech_without_pauses_is_cut_at_the_planned_places() -> None:
    parts = plan_cuts(300, 100, speaking(300, (0, 300)))
    assert [(part.start, part.end) for part in parts] == [(0.0, 100.0), (100.0, 200.0), (200.0, 300.0)]


def test_no_tail_part_is_made_of_a_few_seconds() -> None:
    # 610 s of speech paused only near the end: one cut there would leave a 5 s part
    parts = plan_cuts(610, 600, speaking(610, (0, 604), (606, 610)))
    assert all(part.end - part.start >= 150 for part in parts)


def test_pauses_shorter_than_a_pause_are_no_place_to_cut() -> None:
    middles = pause_middles(10 * SR, [(round(0.1 * SR), 4 * SR), (round(4.1 * SR), 6 * SR)])
    assert middles == [8.0]  # not the 0.1 s before the first word, nor the 0.1 s between two


def test_a_part_s_audio_is_16_bit_pcm_of_its_span() -> None:
    samples = np.linspace(-1.0, 1.0, 4 * SR, dtype=np.float32)
    plan = SplitPlan([Span(0.0, 1.5), Span(1.5, 4.0)], samples, "en", 1.0)
    first, second = plan.pcm(0), plan.pcm(1)
    assert len(first) == 2 * round(1.5 * SR) and len(first) + len(second) == 2 * samples.size
    pcm = np.frombuffer(first + second, dtype="<i2")
    assert pcm[0] == -32768 and pcm[-1] == 32767


def test_a_part_is_asked_the_file_s_language_and_finds_its_own_speakers() -> None:
    options = TranscribeOptions(model="small", language=None, diarize=True, num_speakers=3)
    asked = part_options(options, "de")
    assert asked.language == "de" and asked.diarize
    assert (asked.num_speakers, asked.min_speakers, asked.max_speakers) == (None, None, 3)


def part(seq: int, start: float, end: float, segments: list[dict[str, Any]], **extra: Any) -> FinishedPart:
    decoding = {"device": "cpu", "compute_type": "int8", "mode": "batched", "batch_size": 2 + seq}
    result = {"segments": segments, "language": "en", "language_probability": 0.9, "decoding": decoding}
    return FinishedPart(seq, start, end, extra.pop("worker", f"w{seq}"), {**result, **extra})


def seg(start: float, text: str, speaker: str | None = None) -> dict[str, Any]:
    segment: dict[str, Any] = {"id": 0, "start": start, "end": start + 1, "text": text}
    words = [{"start": start, "end": start + 1, "word": text, "probability": 0.9}]
    if speaker is not None:
        segment["speaker"] = speaker
        words[0]["speaker"] = speaker
    segment["words"] = words
    return segment


def test_merged_segments_are_renumbered_in_order_with_words_kept() -> None:
    merged = merge_parts(
        [
            part(0, 0, 10, [seg(1, "one"), seg(5, "two")]),
            part(1, 10, 20, [seg(12, "three")], worker="w0"),
            part(2, 20, 25, []),
        ]
    )
    assert merged.text == "one two three"
    assert [segment["id"] for segment in merged.segments] == [0, 1, 2]
    assert merged.segments[2]["words"][0]["word"] == "three"
    assert merged.duration == 25 and merged.language == "en" and merged.language_probability == 0.9
    assert merged.decoding is not None
    assert (merged.decoding.parts, merged.decoding.workers, merged.decoding.batch_size) == (3, 2, 4)
    assert merged.speakers is None


def voice(*values: float) -> list[float]:
    vector = np.zeros(8)
    vector[: len(values)] = values
    return list(vector / np.linalg.norm(vector))


def test_the_same_voice_gets_one_name_in_every_part() -> None:
    alice, bob = voice(1, 0.1), voice(0.1, 1)
    merged = merge_parts(
        [
            # part 0 hears Alice first, part 1 Bob first: their local names are swapped
            part(0, 0, 10, [seg(1, "hi", "SPEAKER_00"), seg(3, "hello", "SPEAKER_01")],
                 voices={"SPEAKER_00": alice, "SPEAKER_01": bob}),
            part(1, 10, 20, [seg(11, "yes", "SPEAKER_00"), seg(13, "no", "SPEAKER_01")],
                 voices={"SPEAKER_00": bob, "SPEAKER_01": alice}),
        ]
    )  # fmt: skip
    speakers = [(segment["text"], segment["speaker"]) for segment in merged.segments]
    assert speakers == [
        ("hi", "SPEAKER_00"),
        ("hello", "SPEAKER_01"),
        ("yes", "SPEAKER_01"),
        ("no", "SPEAKER_00"),
    ]
    assert merged.segments[2]["words"][0]["speaker"] == "SPEAKER_01"
    unnamed = {"speaker_id": None, "distance": None}
    assert merged.speakers == [
        {"speaker": "SPEAKER_00", "duration": 2.0, "label": "SPEAKER_00", **unnamed},
        {"speaker": "SPEAKER_01", "duration": 2.0, "label": "SPEAKER_01", **unnamed},
    ]


def test_a_part_where_nobody_speaks_keeps_the_others_linked() -> None:
    alice, bob = voice(1, 0.1), voice(0.1, 1)
    merged = merge_parts(
        [
            part(0, 0, 10, [seg(1, "hi", "SPEAKER_00")], voices={"SPEAKER_00": alice}),
            part(1, 10, 20, [], voices={}),
            part(2, 20, 30, [seg(21, "yo", "SPEAKER_00"), seg(23, "hey", "SPEAKER_01")],
                 voices={"SPEAKER_00": bob, "SPEAKER_01": alice}),
        ]
    )  # fmt: skip
    speakers = [(segment["text"], segment["speaker"]) for segment in merged.segments]
    assert speakers == [("hi", "SPEAKER_00"), ("yo", "SPEAKER_01"), ("hey", "SPEAKER_00")]


@pytest.mark.parametrize(("exact", "expected"), [(None, 3), (2, 2)])
def test_linking_respects_the_number_of_speakers_asked(exact: int | None, expected: int) -> None:
    from cesar_common.diarization.backend import SpeakerCount

    voices = [{"SPEAKER_00": voice(1, 0)}, {"SPEAKER_00": voice(0, 1)}, {"SPEAKER_00": voice(0, 0.6, 0.8)}]
    links = link_voices(voices, SpeakerCount(exact=exact))
    assert len({name for link in links for name in link.values()}) == expected


def test_live_segments_of_a_part_carry_no_speaker() -> None:
    copy = live_copy(seg(1, "hi", "SPEAKER_01"))
    assert "speaker" not in copy and "speaker" not in copy["words"][0]


def test_a_long_files_speakers_are_named_once_linked() -> None:
    """The merge names the voices the library knows: each label's print is the mean of its parts'."""
    alice, bob = np.zeros(PRINT_SIZE), np.zeros(PRINT_SIZE)
    alice[:2], bob[:2] = (1, 0.1), (0.1, 1)
    alice, bob = alice / np.linalg.norm(alice), bob / np.linalg.norm(bob)
    library = Library.build([("p-bob", "Bob Stone", to_bytes(bob))])
    merged = merge_parts(
        [
            part(0, 0, 10, [seg(1, "hi", "SPEAKER_00"), seg(3, "hello", "SPEAKER_01")],
                 voices={"SPEAKER_00": list(alice), "SPEAKER_01": list(bob)}),
            part(1, 10, 20, [seg(11, "yes", "SPEAKER_00"), seg(13, "no", "SPEAKER_01")],
                 voices={"SPEAKER_00": list(bob), "SPEAKER_01": list(alice)}),
        ],
        library=library,
    )  # fmt: skip
    speakers = [(segment["text"], segment["speaker"]) for segment in merged.segments]
    assert speakers == [
        ("hi", "SPEAKER_00"),
        ("hello", "Bob Stone"),
        ("yes", "Bob Stone"),
        ("no", "SPEAKER_00"),
    ]
    assert merged.segments[2]["words"][0]["speaker"] == "Bob Stone"
    assert merged.voices is not None and sorted(merged.voices) == ["SPEAKER_00", "SPEAKER_01"]
    assert np.allclose(merged.voices["SPEAKER_01"], bob, atol=1e-4)
    named = {entry["speaker"]: entry for entry in merged.speakers or []}
    assert named["Bob Stone"]["label"] == "SPEAKER_01" and named["Bob Stone"]["speaker_id"] == "p-bob"
    assert named["Bob Stone"]["distance"] == pytest.approx(0, abs=1e-3)
    assert named["SPEAKER_00"]["speaker_id"] is None
