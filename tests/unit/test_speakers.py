"""Speaker turns put on a transcript: words on the turn they overlap most, segments split at changes."""

from __future__ import annotations

from dataclasses import replace

from cesar_common.diarization.backend import Turn, named_by_appearance, speaker_name
from cesar_common.diarization.speakers import MIN_SECONDS, SpeakerFinder, label_segments
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


def _words(*spec: tuple[float, float, str]) -> tuple[Word, ...]:
    return tuple(Word(start, end, text, 0.9) for start, end, text in spec)


def _said(labelled: tuple[Segment, ...]) -> list[tuple[str, str | None]]:
    return [(segment.text, segment.speaker) for segment in labelled]


def test_a_sentence_one_speaker_says_almost_all_of_stays_whole() -> None:
    # seven words, the last on B's turn: 6 of 7 (86 %) are A's
    words = _words(*((index * 0.5, index * 0.5 + 0.4, f"w{index}") for index in range(6)), (3.0, 3.4, "end."))
    segment = Segment(0, 0.0, 3.4, "w0 w1 w2 w3 w4 w5 end.", words=words)
    (labelled,) = label_segments([segment], [Turn(0.0, 2.9, "A"), Turn(2.9, 4.0, "B")])
    assert labelled.speaker == "A" and {word.speaker for word in labelled.words or ()} == {"A"}
    assert labelled.text == segment.text


def test_a_change_moves_to_the_sentence_end_the_words_support() -> None:
    # the diarizer says B starts at 3.3 s, mid-sentence; the words say at 2.5 s, after "there."
    words = _words(
        (0.0, 0.5, "Well,"), (0.6, 1.2, "I'm"), (1.2, 2.1, "there."),
        (2.9, 3.2, "Oh,"), (3.2, 3.7, "I'm"), (3.7, 4.3, "coming"), (4.3, 5.0, "too."),
    )  # fmt: skip
    segment = Segment(0, 0.0, 5.0, "Well, I'm there. Oh, I'm coming too.", words=words)
    labelled = label_segments([segment], [Turn(0.0, 3.3, "A"), Turn(3.3, 6.0, "B")])
    assert _said(labelled) == [("Well, I'm there.", "A"), ("Oh, I'm coming too.", "B")]
    assert (labelled[0].start, labelled[0].end, labelled[1].start, labelled[1].end) == (0.0, 2.1, 2.9, 5.0)


def test_a_change_never_takes_a_sentence_kept_whole() -> None:
    # the longer pause before "Yes." is the better boundary, but "Yes." is a sentence the turns give A
    words = _words(
        (0.0, 0.4, "Well,"), (0.4, 0.6, "I"), (0.6, 0.8, "am"), (0.8, 1.2, "here."), (2.0, 2.2, "Yes."),
        (2.4, 2.6, "We"), (2.6, 2.8, "are"), (2.8, 3.2, "too."),
    )  # fmt: skip
    segment = Segment(0, 0.0, 3.2, "Well, I am here. Yes. We are too.", words=words)
    labelled = label_segments([segment], [Turn(0.0, 2.3, "A"), Turn(2.3, 5.0, "B")])
    assert _said(labelled) == [("Well, I am here. Yes.", "A"), ("We are too.", "B")]


def test_a_change_beyond_reach_stays_at_the_best_boundary_near_it() -> None:
    # the sentence end is 1.8 s before the diarizer's change: out of reach; the comma is the best within
    words = _words(
        (0.0, 0.4, "One."), (1.0, 1.5, "Two"), (1.5, 2.0, "three"), (2.0, 2.5, "four,"),
        (2.7, 3.2, "five"), (3.2, 3.7, "six"), (3.7, 4.2, "seven"), (4.2, 4.7, "eight."),
    )  # fmt: skip
    segment = Segment(0, 0.0, 4.7, "One. Two three four, five six seven eight.", words=words)
    labelled = label_segments([segment], [Turn(0.0, 3.2, "A"), Turn(3.2, 5.0, "B")])
    assert _said(labelled) == [("One. Two three four,", "A"), ("five six seven eight.", "B")]


def test_a_fragment_of_a_sentence_goes_to_the_rest_of_it() -> None:
    # the change moves back to the comma after "Oh," (the sentence end is out of reach); "Oh," alone is
    # 0.4 s, so the whole sentence is B's
    words = _words(
        (0.0, 0.5, "Chicago."), (1.4, 1.8, "Oh,"), (1.8, 2.1, "I'm"), (2.1, 2.5, "from"), (2.5, 2.9, "there"),
        (2.9, 3.3, "too."),
    )  # fmt: skip
    segment = Segment(0, 0.0, 3.3, "Chicago. Oh, I'm from there too.", words=words)
    labelled = label_segments([segment], [Turn(0.0, 2.0, "A"), Turn(2.0, 5.0, "B")])
    assert _said(labelled) == [("Chicago.", "A"), ("Oh, I'm from there too.", "B")]
    assert all(piece.duration >= MIN_SECONDS for piece in labelled)


def test_a_short_segment_is_widened_into_the_silence_around_it() -> None:
    segments = [
        Segment(0, 0.0, 2.0, "Hello there.", words=_words((0.0, 2.0, "Hello there."))),
        Segment(1, 2.1, 2.22, "Hi.", words=_words((2.1, 2.22, "Hi."))),
        Segment(2, 4.0, 6.0, "How are you?", words=_words((4.0, 6.0, "How are you?"))),
    ]
    labelled = label_segments(segments, [Turn(0.0, 2.05, "A"), Turn(2.05, 3.0, "B"), Turn(3.0, 6.0, "A")])
    # 0.1 s of silence before it, plenty after: 0.1 s earlier, the rest later
    assert [(s.start, s.end, s.speaker) for s in labelled] == [
        (0.0, 2.0, "A"),
        (2.0, 2.5, "B"),
        (4.0, 6.0, "A"),
    ]
    assert labelled[1].words == (Word(2.1, 2.22, "Hi.", 0.9, speaker="B"),)  # the words keep their times


def test_a_short_segment_without_room_joins_its_nearer_neighbour() -> None:
    decoded = Decoded(0, 0.0, -0.2, 1.1, 0.01, tokens=(1, 2))
    segments = [
        Segment(0, 0.0, 2.0, "Hello there.", words=_words((0.0, 2.0, "Hello there.")), decoded=decoded),
        Segment(1, 2.05, 2.3, "Hi.", words=_words((2.05, 2.3, "Hi."))),
        Segment(2, 2.4, 4.0, "How are you?", words=_words((2.4, 4.0, "How are you?"))),
    ]
    labelled = label_segments(segments, [Turn(0.0, 2.0, "A"), Turn(2.0, 2.3, "B"), Turn(2.3, 4.0, "C")])
    assert [(s.id, s.start, s.end, s.text, s.speaker) for s in labelled] == [
        (0, 0.0, 2.3, "Hello there. Hi.", "A"),
        (1, 2.4, 4.0, "How are you?", "C"),
    ]
    assert [word.speaker for word in labelled[0].words or ()] == ["A", "A"]
    assert labelled[0].decoded is not None and labelled[0].decoded.tokens is None


def test_without_turns_the_segments_stay_as_they_are() -> None:
    segment = Segment(3, 1.0, 1.1, "Hi.", words=_words((1.0, 1.1, "Hi.")))
    assert label_segments([segment], []) == (replace(segment, id=0),)
