"""A cheap look at a media file: is there decodable audio in it, and how long is it?

Uses PyAV only (never faster_whisper), so the API can refuse a bad upload before creating a job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import av

from cesar_common.errors import UnsupportedMediaError

# Some containers start with packets that decode to nothing (priming, headers); look a little further.
_PACKETS_TO_TRY = 64


@dataclass(frozen=True, slots=True)
class AudioInfo:
    duration: float | None  # seconds, from the container; None when it does not say
    codec: str
    sample_rate: int
    channels: int


def probe_audio(source: str | Path | IO[bytes]) -> AudioInfo:
    """Check that ``source`` holds an audio stream whose first packets decode.

    Raises :class:`UnsupportedMediaError` for empty input, input without audio, or input
    PyAV cannot open or decode. A file-like source is left at the position it was given at.
    """
    name = _name_of(source)
    if _is_empty(source):
        raise UnsupportedMediaError(f"{name} is empty (0 bytes): there is no audio to transcribe")
    if isinstance(source, str | Path):
        return _probe(source, name)
    position = source.tell()
    try:
        return _probe(source, name)
    finally:
        source.seek(position)


def _probe(source: str | Path | IO[bytes], name: str) -> AudioInfo:
    opened = str(source) if isinstance(source, str | Path) else source
    try:
        with av.open(opened, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedMediaError(f"{name} has no audio stream: give a file that contains sound")
            stream = container.streams.audio[0]
            if not _first_frame_decodes(container, stream):
                raise UnsupportedMediaError(
                    f"{name}: its audio stream ({stream.codec_context.name}) holds no decodable audio"
                )
            return AudioInfo(
                duration=_duration(container, stream),
                codec=stream.codec_context.name,
                sample_rate=int(stream.sample_rate or 0),
                channels=int(stream.channels or 0),
            )
    except av.error.FFmpegError as exc:
        raise UnsupportedMediaError(
            f"{name} is not an audio or video file FFmpeg can read ({_reason(exc)}): "
            "use a common format such as wav, flac, mp3, m4a, ogg or webm"
        ) from exc


def _first_frame_decodes(container: av.container.InputContainer, stream: av.AudioStream) -> bool:
    for count, packet in enumerate(container.demux(stream)):
        if count >= _PACKETS_TO_TRY:
            return False
        try:
            if packet.decode():
                return True
        except av.error.InvalidDataError:
            continue  # a damaged packet; the next one may be fine, as full decoding would find
    return False


def _duration(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _reason(exc: av.error.FFmpegError) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _name_of(source: str | Path | IO[bytes]) -> str:
    if isinstance(source, str | Path):
        return str(source)
    return str(getattr(source, "name", "the upload"))


def _is_empty(source: str | Path | IO[bytes]) -> bool:
    if isinstance(source, str | Path):
        try:
            return os.path.getsize(source) == 0
        except OSError as exc:
            raise UnsupportedMediaError(f"cannot read {source}: {exc.strerror or exc}") from exc
    position = source.tell()
    try:
        source.seek(0, os.SEEK_END)
        return source.tell() == position
    finally:
        source.seek(position)
