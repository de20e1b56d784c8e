"""A stored job's transcript as a :class:`TranscriptionResult`, for every route that renders one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from cesar_common.db.records import JobRecord
from cesar_common.transcription.result import TranscriptionResult

__all__ = ["completed_transcript", "partial_transcript"]


def completed_transcript(record: JobRecord, gaps: Sequence[dict[str, Any]] = ()) -> TranscriptionResult:
    """The transcript of a completed job, read ``with_segments`` (a live stream URL's ``gaps`` with it)."""
    decoding = record.decoding
    run: dict[str, Any] = {} if decoding is None else {"model": record.model, **asdict(decoding)}
    return TranscriptionResult.from_stored(
        text=record.result_text,
        language=record.detected_language,
        language_probability=record.language_probability,
        duration=record.duration,
        segments=record.segments,
        gaps=gaps,
        **run,
    )


def partial_transcript(
    segments: list[dict[str, Any]], gaps: Sequence[dict[str, Any]] = ()
) -> TranscriptionResult:
    """What a running job has decoded so far, from its live segments (and a live stream URL's ``gaps``)."""
    return TranscriptionResult.from_stored(
        text=" ".join(str(segment.get("text", "")).strip() for segment in segments),
        language=None,
        language_probability=None,
        duration=max((float(segment["end"]) for segment in segments), default=0.0),
        segments=segments,
        gaps=gaps,
    )
