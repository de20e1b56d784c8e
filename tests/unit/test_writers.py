"""Output formats on canned results: every format parses back with a real parser, cue times stay sane."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest
import srt
import webvtt

from cesar_common.errors import InvalidInputError
from cesar_common.transcription.result import Segment, TranscriptionResult, Word
from cesar_common.transcription.writers import FORMATS, format_for_path, render


def _result(*segments: Segment, text: str | None = None) -> TranscriptionResult:
    return TranscriptionResult(
        text=text if text is not None else " ".join(s.text for s in segments),
        language="en",
        language_probability=0.98,
        duration=4000.0,
        segments=tuple(segments),
        model="tiny.en",
        device="cpu",
        compute_type="int8",
    )


PLAIN = _result(
    Segment(0, 0.0, 2.5, "Hello there."),
    Segment(1, 2.5, 5.04, "General Kenobi."),
)
# What Whisper can really produce: overlaps, zero-length and empty segments, markup-like text,
# line breaks, an arrow, times past an hour.
AWKWARD = _result(
    Segment(0, 0.0, 2.0, "First <b>bold</b> & more"),
    Segment(1, 1.5, 1.5, "overlapping and zero length"),
    Segment(2, 3.0, 3.0, "   "),
    Segment(3, 3.0, 4.2, "two\nlines\tand a tab"),
    Segment(4, 4.2, 4.1, "ends before it starts --> odd"),
    Segment(5, 3725.004, 3727.5, "past an hour"),
)


def _monotonic(cues: list[tuple[float, float]]) -> None:
    previous_end = 0.0
    for start, end in cues:
        assert start >= previous_end - 1e-9, cues
        assert end > start, cues
        previous_end = end


def _vtt_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_formats_table() -> None:
    assert set(FORMATS) == {"txt", "srt", "vtt", "json", "tsv", "rttm"}
    for name, fmt in FORMATS.items():
        assert fmt.extension == f".{name}"
        assert fmt.media_type
        assert format_for_path(f"/tmp/out{fmt.extension.upper()}") == name
    assert format_for_path("talk.mp3") is None
    assert format_for_path("noext") is None


def test_unknown_format_is_a_client_error() -> None:
    with pytest.raises(InvalidInputError, match="unknown output format"):
        render(PLAIN, "docx")


def test_txt_one_segment_per_line() -> None:
    assert render(PLAIN, "txt") == "Hello there.\nGeneral Kenobi.\n"
    assert render(PLAIN, "TXT") == render(PLAIN, "txt")


def test_srt_parses_back() -> None:
    subtitles = list(srt.parse(render(PLAIN, "srt")))
    assert [s.content for s in subtitles] == ["Hello there.", "General Kenobi."]
    assert [s.index for s in subtitles] == [1, 2]
    assert subtitles[1].start == timedelta(seconds=2.5)
    assert subtitles[1].end == timedelta(seconds=5.04)


@pytest.mark.parametrize("result", [PLAIN, AWKWARD], ids=["plain", "awkward"])
def test_srt_cues_are_valid_and_monotonic(result: TranscriptionResult) -> None:
    subtitles = list(srt.parse(render(result, "srt")))
    _monotonic([(s.start.total_seconds(), s.end.total_seconds()) for s in subtitles])
    assert all(s.content and "\n" not in s.content for s in subtitles)


def test_srt_awkward_content() -> None:
    subtitles = list(srt.parse(render(AWKWARD, "srt")))
    assert len(subtitles) == 5  # the blank segment is dropped
    assert subtitles[2].content == "two lines and a tab"
    assert "-->" not in subtitles[3].content
    assert subtitles[-1].start == timedelta(hours=1, minutes=2, seconds=5, milliseconds=4)


def test_vtt_parses_back() -> None:
    captions = webvtt.from_string(render(PLAIN, "vtt")).captions
    assert [c.text for c in captions] == ["Hello there.", "General Kenobi."]
    assert captions[0].start == "00:00:00.000"
    assert captions[1].end == "00:00:05.040"


@pytest.mark.parametrize("result", [PLAIN, AWKWARD], ids=["plain", "awkward"])
def test_vtt_cues_are_valid_and_monotonic(result: TranscriptionResult) -> None:
    text = render(result, "vtt")
    assert text.startswith("WEBVTT\n\n")
    captions = webvtt.from_string(text).captions
    assert len(captions) == sum(1 for s in result.segments if s.text.strip())
    _monotonic([(_vtt_seconds(c.start), _vtt_seconds(c.end)) for c in captions])


def test_vtt_escapes_markup() -> None:
    text = render(AWKWARD, "vtt")
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in text
    assert "<b>" not in text


def test_json_round_trips_through_from_stored() -> None:
    data = json.loads(render(AWKWARD, "json"))
    assert data["language"] == "en" and data["model"] == "tiny.en" and data["mode"] == "sequential"
    rebuilt = TranscriptionResult.from_stored(
        text=data["text"],
        language=data["language"],
        language_probability=data["language_probability"],
        duration=data["duration"],
        segments=data["segments"],
    )
    assert rebuilt.segments == AWKWARD.segments
    assert rebuilt.text == AWKWARD.text
    assert render(rebuilt, "srt") == render(AWKWARD, "srt")


def test_tsv_like_whisper() -> None:
    rows = list(csv.reader(io.StringIO(render(AWKWARD, "tsv")), delimiter="\t"))
    assert rows[0] == ["start", "end", "text"]
    assert all(len(row) == 3 for row in rows)
    assert rows[1] == ["0", "2000", "First <b>bold</b> & more"]
    starts = [int(row[0]) for row in rows[1:]]
    assert starts == sorted(starts)
    assert rows[-1][0] == "3725004"


def test_empty_result_renders_in_every_format() -> None:
    empty = _result()
    assert render(empty, "txt") == ""
    assert list(srt.parse(render(empty, "srt"))) == []
    assert webvtt.from_string(render(empty, "vtt")).captions == []
    assert json.loads(render(empty, "json"))["segments"] == []
    assert render(empty, "tsv") == "start\tend\ttext\n"
    assert render(empty, "rttm") == ""


def test_words_only_when_present_and_plain_floats() -> None:
    words = (Word(np.float32(0.5), np.float64(0.9), "Hi", np.float32(0.75)),)
    result = _result(Segment(0, np.float64(0.5), np.float32(1.0), "Hi", words), Segment(1, 1.0, 2.0, "you"))
    segments = result.segments_as_dicts()
    assert "words" in segments[0] and "words" not in segments[1]
    for value in (segments[0]["start"], segments[0]["end"], *segments[0]["words"][0].values()):
        assert type(value) in (float, str)
    json.dumps(result.to_dict())  # plain Python: no numpy scalars left


def test_from_stored_tolerates_missing_parts() -> None:
    rebuilt = TranscriptionResult.from_stored(
        text=None, language=None, language_probability=None, duration=None, segments=None
    )
    assert rebuilt.text == "" and rebuilt.segments == () and rebuilt.duration == 0.0
    assert "model" not in json.loads(render(rebuilt, "json"))  # how it ran is unknown: not invented
    rebuilt = TranscriptionResult.from_stored(
        text="a b",
        language="en",
        language_probability=1,
        duration=3,
        segments=[{"start": 0, "end": 1, "text": "a"}, {"start": 1, "end": 2, "text": "b"}],
    )
    assert [s.id for s in rebuilt.segments] == [0, 1]
    assert rebuilt.segments[1].words is None


def test_light_modules_never_import_faster_whisper() -> None:
    # The API renders transcripts and probes uploads with these; it must never load Whisper.
    code = (
        "import sys; import cesar_common.transcription, cesar_common.transcription.writers, "
        "cesar_common.transcription.result, cesar_common.transcription.audio; "
        "print('faster_whisper' in sys.modules, 'ctranslate2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


DIARIZED = _result(
    Segment(0, 0.0, 2.0, "Hello there.", speaker="SPEAKER_00"),
    Segment(1, 2.0, 3.5, "How are you?", speaker="SPEAKER_00"),
    Segment(2, 3.8, 5.0, "Fine, <thanks>.", speaker="SPEAKER_01"),
    Segment(3, 5.2, 6.0, "Good.", speaker="SPEAKER_00"),
)


def test_txt_names_a_speaker_where_they_start() -> None:
    assert render(DIARIZED, "txt") == (
        "SPEAKER_00: Hello there.\nHow are you?\nSPEAKER_01: Fine, <thanks>.\nSPEAKER_00: Good.\n"
    )


def test_srt_prefixes_every_cue_with_its_speaker() -> None:
    cues = list(srt.parse(render(DIARIZED, "srt")))
    assert [cue.content for cue in cues] == [
        "SPEAKER_00: Hello there.",
        "SPEAKER_00: How are you?",
        "SPEAKER_01: Fine, <thanks>.",
        "SPEAKER_00: Good.",
    ]


def test_vtt_uses_voice_tags() -> None:
    text = render(DIARIZED, "vtt")
    assert "<v SPEAKER_01>Fine, &lt;thanks&gt;." in text
    captions = webvtt.from_string(text).captions
    assert [caption.voice for caption in captions] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]


def test_rttm_gives_the_turns() -> None:
    assert render(DIARIZED, "rttm").splitlines() == [
        "SPEAKER audio 1 0.000 3.500 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER audio 1 3.800 1.200 <NA> <NA> SPEAKER_01 <NA> <NA>",
        "SPEAKER audio 1 5.200 0.800 <NA> <NA> SPEAKER_00 <NA> <NA>",
    ]
    assert render(PLAIN, "rttm") == ""


def test_json_lists_speakers_and_round_trips() -> None:
    data = json.loads(render(DIARIZED, "json"))
    assert data["speakers"] == [
        {"speaker": "SPEAKER_00", "duration": 4.3},
        {"speaker": "SPEAKER_01", "duration": 1.2},
    ]
    assert [segment["speaker"] for segment in data["segments"]] == [
        "SPEAKER_00", "SPEAKER_00", "SPEAKER_01", "SPEAKER_00"
    ]  # fmt: skip
    rebuilt = TranscriptionResult.from_stored(
        text=data["text"], language="en", language_probability=None, duration=6.0, segments=data["segments"]
    )
    assert rebuilt.segments == DIARIZED.segments
    assert "speakers" not in json.loads(render(PLAIN, "json"))
    assert "speaker" not in json.loads(render(PLAIN, "json"))["segments"][0]
