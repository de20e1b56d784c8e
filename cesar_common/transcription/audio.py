"""Audio files through PyAV alone (never faster_whisper, so the API can use it): a cheap look at a file (is
there decodable audio, how long does it say it is) and decoding it to the samples Whisper listens to.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import av
    import numpy as np

from cesar_common.errors import AudioDecodeError, AudioTooLongError, UnsupportedMediaError

__all__ = [
    "SAMPLE_RATE",
    "DecodeStopped",
    "decode_samples",
    "head_as_wav",
    "longer_than",
    "probe_audio",
    "too_long",
    "wav_header",
]

#: below this a file's "audio" is not sound (and would resample to enormous lengths): telephones use 8000
MIN_SAMPLE_RATE = 2000
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
    import av

    opened = str(source) if isinstance(source, str | Path) else source
    try:
        with av.open(opened, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedMediaError(f"{name} has no audio stream: give a file that contains sound")
            stream = container.streams.audio[0]
            _check_sample_rate(stream, name)
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


def _check_sample_rate(stream: av.AudioStream, name: str) -> None:
    rate = int(stream.sample_rate or 0)
    if 0 < rate < MIN_SAMPLE_RATE:
        raise UnsupportedMediaError(
            f"{name} says its audio has {rate} samples a second: that is not sound Whisper can hear "
            f"(it needs at least {MIN_SAMPLE_RATE} Hz; telephone audio has 8000)"
        )


def _first_frame_decodes(container: av.container.InputContainer, stream: av.AudioStream) -> bool:
    import av

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
    import av

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


# --- decoding -------------------------------------------------------------------------------------------
SAMPLE_RATE = 16_000  # what Whisper listens at: decoding resamples and downmixes to it
#: input decoded between looks at the length cap and the stop check; as seconds of the file's own audio,
#: so that a file declaring an absurd sample rate cannot make one group huge once resampled
GROUP_SECONDS = 30.0
#: audio held beyond what a file's header declares (all of it, when the header declares no length) before
#: decoding goes on counting only (9.6 MB of 16-bit samples): a file that decodes to hours is then refused
#: at the cap holding no more than this, and one that ends within the cap is decoded again
HOLD_SECONDS = 300.0


class DecodeStopped(Exception):  # control flow: the caller asked to stop
    pass


def too_long(duration: float, max_seconds: float) -> AudioTooLongError:
    """The audio is ``duration`` seconds long, more than ``max_seconds``."""
    shown, cap = _length(duration), _length(max_seconds)
    if shown == cap:  # just over the cap: rounded, the two would read the same
        shown, cap = f"{duration:,.1f} seconds", f"{max_seconds:,.1f} seconds"
    return AudioTooLongError(
        f"the audio is {shown} long, more than this server accepts ({cap}, CESAR_MAX_AUDIO_SECONDS)",
        extra={"duration": round(duration, 3), "max_seconds": max_seconds},
    )


def longer_than(max_seconds: float) -> AudioTooLongError:
    """Decoding passed ``max_seconds`` and stopped there: how long the audio is, nobody knows."""
    return AudioTooLongError(
        f"the audio is more than {_length(max_seconds)} long, the most this server accepts "
        "(CESAR_MAX_AUDIO_SECONDS): decoding stopped there",
        extra={"duration": None, "max_seconds": max_seconds},
    )


def _length(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}".removesuffix(".0") + " seconds"
    return f"{seconds / 60:.1f}".removesuffix(".0") + " minutes"


def decode_samples(
    path: str | Path, *, max_seconds: float | None = None, should_stop: Callable[[], bool] | None = None
) -> np.ndarray:
    """The file's audio as 16 kHz mono float32 samples.

    A file whose header says it is longer than ``max_seconds`` is refused before decoding, and decoding
    stops as soon as more than that came out (AudioTooLongError): a 32 KB file that declares a 1 Hz sample
    rate, or a 24 KB FLAC that declares no length, would otherwise decode to hours. Past what the header
    declared (or past :data:`HOLD_SECONDS` when it declares nothing) decoding goes on counting only, holding
    no samples, and decodes the file again if it ends within the cap: a file that turns out too long is
    refused holding no more than that. ``should_stop`` is asked between groups of frames
    (:class:`DecodeStopped`), so a stop never waits for a whole long file to decode.
    """
    import numpy as np

    name = Path(path).name
    samples = _decode(path, name, max_seconds, should_stop, hold=None)
    if samples is None:  # it ended within the cap after all: now its length is known
        samples = _decode(path, name, max_seconds, should_stop, hold=max_seconds)
        assert samples is not None
    if samples.size == 0:
        raise AudioDecodeError(f"{name} holds no audio that could be decoded")
    return samples.astype(np.float32) / 32768.0


def _decode(
    path: str | Path,
    name: str,
    max_seconds: float | None,
    should_stop: Callable[[], bool] | None,
    *,
    hold: float | None,
) -> np.ndarray | None:
    """16-bit samples, or None when more than ``hold`` seconds (default: what the header declares, plus
    :data:`HOLD_SECONDS`) came out and decoding went on counting."""
    import av
    import numpy as np

    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pieces: list[np.ndarray] | None = []
    total = 0
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{name} has no audio stream: give a file that contains sound")
            stream = container.streams.audio[0]
            _check_sample_rate(stream, name)
            declared = _duration(container, stream)
            if max_seconds is not None and declared is not None and declared > max_seconds:
                raise too_long(declared, max_seconds)
            if hold is None and limit is not None:
                hold = (declared or 0.0) + HOLD_SECONDS
            kept = None if hold is None or limit is None else min(int(hold * SAMPLE_RATE), limit)
            group_samples = max(1, int(GROUP_SECONDS * (stream.sample_rate or SAMPLE_RATE)))
            for group in _groups(_frames(container, stream), group_samples):
                if should_stop is not None and should_stop():
                    raise DecodeStopped
                for frame in resampler.resample(group):
                    piece = frame.to_ndarray().reshape(-1)
                    total += piece.size
                    if pieces is not None:
                        pieces.append(piece)
                if limit is not None and total > limit:
                    raise longer_than(max_seconds or 0.0)
                if kept is not None and total > kept:
                    pieces = None  # from here on, count only
            for frame in resampler.resample(None):  # flush
                if pieces is not None:
                    pieces.append(frame.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(
            f"could not decode the audio of {name} ({_reason(exc)}): is it an audio file?"
        ) from exc
    finally:
        # No gc.collect() here (faster-whisper's decode_audio does one, for PyAV's resampler cycles of its
        # issue 390): with the locked PyAV the automatic collector frees them (RSS stays flat over repeated
        # decodes), and a full collection in a worker, whose heap holds the store and the model's Python
        # side, cost 40-50 ms a job (BENCHMARKS.md, per-job cost).
        del resampler
    if pieces is None:
        return None
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)


def _frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[av.AudioFrame]:
    """The stream's frames, skipping damaged packets as a player would."""
    import av

    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue
        yield frame


def _groups(frames: Iterator[av.AudioFrame], samples: int) -> Iterator[av.AudioFrame]:
    """Frames joined into groups of about ``samples`` input samples (fewer resampler calls)."""
    import av

    fifo = av.audio.fifo.AudioFifo()
    for frame in frames:
        frame.pts = None  # the FIFO checks timestamps: damaged files have gaps
        fifo.write(frame)
        if fifo.samples >= samples and (group := fifo.read()) is not None:
            yield group
    if fifo.samples > 0 and (rest := fifo.read()) is not None:
        yield rest


def wav_header(data_bytes: int, *, rate: int = SAMPLE_RATE, channels: int = 1, bits: int = 16) -> bytes:
    """A PCM WAV header for ``data_bytes`` of samples."""
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def head_as_wav(source: IO[bytes], seconds: float) -> bytes:
    """The first ``seconds`` of ``source``'s audio as a 16 kHz mono 16-bit WAV (AudioDecodeError if none):
    a language is told from the first 30 s, and a long file need not be stored for that."""
    import av

    name = _name_of(source)
    wanted = int(seconds * SAMPLE_RATE) * 2
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pcm = bytearray()
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{name} has no audio stream: give a file that contains sound")
            stream = container.streams.audio[0]
            _check_sample_rate(stream, name)
            for frame in _frames(container, stream):
                for out in resampler.resample(frame):
                    pcm += bytes(out.planes[0])[: out.samples * 2]
                if len(pcm) >= wanted:
                    break
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(f"{name} could not be decoded ({_reason(exc)})") from exc
    del pcm[wanted:]
    if not pcm:
        raise AudioDecodeError(f"{name} holds no audio that could be decoded")
    return wav_header(len(pcm)) + bytes(pcm)
