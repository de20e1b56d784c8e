"""Transcript output formats (txt, srt, vtt, json, tsv, rttm), shared by the CLI and the API.

A diarized transcript names its speakers: txt where the speaker changes, srt on every cue, vtt in voice tags,
json on segments and words (and their speaking times); rttm is only the speaker turns (NIST's format).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cesar_common.choices import TRANSCRIPT_FORMATS, TranscriptFormat
from cesar_common.errors import InvalidInputError
from cesar_common.transcription.result import TranscriptionResult

__all__ = ["FORMATS", "format_for_path", "render"]

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
    "rttm": "text/plain",
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


def _cues(result: TranscriptionResult) -> Iterator[tuple[float, float, str, str | None]]:
    """Non-empty segments as cues (start, end, text, speaker) whose times never go backwards and never
    overlap."""
    previous_end = 0.0
    for segment in result.segments:
        text = _one_line(segment.text).replace("-->", "->")
        if not text:
            continue
        start = max(float(segment.start), previous_end, 0.0)
        end = max(float(segment.end), start + _MIN_CUE_SECONDS)
        previous_end = end
        yield start, end, text, segment.speaker


def _said_by(speaker: str | None, text: str) -> str:
    return text if speaker is None else f"{speaker}: {text}"


def _timestamp(seconds: float, marker: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{marker}{millis:03d}"


def _txt(result: TranscriptionResult) -> str:
    lines = []
    speaker = None
    for segment in result.segments:
        line = _one_line(segment.text)
        if not line:
            continue
        # a speaker's name where they start talking, not on every line
        lines.append(line if segment.speaker in (None, speaker) else _said_by(segment.speaker, line))
        speaker = segment.speaker
    if not lines and result.text.strip():
        lines = [result.text.strip()]
    return "".join(f"{line}\n" for line in lines)


def _srt(result: TranscriptionResult) -> str:
    blocks = [
        f"{index}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{_said_by(speaker, text)}\n"
        for index, (start, end, text, speaker) in enumerate(_cues(result), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _voice(speaker: str | None, text: str) -> str:
    return text if speaker is None else f"<v {_vtt_escape(speaker)}>{text}"


def _vtt(result: TranscriptionResult) -> str:
    blocks = [
        f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{_voice(speaker, _vtt_escape(text))}\n"
        for start, end, text, speaker in _cues(result)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _json(result: TranscriptionResult) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"


def _tsv(result: TranscriptionResult) -> str:
    # Whisper's layout: integer milliseconds, then the text with tabs and newlines flattened
    rows = ["start\tend\ttext"]
    rows += [f"{round(start * 1000)}\t{round(end * 1000)}\t{text}" for start, end, text, _ in _cues(result)]
    return "\n".join(rows) + "\n"


def _rttm(result: TranscriptionResult) -> str:
    """One line per speaker turn (consecutive segments of one speaker joined): ``SPEAKER <file> 1 <start>
    <duration> <NA> <NA> <speaker> <NA> <NA>``; empty when the transcript was not diarized."""
    turns: list[list[float | str]] = []
    for segment in result.segments:
        if segment.speaker is None or not segment.text.strip():
            continue
        if turns and turns[-1][2] == segment.speaker:
            turns[-1][1] = max(float(turns[-1][1]), segment.end)
        else:
            turns.append([segment.start, segment.end, segment.speaker])
    return "".join(
        f"SPEAKER {_RTTM_FILE} 1 {float(start):.3f} {max(float(end) - float(start), 0.0):.3f} "
        f"<NA> <NA> {_rttm_name(str(speaker))} <NA> <NA>\n"
        for start, end, speaker in turns
    )


def _rttm_name(speaker: str) -> str:
    """A speaker's name as one RTTM field: fields are separated by spaces (``Diane Smith``:
    ``Diane_Smith``)."""
    return "_".join(speaker.split()) or "<NA>"


# RTTM names the recording on each line; a transcript does not know its file's name
_RTTM_FILE = "audio"


_WRITERS: dict[TranscriptFormat, Callable[[TranscriptionResult], str]] = {
    "txt": _txt,
    "srt": _srt,
    "vtt": _vtt,
    "json": _json,
    "tsv": _tsv,
    "rttm": _rttm,
}
