"""A live session's audio as it arrives: bytes in, 16 kHz mono float32 samples out, a piece at a time.

Two kinds of stream (``AudioFormat``): raw PCM (signed 16-bit little-endian mono at a declared rate),
converted as it comes (resampled by FFmpeg's resampler through PyAV, which keeps its state between pieces,
so pieces join without clicks); and a container FFmpeg reads (WAV, Ogg/Opus, WebM, MP3, FLAC...), demuxed
and decoded by PyAV on a thread of its own that reads the bytes as they are fed and blocks for more, so a
long session is decoded once, not again from its start at each piece. A container that needs to seek (an
MP4 whose index is at its end) cannot be read as it arrives: it fails with a clear error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cesar_common.errors import AudioDecodeError
from cesar_common.transcription.audio import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AudioStream", "ContainerStream", "PcmStream", "open_stream"]


class AudioStream(Protocol):
    def feed(self, data: bytes) -> None:
        """More of the stream's bytes."""

    def close(self) -> None:
        """No more bytes will come."""

    def take(self) -> np.ndarray:
        """The samples decoded since the last call (16 kHz mono float32); AudioDecodeError when the
        bytes cannot be decoded. After :meth:`close`, waits until everything fed is decoded."""


def open_stream(audio_format: str, sample_rate: int | None) -> AudioStream:
    """The stream for a session's ``audio_format`` (``pcm_s16le`` or ``container``)."""
    if audio_format == "pcm_s16le":
        return PcmStream(sample_rate or SAMPLE_RATE)
    return ContainerStream()


class PcmStream:
    """Raw signed 16-bit little-endian mono PCM at ``rate``."""

    def __init__(self, rate: int) -> None:
        import av

        self.rate = rate
        self._odd = b""  # a sample's first byte, when a piece ended between its two
        self._resampler = (
            None
            if rate == SAMPLE_RATE
            else av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        )
        self._pieces: list[np.ndarray] = []
        self._pts = 0

    def feed(self, data: bytes) -> None:
        import numpy as np

        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        if whole:
            self._pieces.append(self._convert(np.frombuffer(data[:whole], dtype="<i2")))

    def close(self) -> None:
        if self._resampler is not None:
            self._pieces.extend(_frame_samples(frame) for frame in self._resampler.resample(None))

    def take(self) -> np.ndarray:
        import numpy as np

        pieces, self._pieces = self._pieces, []
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces).astype(np.float32) / 32768.0

    def _convert(self, samples: np.ndarray) -> np.ndarray:
        import av
        import numpy as np

        if self._resampler is None:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += samples.size
        out = [_frame_samples(piece) for piece in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)


class ContainerStream:
    """The bytes of a file FFmpeg reads, decoded as they arrive by a thread of its own."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._buffer = bytearray()
        self._read = 0
        self._closed = False
        self._done = False
        self._error: AudioDecodeError | None = None
        self._pieces: list[np.ndarray] = []
        self._decoded = 0
        self._thread: threading.Thread | None = None

    def feed(self, data: bytes) -> None:
        with self._lock:
            self._buffer += data
            self._lock.notify_all()
        if self._thread is None and data:
            self._thread = threading.Thread(target=self._decode, name="cesar-live-demux", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def take(self) -> np.ndarray:
        import numpy as np

        with self._lock:
            if self._closed and self._thread is not None:
                self._lock.wait_for(lambda: self._done)
            pieces, self._pieces = self._pieces, []
            error = self._error
        if error is not None and not pieces:
            raise error
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces).astype(np.float32) / 32768.0

    # --- the decoding thread ----------------------------------------------------------------------
    def _read_bytes(self, size: int) -> bytes:
        """What PyAV reads: blocks until bytes arrive, b"" once the stream is over."""
        with self._lock:
            self._lock.wait_for(lambda: self._read < len(self._buffer) or self._closed)
            end = len(self._buffer) if size < 0 else min(len(self._buffer), self._read + size)
            data = bytes(self._buffer[self._read : end])
            self._read = end
            if self._read > 1 << 20:  # what was read is never read again: let it go
                del self._buffer[: self._read]
                self._read = 0
            return data

    def _decode(self) -> None:
        import av

        resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            with av.open(_Reader(self._read_bytes), mode="r", metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise AudioDecodeError("the live audio has no audio stream: send sound")
                packets = container.demux(container.streams.audio[0])
                while True:
                    try:
                        packet = next(packets)
                    except (StopIteration, av.error.InvalidDataError):
                        break  # the end, or bytes the demuxer cannot go on with (an MP4's)
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:
                        # a damaged packet (a stream URL that dropped mid-frame and went on from
                        # elsewhere) is skipped: decoding packet by packet, the next one decodes
                        continue
                    for frame in frames:
                        frame.pts = None
                        self._add([_frame_samples(out) for out in resampler.resample(frame)])
                self._add([_frame_samples(out) for out in resampler.resample(None)])
            if self._decoded == 0:
                raise AudioDecodeError(
                    "no audio could be decoded from the live stream (MP4 and M4A keep their index at the "
                    "end and cannot be read as they arrive: send Ogg/Opus, WebM, MP3, FLAC, WAV or raw PCM)"
                )
        except AudioDecodeError as exc:
            self._fail(exc)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self._fail(
                AudioDecodeError(f"could not decode the live audio ({reason}): send a format FFmpeg reads")
            )
        finally:
            with self._lock:
                self._done = True
                self._lock.notify_all()

    def _add(self, pieces: list[np.ndarray]) -> None:
        with self._lock:
            for piece in pieces:
                if piece.size:
                    self._pieces.append(piece)
                    self._decoded += piece.size

    def _fail(self, error: AudioDecodeError) -> None:
        with self._lock:
            self._error = error


class _Reader:
    """A read-only, unseekable file over :meth:`ContainerStream._read_bytes`, for ``av.open``."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read

    def read(self, size: int = -1) -> bytes:
        return self._read(size)

    def seekable(self) -> bool:
        return False


def _frame_samples(frame: object) -> np.ndarray:
    return frame.to_ndarray().reshape(-1)  # type: ignore[attr-defined,no-any-return]
