"""Every edit operation on a transcript (cesar_common.transcript_edits): what it changes, what it keeps (word
times only where still true), how speakers follow, and the refusals that name the edit."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cesar_common.errors import InvalidInputError
from cesar_common.transcript_edits import (
    MAX_EDITS,
    Remember,
    Transcript,
    apply_edits,
    edit_json,
    joined_text,
    parse_edits,
)
from cesar_common.transcription.result import TranscriptionResult
from cesar_common.transcription.writers import FORMATS, render


def word(start: float, end: float, text: str, speaker: str | None = "SPEAKER_00") -> dict[str, Any]:
    data: dict[str, Any] = {"start": start, "end": end, "word": text, "probability": 0.9}
    if speaker is not None:
        data["speaker"] = speaker
    return data


def segment(number: int, speaker: str | None, words: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": number,
        "start": words[0]["start"],
        "end": words[-1]["end"],
        "text": "".join(w["word"] for w in words).strip(),
        "words": [{**w, "speaker": speaker} if speaker else w for w in words],
        "decoded": {"seek": 0, "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.2,
                    "no_speech_prob": 0.01, "tokens": [1, 2, 3]},
        **extra,
    }  # fmt: skip
    if speaker is not None:
        data["speaker"] = speaker
    return data


def call() -> Transcript:
    """Three segments, two speakers, as a diarized job named by the library stores them."""
    return Transcript(
        segments=[
            segment(
                0,
                "SPEAKER_00",
                [word(0.0, 0.4, " Hello"), word(0.5, 0.9, " there,"), word(1.0, 1.5, " Diane.")],
            ),
            segment(
                1,
                "Sheila",
                [
                    word(2.0, 2.3, " The"),
                    word(2.4, 2.8, " cat"),
                    word(2.9, 3.3, " sat"),
                    word(3.4, 3.6, " on"),
                    word(3.7, 3.9, " the"),
                    word(4.0, 4.5, " mat."),
                ],
            ),
            segment(2, "SPEAKER_00", [word(5.0, 5.5, " Good"), word(5.6, 6.0, " dog.")]),
        ],
        speakers=[
            {
                "speaker": "SPEAKER_00",
                "duration": 2.5,
                "label": "SPEAKER_00",
                "speaker_id": None,
                "distance": None,
            },
            {
                "speaker": "Sheila",
                "duration": 2.5,
                "label": "SPEAKER_01",
                "speaker_id": "p-1",
                "distance": 0.03,
            },
        ],
    )


def edit(transcript: Transcript, *edits: dict[str, Any]) -> Transcript:
    revised = apply_edits(transcript, parse_edits(list(edits))).transcript
    check_invariants(revised)
    return revised


def check_invariants(transcript: Transcript) -> None:
    """What every reader relies on: ids from 0, times that are numbers, words in a segment's order, and
    every format renders it."""
    for number, item in enumerate(transcript.segments):
        assert item["id"] == number
        assert float(item["start"]) <= float(item["end"])
        for w in item.get("words") or ():
            assert isinstance(w["start"], float) and isinstance(w["end"], float)
        starts = [w["start"] for w in item.get("words") or ()]
        assert starts == sorted(starts)
    result = TranscriptionResult.from_stored(
        text=transcript.text, language="en", language_probability=1.0, duration=7.0,
        segments=list(transcript.segments),
    )  # fmt: skip
    for fmt in FORMATS:
        render(result, fmt)
    json.dumps(transcript.segments)


def words_of(item: dict[str, Any]) -> list[tuple[str, float, float]]:
    return [(w["word"], w["start"], w["end"]) for w in item["words"]]


# --- text ----------------------------------------------------------------------------------------------
def test_a_text_edit_keeps_the_times_of_the_words_kept_and_drops_the_others() -> None:
    before = call()
    after = edit(before, {"op": "text", "segment": 1, "text": "The cat sat on a mat."})
    changed = after.segments[1]
    assert changed["text"] == "The cat sat on a mat."
    assert changed["edited"] is True
    # "the" became "a": the word typed in has no times, so it is not among the words
    assert words_of(changed) == [(" The", 2.0, 2.3), (" cat", 2.4, 2.8), (" sat", 2.9, 3.3),
                                 (" on", 3.4, 3.6), (" mat.", 4.0, 4.5)]  # fmt: skip
    assert (changed["start"], changed["end"]) == (2.0, 4.5)  # the segment's span is still as heard
    assert "tokens" not in changed["decoded"] and changed["decoded"]["seek"] == 0
    assert after.segments[0] == before.segments[0] and "edited" not in after.segments[0]
    assert after.text == "Hello there, Diane. The cat sat on a mat. Good dog."


def test_case_and_punctuation_fixes_keep_the_times_spelled_as_now_written() -> None:
    after = edit(call(), {"op": "text", "segment": 0, "text": "hello there Diane!"})
    assert words_of(after.segments[0]) == [(" hello", 0.0, 0.4), (" there", 0.5, 0.9), (" Diane!", 1.0, 1.5)]
    assert after.segments[0]["words"][0]["speaker"] == "SPEAKER_00"


def test_words_inserted_and_removed() -> None:
    after = edit(call(), {"op": "text", "segment": 1, "text": "Then the big cat sat the mat"})
    assert [w for w, _, _ in words_of(after.segments[1])] == [" the", " cat", " sat", " the", " mat"]
    assert [s for _, s, _ in words_of(after.segments[1])] == [2.0, 2.4, 2.9, 3.7, 4.0]


def test_an_empty_text_leaves_a_segment_without_words_and_out_of_the_text() -> None:
    after = edit(call(), {"op": "text", "segment": 2, "text": "   "})
    assert after.segments[2]["text"] == "" and after.segments[2]["words"] == []
    assert after.text == "Hello there, Diane. The cat sat on the mat."


def test_the_same_text_changes_nothing_and_whitespace_is_one_line() -> None:
    before = call()
    assert edit(before, {"op": "text", "segment": 0, "text": "Hello  there,\nDiane."}).segments == list(
        before.segments
    )


def test_a_segment_without_word_times_is_edited_in_its_text_alone() -> None:
    item = {"id": 0, "start": 0.0, "end": 2.0, "text": "One two."}
    after = edit(Transcript([item]), {"op": "text", "segment": 0, "text": "One, two, three."})
    assert after.segments[0] == {
        "id": 0,
        "start": 0.0,
        "end": 2.0,
        "text": "One, two, three.",
        "edited": True,
    }
    assert after.speakers is None


# --- speaker and rename --------------------------------------------------------------------------------
def test_moving_a_segment_moves_its_words_and_recounts_the_speakers() -> None:
    after = edit(call(), {"op": "speaker", "segment": 1, "speaker": "SPEAKER_00"})
    assert after.segments[1]["speaker"] == "SPEAKER_00"
    assert {w["speaker"] for w in after.segments[1]["words"]} == {"SPEAKER_00"}
    # Sheila says nothing any more: her entry goes
    assert after.speakers == [
        {
            "speaker": "SPEAKER_00",
            "duration": 5.0,
            "label": "SPEAKER_00",
            "speaker_id": None,
            "distance": None,
        }
    ]


def test_a_new_name_gets_an_entry_without_a_voice() -> None:
    after = edit(call(), {"op": "speaker", "segment": 2, "speaker": "  Carol  "})
    assert after.segments[2]["speaker"] == "Carol"
    assert after.speakers == [
        {"speaker": "Carol", "duration": 1.0, "label": None, "speaker_id": None, "distance": None},
        {
            "speaker": "SPEAKER_00",
            "duration": 1.5,
            "label": "SPEAKER_00",
            "speaker_id": None,
            "distance": None,
        },
        {"speaker": "Sheila", "duration": 2.5, "label": "SPEAKER_01", "speaker_id": "p-1", "distance": 0.03},
    ]


def test_a_speaker_given_to_a_transcript_without_speakers_starts_its_list() -> None:
    items = [
        {"id": 0, "start": 0.0, "end": 2.0, "text": "One."},
        {"id": 1, "start": 2.0, "end": 3.0, "text": "Two."},
    ]
    after = edit(Transcript(items), {"op": "speaker", "segment": 1, "speaker": "Diane"})
    assert after.speakers == [{"speaker": "Diane", "duration": 1.0}]
    assert "speaker" not in after.segments[0]


def test_a_rename_renames_every_segment_and_word_and_keeps_the_entry() -> None:
    revised = apply_edits(call(), parse_edits([{"op": "rename", "speaker": "SPEAKER_00", "to": "Diane"}]))
    after = revised.transcript
    assert [item["speaker"] for item in after.segments] == ["Diane", "Sheila", "Diane"]
    assert {w["speaker"] for w in after.segments[2]["words"]} == {"Diane"}
    assert after.speakers is not None
    assert after.speakers[0] == {
        "speaker": "Diane", "duration": 2.5, "label": "SPEAKER_00", "speaker_id": None, "distance": None
    }  # fmt: skip
    assert revised.remember == []


def test_rename_with_remember_names_the_diarizer_s_label() -> None:
    edits = [
        {"op": "rename", "speaker": "Sheila", "to": "Sheila Smith", "remember": True},
        {"op": "rename", "speaker": "SPEAKER_00", "to": "Diane", "remember": True},
    ]
    revised = apply_edits(call(), parse_edits(edits))
    assert revised.remember == [Remember(0, "SPEAKER_01", "Sheila Smith"), Remember(1, "SPEAKER_00", "Diane")]
    # a name an edit made up has no voice of the job's
    edits = [
        {"op": "speaker", "segment": 0, "speaker": "Carol"},
        {"op": "rename", "speaker": "Carol", "to": "Caro", "remember": True},
    ]
    assert apply_edits(call(), parse_edits(edits)).remember == [Remember(1, None, "Caro")]


def test_renaming_to_another_speaker_s_name_makes_them_one() -> None:
    after = edit(call(), {"op": "rename", "speaker": "SPEAKER_00", "to": "Sheila"})
    assert {item["speaker"] for item in after.segments} == {"Sheila"}
    assert after.speakers == [
        {"speaker": "Sheila", "duration": 5.0, "label": "SPEAKER_01", "speaker_id": "p-1", "distance": 0.03}
    ]


def test_renaming_an_unknown_speaker_is_refused_naming_the_speakers() -> None:
    with pytest.raises(
        InvalidInputError, match=r"edit 1: no speaker named 'Bob'.*its speakers: Al, Sheila\)"
    ):
        edit(
            call(),
            {"op": "rename", "speaker": "SPEAKER_00", "to": "Al"},
            {"op": "rename", "speaker": "Bob", "to": "X"},
        )


def test_an_old_speakers_list_keeps_its_shape() -> None:
    items = [
        segment(0, "SPEAKER_00", [word(0.0, 1.0, " Hi.")]),
        segment(1, "SPEAKER_01", [word(1.0, 3.0, " Yo.")]),
    ]
    old = Transcript(
        items, [{"speaker": "SPEAKER_00", "duration": 1.0}, {"speaker": "SPEAKER_01", "duration": 2.0}]
    )
    revised = apply_edits(
        old, parse_edits([{"op": "rename", "speaker": "SPEAKER_01", "to": "Bo", "remember": True}])
    )
    assert revised.transcript.speakers == [
        {"speaker": "Bo", "duration": 2.0},
        {"speaker": "SPEAKER_00", "duration": 1.0},
    ]
    assert revised.remember == [Remember(0, "SPEAKER_01", "Bo")]  # its name was the diarizer's label


# --- merge and split -----------------------------------------------------------------------------------
def test_merging_neighbours_joins_text_words_and_times_under_the_first_speaker() -> None:
    after = edit(call(), {"op": "merge", "segments": [0, 1]})
    assert len(after.segments) == 2
    merged = after.segments[0]
    assert merged["text"] == "Hello there, Diane. The cat sat on the mat."
    assert (merged["start"], merged["end"]) == (0.0, 4.5)
    assert merged["speaker"] == "SPEAKER_00" and {w["speaker"] for w in merged["words"]} == {"SPEAKER_00"}
    assert len(merged["words"]) == 9 and "tokens" not in merged["decoded"] and "edited" not in merged
    assert after.segments[1]["id"] == 1 and after.segments[1]["text"] == "Good dog."


def test_merging_three_and_an_edited_one_stays_edited() -> None:
    after = edit(
        call(), {"op": "text", "segment": 2, "text": "Good boy."}, {"op": "merge", "segments": [0, 1, 2]}
    )
    (merged,) = after.segments
    assert merged["edited"] is True and merged["text"].endswith("Good boy.")
    assert after.speakers is not None and [entry["speaker"] for entry in after.speakers] == ["SPEAKER_00"]


@pytest.mark.parametrize("ids", [[0, 2], [1, 0], [0], [2, 3]])
def test_merging_what_is_not_neighbours_is_refused(ids: list[int]) -> None:
    with pytest.raises(InvalidInputError, match="edit 0: "):
        edit(call(), {"op": "merge", "segments": ids})


def test_split_before_a_word_takes_the_times_from_the_words() -> None:
    after = edit(call(), {"op": "split", "segment": 1, "word": 3})
    first, second = after.segments[1], after.segments[2]
    assert (first["text"], first["start"], first["end"]) == ("The cat sat", 2.0, 3.3)
    assert (second["text"], second["start"], second["end"]) == ("on the mat.", 3.4, 4.5)
    assert [w for w, _, _ in words_of(second)] == [" on", " the", " mat."]
    assert first["speaker"] == second["speaker"] == "Sheila"
    assert "edited" not in first and "edited" not in second
    assert [item["id"] for item in after.segments] == [0, 1, 2, 3]


def test_split_at_a_character_between_words_and_through_a_word() -> None:
    at_space = edit(call(), {"op": "split", "segment": 0, "char": 12})  # "Hello there," | " Diane."
    assert [item["text"] for item in at_space.segments[:2]] == ["Hello there,", "Diane."]
    assert at_space.segments[0]["end"] == 0.9 and at_space.segments[1]["start"] == 1.0
    through = edit(call(), {"op": "split", "segment": 0, "char": 8})  # "Hello th" | "ere, Diane."
    first, second = through.segments[:2]
    assert (first["text"], second["text"]) == ("Hello th", "ere, Diane.")
    assert words_of(first) == [(" Hello", 0.0, 0.4)] and words_of(second) == [(" Diane.", 1.0, 1.5)]
    assert first["edited"] is True and second["edited"] is True  # "there," was cut: its times are no one's
    assert (first["end"], second["start"]) == (0.4, 1.0)


def test_split_of_an_edited_segment_finds_its_words_in_the_new_text() -> None:
    after = edit(
        call(),
        {"op": "text", "segment": 1, "text": "So the cat sat down on the mat."},
        {"op": "split", "segment": 1, "char": 19},  # "So the cat sat down" | " on the mat."
    )
    first, second = after.segments[1], after.segments[2]
    assert [w for w, _, _ in words_of(first)] == [" the", " cat", " sat"] and first["end"] == 3.3
    assert [w for w, _, _ in words_of(second)] == [" on", " the", " mat."] and second["start"] == 3.4


def test_split_without_word_times_estimates_the_time_from_the_text() -> None:
    item = {"id": 0, "start": 10.0, "end": 20.0, "text": "One two. Three four."}
    after = edit(Transcript([item]), {"op": "split", "segment": 0, "char": 8})
    assert [(s["text"], s["start"], s["end"]) for s in after.segments] == [
        ("One two.", 10.0, 14.0),
        ("Three four.", 14.0, 20.0),
    ]


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"word": 0}, "`word` must be from 1 to 2"),
        ({"word": 3}, "`word` must be from 1 to 2"),
        ({"char": 0}, "text on both sides"),
        ({"char": 19}, "text on both sides"),
        ({"char": 500}, "text on both sides"),
    ],
)
def test_a_split_with_nothing_on_one_side_is_refused(split: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidInputError, match=f"edit 0: .*{message}"):
        edit(call(), {"op": "split", "segment": 0, **split})


def test_a_split_by_word_needs_words() -> None:
    item = {"id": 0, "start": 0.0, "end": 2.0, "text": "One two."}
    with pytest.raises(InvalidInputError, match="split it at a character offset"):
        edit(Transcript([item]), {"op": "split", "segment": 0, "word": 1})


# --- order, ids, restore -------------------------------------------------------------------------------
def test_each_edit_names_segments_as_the_edits_before_left_them() -> None:
    after = edit(
        call(),
        {"op": "split", "segment": 0, "word": 2},  # 0: "Hello there," 1: "Diane." 2: Sheila 3: "Good dog."
        {"op": "speaker", "segment": 1, "speaker": "Diane"},
        {"op": "merge", "segments": [2, 3]},
        {"op": "text", "segment": 2, "text": "The cat sat on the mat. Good dog!"},
    )
    assert [(item["speaker"], item["text"]) for item in after.segments] == [
        ("SPEAKER_00", "Hello there,"),
        ("Diane", "Diane."),
        ("Sheila", "The cat sat on the mat. Good dog!"),
    ]
    assert len(after.segments[2]["words"]) == 8


def test_restore_brings_back_a_revision_with_its_word_times() -> None:
    original = call()
    edited = edit(original, {"op": "text", "segment": 1, "text": "Nothing like it."})
    revised = apply_edits(edited, parse_edits([{"op": "restore", "revision": "original"}]), {0: original})
    assert revised.transcript.segments == list(original.segments)
    assert revised.transcript.speakers == original.speakers
    with pytest.raises(InvalidInputError, match="edit 0: this job has no revision 3"):
        apply_edits(edited, parse_edits([{"op": "restore", "revision": 3}]), {0: original})


def test_an_unknown_segment_is_refused_with_the_count() -> None:
    with pytest.raises(InvalidInputError, match=r"edit 1: no segment 3 \(the transcript has 3: 0 to 2\)"):
        edit(call(), {"op": "text", "segment": 0, "text": "Hi."}, {"op": "text", "segment": 3, "text": "x"})


def test_the_transcript_given_is_never_changed() -> None:
    before = call()
    kept = copy.deepcopy(before)
    edit(
        before,
        {"op": "text", "segment": 1, "text": "x y"},
        {"op": "rename", "speaker": "SPEAKER_00", "to": "D"},
        {"op": "merge", "segments": [0, 1]},
        {"op": "split", "segment": 0, "char": 3},
    )
    assert before == kept


def test_the_text_is_the_segments_joined_as_the_worker_joins_them() -> None:
    assert joined_text([{"text": "A."}, {"text": ""}, {"text": "B."}]) == "A. B."


# --- parsing -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("nope", "edits must be a list"),
        ([], "edits is empty"),
        ([{"op": "text", "segment": 0, "text": "a"}] * (MAX_EDITS + 1), f"at most {MAX_EDITS} edits"),
        ([1], "edit 0: an edit is a JSON object"),
        ([{"op": "delete"}], "edit 0: `op` must be one of text, speaker, rename, merge, split, restore"),
        ([{"op": ["text"]}], "edit 0: `op` must be one of"),
        ([{"op": "text", "segment": 0}], "edit 0: text needs `text`"),
        ([{"op": "text", "segment": 0, "text": "a", "colour": 1}], "edit 0: text takes no field 'colour'"),
        ([{"op": "text", "segment": -1, "text": "a"}], "edit 0: `segment` must be a whole number"),
        ([{"op": "text", "segment": True, "text": "a"}], "edit 0: `segment` must be a whole number"),
        ([{"op": "text", "segment": "1", "text": "a"}], "edit 0: `segment` must be a whole number"),
        ([{"op": "text", "segment": 0, "text": 5}], "edit 0: `text` must be a string"),
        (
            [{"op": "text", "segment": 0, "text": "a\x00b"}],
            r"edit 0: `text` contains a control character \(U\+0000\)",
        ),
        ([{"op": "text", "segment": 0, "text": "a" * 10_001}], "edit 0: `text` is longer than 10000"),
        ([{"op": "speaker", "segment": 0, "speaker": " "}], "edit 0: `speaker` must be a speaker's name"),
        ([{"op": "speaker", "segment": 0, "speaker": "a\x1b[31m"}], "edit 0: `speaker` contains a control"),
        ([{"op": "speaker", "segment": 0, "speaker": "x" * 101}], "edit 0: `speaker` is longer than 100"),
        ([{"op": "rename", "speaker": "A", "to": "B", "remember": "yes"}], "edit 0: `remember` must be true"),
        ([{"op": "merge", "segments": 4}], "edit 0: merge takes `segments`"),
        ([{"op": "split", "segment": 0}], "edit 0: split takes either `word`"),
        ([{"op": "split", "segment": 0, "word": 1, "char": 3}], "edit 0: split takes either `word`"),
        ([{"op": "restore", "revision": "latest"}], "edit 0: `revision` must be a revision number"),
    ],
)
def test_bad_edits_are_refused_naming_the_edit(raw: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_edits(raw)


def test_edits_are_recorded_as_a_client_sends_them() -> None:
    raw = [
        {"op": "text", "segment": 0, "text": " Hi  there "},
        {"op": "rename", "speaker": "A", "to": "B"},
        {"op": "merge", "segments": [1, 2]},
        {"op": "split", "segment": 0, "word": 2},
        {"op": "restore", "revision": "original"},
    ]
    assert [edit_json(item) for item in parse_edits(raw)] == [
        {"op": "text", "segment": 0, "text": "Hi there"},
        {"op": "rename", "speaker": "A", "to": "B", "remember": False},
        {"op": "merge", "segments": [1, 2]},
        {"op": "split", "segment": 0, "word": 2},
        {"op": "restore", "revision": 0},
    ]
