"""A live stream's gaps (where its URL dropped) are in the JSON transcript and nowhere else."""

from __future__ import annotations

import json

from cesar_common.transcription.result import TranscriptionResult
from cesar_common.transcription.writers import render

SEGMENTS = [{"id": 0, "start": 0.0, "end": 2.5, "text": " The quick brown fox."}]
GAP = {"at": 2.5, "seconds": 3.75, "reason": "radio.example closed the stream"}


def stored(gaps: list[dict[str, object]] | None = None) -> TranscriptionResult:
    return TranscriptionResult.from_stored(
        text="The quick brown fox.",
        language="en",
        language_probability=1.0,
        duration=2.5,
        segments=SEGMENTS,
        gaps=gaps or (),
    )


def test_the_json_transcript_lists_the_gaps() -> None:
    assert json.loads(render(stored([GAP]), "json"))["gaps"] == [GAP]


def test_without_gaps_the_json_transcript_is_as_it_was() -> None:
    assert "gaps" not in json.loads(render(stored(), "json"))


def test_the_other_formats_are_the_same_with_gaps() -> None:
    for fmt in ("txt", "srt", "vtt", "tsv"):
        assert render(stored([GAP]), fmt) == render(stored(), fmt)
