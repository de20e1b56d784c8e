"""A local live-stream server for the tests of stream URLs (a thread with ``http.server``).

- **HLS** (``/<name>.m3u8``, segments at ``/<name>/seg<i>.ts``): a fixture cut into ~2 s MPEG-TS segments of
  AAC by FFmpeg's own HLS muxer (through PyAV); the live playlist's window advances with time from the first
  time it is asked for, one segment per segment's duration, and says ``#EXT-X-ENDLIST`` once all are out.
  A segment's URI may be replaced (one pointing at an address the worker must refuse).
- **Icecast-like** (``/<name>.mp3``): a fixture encoded to MP3, looped without end, sent at the pace it
  plays, without a length (an endless response), optionally cut off after some seconds of audio and then
  answered ``503`` a few times before it is sent again from where it stopped (as Icecast's burst buffer
  would).

Every request is recorded (``requests``), and the server knows which of its streams are being listened to
now (``listeners``): what a test asserts on, rather than on the worker's word.
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import numpy as np

from cesar_common.transcription.audio import SAMPLE_RATE, decode_samples

__all__ = ["Hls", "Icecast", "StreamServer", "hls_segments", "mp3_bytes", "stream_server"]

BITRATE = 32000


def _pcm(path: Path, repeat: int) -> np.ndarray:
    samples = np.tile(decode_samples(path), repeat)
    return (samples * 32767).clip(-32768, 32767).astype("<i2")


def _encode(target: Any, fmt: str, codec: str, pcm: np.ndarray, options: dict[str, str]) -> None:
    with av.open(target, "w", format=fmt, options=options) as out:
        stream = out.add_stream(codec, rate=SAMPLE_RATE)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.bit_rate = BITRATE
        stream.layout = "mono"
        for start in range(0, len(pcm), 1152):
            piece = pcm[start : start + 1152]
            frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def mp3_bytes(path: Path) -> bytes:
    """``path`` as a constant-bitrate MP3 stream: frames only (no ID3 tag, no Xing header), so it loops."""
    buffer = io.BytesIO()
    _encode(buffer, "mp3", "libmp3lame", _pcm(path, 1), {"id3v2_version": "0", "write_xing": "0"})
    return buffer.getvalue()


def hls_segments(path: Path, *, repeat: int = 1) -> list[tuple[bytes, float]]:
    """``path`` (``repeat`` times over) cut into ~2 s MPEG-TS segments by FFmpeg's HLS muxer: (bytes,
    duration) each, in order."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        options = {"hls_time": "2", "hls_list_size": "0", "hls_segment_filename": str(folder / "seg%d.ts")}
        _encode(str(folder / "index.m3u8"), "hls", "aac", _pcm(path, repeat), options)
        lines = (folder / "index.m3u8").read_text().splitlines()
        durations = [float(line.split(":")[1].rstrip(",")) for line in lines if line.startswith("#EXTINF")]
        names = [line for line in lines if line and not line.startswith("#")]
        return [
            ((folder / name).read_bytes(), duration) for name, duration in zip(names, durations, strict=True)
        ]


@dataclass
class Hls:
    segments: list[tuple[bytes, float]]
    paced: bool = True  # False: every segment is out at once (a live playlist that does not grow)
    window: int = 4
    uri_of: Callable[[int], str | None] = lambda index: None  # another URI in a segment's place
    started: float | None = None

    def published(self) -> int:
        """Segments out so far (the first request starts the clock)."""
        if self.started is None:
            return 0
        if not self.paced:
            return len(self.segments)
        elapsed = time.monotonic() - self.started
        count, at = 1, 0.0
        for _data, duration in self.segments[:-1]:
            at += duration
            if elapsed < at:
                break
            count += 1
        return count

    def playlist(self, name: str) -> str:
        if self.started is None:
            self.started = time.monotonic()
        out = self.published()
        first = max(out - self.window, 0)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for index in range(first, out):
            lines += [
                f"#EXTINF:{self.segments[index][1]:.3f},",
                self.uri_of(index) or f"{name}/seg{index}.ts",
            ]
        if out == len(self.segments):
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


@dataclass
class Icecast:
    audio: bytes  # one loop of MP3 frames
    seconds: float  # how long one loop plays
    drop_after: float | None = None  # the first connection is cut off after this much audio...
    refusals: int = 0  # ... and this many tries after it are answered 503
    sent: int = 0  # bytes sent so far, over every connection
    dropped: bool = False

    @property
    def bytes_per_second(self) -> float:
        return len(self.audio) / self.seconds

    def sent_seconds(self) -> float:
        return self.sent / self.bytes_per_second


@dataclass
class StreamServer:
    host: str = "127.0.0.1"
    streams: dict[str, Hls | Icecast] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    listeners: dict[str, int] = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def listening(self, name: str) -> int:
        return self.listeners.get(name, 0)


def _handler(server: StreamServer) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # an endless body ends when the connection does

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            with lock:
                server.requests.append(self.path)
            path = self.path.lstrip("/")
            name, _, rest = path.partition("/")
            stream = server.streams.get(name.rsplit(".", 1)[0])
            if isinstance(stream, Hls) and name.endswith(".m3u8"):
                self._send(
                    200, stream.playlist(name.removesuffix(".m3u8")).encode(), "application/vnd.apple.mpegurl"
                )
            elif isinstance(stream, Hls) and rest.startswith("seg") and rest.endswith(".ts"):
                index = int(rest[3:-3])
                if index >= stream.published():
                    self._send(404, b"not yet", "text/plain")
                else:
                    self._send(200, stream.segments[index][0], "video/mp2t")
            elif isinstance(stream, Icecast) and name.endswith(".mp3"):
                self._icecast(name.removesuffix(".mp3"), stream)
            else:
                self._send(404, b"no such stream", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _icecast(self, name: str, stream: Icecast) -> None:
            if stream.dropped and stream.refusals > 0:
                stream.refusals -= 1
                self._send(503, b"the source is reconnecting", "text/plain")
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("icy-name", name)
            self.end_headers()
            with lock:
                server.listeners[name] = server.listening(name) + 1
            try:
                self._pace(stream)
            except OSError:  # the listener went away
                pass
            finally:
                with lock:
                    server.listeners[name] -= 1

        def _pace(self, stream: Icecast) -> None:
            started, sent_then = time.monotonic(), stream.sent
            piece = max(int(stream.bytes_per_second / 10), 1)  # 100 ms of audio a write
            while True:
                cut = (
                    stream.drop_after is not None
                    and stream.sent >= stream.drop_after * stream.bytes_per_second
                )
                if cut and not stream.dropped:
                    stream.dropped = True
                    return  # cut off: the connection closes
                offset = stream.sent % len(stream.audio)
                data = stream.audio[offset : offset + piece]
                self.wfile.write(data)
                self.wfile.flush()
                stream.sent += len(data)
                due = started + (stream.sent - sent_then) / stream.bytes_per_second
                time.sleep(max(due - time.monotonic(), 0.0))

    return Handler


@contextmanager
def stream_server(host: str = "127.0.0.1", **streams: Hls | Icecast) -> Iterator[StreamServer]:
    """A server on ``host`` (any address of 127/8 on Linux) serving ``streams`` by name."""
    server = StreamServer(host=host, streams=dict(streams))
    http = ThreadingHTTPServer((host, 0), _handler(server))
    http.daemon_threads = True
    server.port = int(http.server_address[1])
    thread = threading.Thread(target=http.serve_forever, name="stream-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        http.shutdown()
        http.server_close()
