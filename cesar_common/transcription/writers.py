"""Transcript output formats (txt, srt, vtt, json, tsv), shared by the CLI and the API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cesar_common.choices import TRANSCRIPT_FORMATS, TranscriptFormat
from cesar_common.errors import InvalidInputError
from cesar_common.transcription.result import TranscriptionResult

# Whisper may emit zero-length or slightly overlapping segments; cues get at least this long.
_MIN_CUE_SECONDS = 0.001


@dataclass(frozen=True, slots=True)
class OutputFormat:
    name: str
    media_type: str
    extension: str


# text/* types get "; charset=utf-8" from the web framework; others say it themselves
_MEDIA_TYPES: dict[TranscriptFormat, str] = {
    "txt": "text/plain",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt",
    "json": "application/json",
    "tsv": "text/tab-separated-values",
}
#: every format of :data:`cesar_common.choices.TRANSCRIPT_FORMATS`, by name
FORMATS: dict[str, OutputFormat] = {
    name: OutputFormat(name, _MEDIA_TYPES[name], f".{name}") for name in TRANSCRIPT_FORMATS
}


def format_for_path(path: str | Path) -> str | None:
    """The format a file name's extension asks for, or None when it names none we write."""
    suffix = Path(path).suffix.lower()
    return next((fmt.name for fmt in FORMATS.values() if fmt.extension == suffix), None)


def render(result: TranscriptionResult, fmt: str) -> str:
    """The transcript in ``fmt`` (one of :data:`FORMATS`)."""
    try:
        writer = _WRITERS[fmt.lower()]  # type: ignore[index]
    except KeyError:
        raise InvalidInputError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}") from None
    return writer(result)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cues(result: TranscriptionResult) -> Iterator[tuple[float, float, str]]:
    """Non-empty segments as cues whose times never go backwards and never overlap."""
    previous_end = 0.0
    for segment in result.segments:
        text = _one_line(segment.text).replace("-->", "->")
        if not text:
            continue
        start = max(float(segment.start), previous_end, 0.0)
        end = max(float(segment.end), start + _MIN_CUE_SECONDS)
        previous_end = end
        yield start, end, text


def _timestamp(seconds: float, marker: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{marker}{millis:03d}"


def _txt(result: TranscriptionResult) -> str:
    lines = [_one_line(segment.text) for segment in result.segments]
    lines = [line for line in lines if line]
    if not lines and result.text.strip():
        lines = [result.text.strip()]
    return "".join(f"{line}\n" for line in lines)


def _srt(result: TranscriptionResult) -> str:
    blocks = [
        f"{index}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n"
        for index, (start, end, text) in enumerate(_cues(result), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt(result: TranscriptionResult) -> str:
    blocks = [
        f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{_vtt_escape(text)}\n"
        for start, end, text in _cues(result)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _json(result: TranscriptionResult) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"


def _tsv(result: TranscriptionResult) -> str:
    # Whisper's layout: integer milliseconds, then the text with tabs and newlines flattened
    rows = ["start\tend\ttext"]
    rows += [f"{round(start * 1000)}\t{round(end * 1000)}\t{text}" for start, end, text in _cues(result)]
    return "\n".join(rows) + "\n"


_WRITERS: dict[TranscriptFormat, Callable[[TranscriptionResult], str]] = {
    "txt": _txt,
    "srt": _srt,
    "vtt": _vtt,
    "json": _json,
    "tsv": _tsv,
}
