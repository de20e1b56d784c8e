"""Speaker turns put on a transcript: words on the turn they overlap most, segments split at changes."""

from __future__ import annotations

from cesar_common.diarization.backend import Turn, named_by_appearance, speaker_name
from cesar_common.diarization.speakers import SpeakerFinder, label_segments
from cesar_common.transcription.result import Decoded, Segment, Word

TURNS = [Turn(0.0, 2.0, "SPEAKER_00"), Turn(2.2, 4.0, "SPEAKER_01"), Turn(4.0, 6.0, "SPEAKER_00")]


def test_names_by_first_appearance() -> None:
    turns = named_by_appearance([Turn(3.0, 4.0, "x"), Turn(0.0, 1.0, "y"), Turn(1.0, 2.0, "x")])
    assert [(turn.start, turn.speaker) for turn in turns] == [
        (0.0, "SPEAKER_00"),
        (1.0, "SPEAKER_01"),
        (3.0, "SPEAKER_01"),
    ]
    assert speaker_name(12) == "SPEAKER_12"


def test_most_overlap_wins_and_gaps_take_the_nearest() -> None:
    finder = SpeakerFinder(TURNS)
    assert finder.speaker(1.5, 2.6) == "SPEAKER_00"  # 0.5 s against 0.4 s
    assert finder.speaker(1.9, 2.8) == "SPEAKER_01"
    assert finder.speaker(2.05, 2.1) == "SPEAKER_00"  # in the gap, nearer the first turn
    assert finder.speaker(9.0, 9.5) == "SPEAKER_00"  # after the end: the last turn
    assert SpeakerFinder([]).speaker(0.0, 1.0) is None


def test_overlapping_turns_of_another_backend() -> None:
    finder = SpeakerFinder([Turn(0.0, 10.0, "A"), Turn(4.0, 5.0, "B")])
    assert finder.speaker(4.0, 5.0) == "A"  # A overlaps it as much, and first
    assert finder.speaker(8.0, 9.0) == "A"


def test_segments_split_where_the_speaker_changes() -> None:
    words = (
        Word(0.5, 1.0, "Hello", 0.9),
        Word(1.0, 1.8, "there.", 0.9),
        Word(2.3, 2.9, "Hi", 0.9),
        Word(3.0, 3.5, "you.", 0.9),
    )
    decoded = Decoded(0, 0.0, -0.2, 1.1, 0.01, tokens=(1, 2, 3))
    segments = [
        Segment(0, 0.4, 3.6, "Hello there. Hi you.", words=words, decoded=decoded),
        Segment(1, 4.2, 5.0, "No words here."),
    ]
    labelled = label_segments(segments, TURNS)
    assert [(s.id, s.start, s.end, s.text, s.speaker) for s in labelled] == [
        (0, 0.4, 1.8, "Hello there.", "SPEAKER_00"),
        (1, 2.3, 3.6, "Hi you.", "SPEAKER_01"),
        (2, 4.2, 5.0, "No words here.", "SPEAKER_00"),
    ]
    assert [word.speaker for word in labelled[0].words or ()] == ["SPEAKER_00", "SPEAKER_00"]
    assert labelled[0].decoded is not None and labelled[0].decoded.tokens is None


def test_one_speaker_keeps_the_segment_whole() -> None:
    segment = Segment(0, 0.0, 1.5, "Hello there.", words=(Word(0.0, 0.5, "Hello", 0.9),))
    (labelled,) = label_segments([segment], TURNS)
    assert labelled.text == "Hello there." and labelled.speaker == "SPEAKER_00"
