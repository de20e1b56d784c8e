"""What ``cesar live`` does: stream audio to a Cesar server's ``GET /live`` WebSocket and print the
transcript as it is confirmed (the protocol is docs/live.md).

The parts, each testable without a terminal or a microphone:

- :func:`open_source` turns the command's SOURCE into an :class:`AudioSource`: a file or an input device
  decoded here with PyAV to 16 kHz mono ``pcm_s16le`` in frames of 100 ms, raw PCM from stdin, or stdin's
  bytes as they come (``container``: the server decodes them).
- :class:`LiveSession` runs one session: it starts it, sends the frames (at speaking pace with
  ``realtime``, by an injectable clock), hands the server's events to an :class:`Output`, and on a lost
  connection reconnects with backoff, resumes the session and sends again what the server lacks. Ctrl-C
  (:meth:`LiveSession.interrupt`, or a KeyboardInterrupt out of the frames) ends the audio: ``stop``, then
  the wait for ``final``.
- :class:`TerminalOutput` prints each confirmed segment as a line; on a terminal it also shows the tentative
  words on the current line, replaced as they change.
- :func:`run_live` ties them together for the command line: settings, Ctrl-C, ``-o``, one-line errors.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Protocol, TextIO, cast

from cesar.remote.client import (
    EXIT_JOB_FAILED,
    EXIT_REFUSED,
    EXIT_SERVER,
    EXIT_UNAUTHORIZED,
    EXIT_UNREACHABLE,
    RemoteError,
)
from cesar_common.choices import TRANSCRIPT_FORMATS
from cesar_common.errors import CesarError, InvalidInputError

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

__all__ = [
    "CONNECT_BACKOFF",
    "FRAME_SECONDS",
    "LIVE_FORMATS",
    "RECONNECT_BACKOFF",
    "RECONNECT_SECONDS",
    "SAMPLE_RATE",
    "AudioSource",
    "LiveSession",
    "Output",
    "TerminalOutput",
    "live_url",
    "open_source",
    "output_format",
    "run_live",
]

SAMPLE_RATE = 16000  # what a file or a device is resampled to here
FRAME_SECONDS = 0.1  # the audio in one binary message
#: what -o writes: no rttm, a live session has no speakers
LIVE_FORMATS = tuple(fmt for fmt in TRANSCRIPT_FORMATS if fmt != "rttm")

CONNECT_BACKOFF = (0.5, 1.0, 2.0, 4.0)  # the first connection: as the other client commands try a request
RECONNECT_BACKOFF = (0.5, 1.0, 2.0, 4.0, 5.0)  # a lost one: then every 5 s...
RECONNECT_SECONDS = 60.0  # ...for about this long
POLL_SECONDS = 0.1  # events are read at least this often while waiting (pacing, the final transcript)
RESEND_BYTES = 512 * 1024  # the audio sent again after a resume, in messages of this size (at most 1 MiB)
MAX_EVENT_BYTES = 16 * 1024 * 1024
CLOSE_SECONDS = 2.0  # after final the client has what it needs: the closing handshake waits no longer

#: close codes after which the session cannot go on (docs/live.md): the exit code each gives
_FATAL_CLOSES = {1002: EXIT_SERVER, 1003: EXIT_REFUSED, 1007: EXIT_REFUSED, 1008: EXIT_REFUSED,
                 1009: EXIT_REFUSED, 1010: EXIT_SERVER, 1011: EXIT_SERVER, 1013: EXIT_SERVER}  # fmt: skip
_CLOSE_MEANINGS = {
    1008: "the server refused the session",
    1009: "a message was too large for the server",
    1011: "the server failed",
    1013: "no worker took the session in time: try again later",
}
_CLEAR_LINE = "\r\x1b[2K"
#: a microphone through stdin, whatever devices PyAV's FFmpeg has (PulseAudio and PipeWire answer parec)
_PIPE_HINT = "parec --format=s16le --rate=16000 --channels=1 | cesar live - --input-format s16le"
_SYSTEM_ALSA = Path("/usr/share/alsa")


# --- the audio --------------------------------------------------------------------------------------------
@dataclass
class AudioSource:
    """Where the audio comes from: ``frames`` (bytes, in order), the start message's ``audio`` and, for
    PCM, its bytes a second (the pace ``realtime`` sends it at; None: not paced)."""

    frames: Iterable[bytes]
    audio: dict[str, Any]
    bytes_per_second: int | None = None
    realtime: bool = False
    close: Callable[[], None] = field(default=lambda: None)


def open_source(
    source: str,
    *,
    input_format: str | None = None,
    sample_rate: int | None = None,
    realtime: bool = False,
    stdin: IO[bytes] | None = None,
) -> AudioSource:
    """SOURCE as the command line names it: a file, ``-`` (stdin) or, with ``input_format``, an FFmpeg
    input device (``--input-format alsa default``). Opened now, so that a wrong one is refused before a
    session starts; an InvalidInputError says what is wrong, in one line."""
    if sample_rate is not None and input_format != "s16le":
        raise InvalidInputError("--sample-rate describes raw PCM: it goes with --input-format s16le")
    rate = sample_rate or SAMPLE_RATE
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        if input_format is None:  # any container FFmpeg reads: the server decodes it
            return AudioSource(_pieces(stream), {"format": "container"})
        if input_format == "s16le":
            size = _frame_bytes(rate)
            return AudioSource(
                _fixed_pieces(stream, size),
                {"format": "pcm_s16le", "sample_rate": rate},
                bytes_per_second=2 * rate,
                realtime=realtime,
            )
        return _decoded(stream, "stdin", input_format, rate, realtime=realtime)
    if input_format is None and not Path(source).is_file():
        kind = "a folder" if Path(source).is_dir() else "no such file"
        raise InvalidInputError(
            f"{source}: {kind} (a microphone is an FFmpeg input device: --input-format alsa default, "
            "or avfoundation :0 on macOS)"
        )
    device = input_format is not None and not Path(source).is_file()
    return _decoded(source, source, input_format, rate, realtime=realtime and not device)


def _frame_bytes(rate: int) -> int:
    return 2 * round(rate * FRAME_SECONDS)


def _pieces(stream: IO[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
    """The stream's bytes as they come."""
    read = getattr(stream, "read1", stream.read)
    while piece := read(size):
        yield piece


def _fixed_pieces(stream: IO[bytes], size: int) -> Iterator[bytes]:
    """The stream's bytes in pieces of ``size`` (the last one shorter)."""
    while piece := stream.read(size):
        yield piece


def _check_input_format(name: str) -> None:
    import av

    try:
        known = av.ContainerFormat(name).is_input
    except ValueError:
        known = False
    if not known:
        devices = sorted(
            device for device in ("alsa", "pulse", "oss", "jack", "avfoundation", "dshow", "sndio", "openal")
            if device in av.formats_available
        )  # fmt: skip
        raise InvalidInputError(
            f"this FFmpeg has no input device or format '{name}' (PyAV's own FFmpeg libraries; its audio "
            f"devices: {', '.join(devices) or 'none'}): name one of those, or pipe the audio in: "
            f"{_PIPE_HINT}"
        )


def _decoded(
    opened: str | IO[bytes], name: str, input_format: str | None, rate: int, *, realtime: bool
) -> AudioSource:
    """Decoded here with PyAV, resampled to 16 kHz mono ``pcm_s16le`` in 100 ms frames."""
    import av

    if input_format is not None:
        _check_input_format(input_format)
    device = isinstance(opened, str) and input_format is not None and not Path(opened).is_file()
    if device and input_format == "alsa" and (_SYSTEM_ALSA / "alsa.conf").is_file():
        # PyAV bundles its own ALSA library, which looks for its configuration where it was built: the
        # system's names the cards and "default"
        os.environ.setdefault("ALSA_CONFIG_DIR", str(_SYSTEM_ALSA))
    options = {"sample_rate": str(rate), "ch_layout": "mono"} if input_format == "s16le" else {}
    try:
        container = av.open(opened, mode="r", format=input_format, options=options, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        how = f" as {input_format}" if input_format else ""
        hint = ""
        if device:
            cards = (
                "list the cards with arecord -l and name one (plughw:1); " if input_format == "alsa" else ""
            )
            hint = f" ({cards}or pipe the audio in: {_PIPE_HINT})"
        raise InvalidInputError(f"cannot open {name}{how}: {_reason(exc)}{hint}") from None
    if not container.streams.audio:
        container.close()
        raise InvalidInputError(f"{name} has no audio stream: give a file or a device that makes sound")
    return AudioSource(
        _decode(container, name),
        {"format": "pcm_s16le", "sample_rate": SAMPLE_RATE},
        bytes_per_second=2 * SAMPLE_RATE,
        realtime=realtime,
        close=container.close,
    )


def _decode(container: Any, name: str) -> Iterator[bytes]:
    import av

    size = _frame_bytes(SAMPLE_RATE)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pending = bytearray()
    frames = container.decode(container.streams.audio[0])
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except av.error.InvalidDataError:
            continue  # a damaged packet: the next one may be fine
        except av.error.FFmpegError as exc:
            raise InvalidInputError(f"reading {name} failed: {_reason(exc)}") from None
        for piece in resampler.resample(frame):
            pending += piece.to_ndarray().tobytes()
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    for piece in resampler.resample(None):
        pending += piece.to_ndarray().tobytes()
    for start in range(0, len(pending), size):
        yield bytes(pending[start : start + size])


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc)


# --- what is shown ----------------------------------------------------------------------------------------
class Output(Protocol):
    """Where a session's events go."""

    def tentative(self, text: str) -> None:
        """The words still being spoken (replaces the previous tentative text)."""

    def segment(self, segment: Mapping[str, Any]) -> None:
        """A confirmed segment (each once, in order)."""

    def notice(self, message: str) -> None:
        """Something the person should know (a lost connection), not part of the transcript."""

    def close(self) -> None:
        """The session is over."""


class TerminalOutput:
    """Confirmed segments as lines on ``out``, each flushed as it comes; with ``tty``, the tentative words
    too, on the current line (``\\r``, clear the line, the words), which the next confirmed line replaces.
    Notices go to ``err``."""

    def __init__(
        self, out: TextIO, err: TextIO, *, tty: bool, width: Callable[[], int] | None = None
    ) -> None:
        self.out = out
        self.err = err
        self.tty = tty
        self.width = width or (lambda: shutil.get_terminal_size().columns)
        self._shown = False  # tentative words on the current line

    def tentative(self, text: str) -> None:
        if not self.tty:
            return
        words = " ".join(text.split())
        room = max(self.width() - 1, 10)  # never wraps: \r would clear only the last row
        if len(words) > room:
            words = "…" + words[-(room - 1) :]
        self.out.write(_CLEAR_LINE + words)
        self.out.flush()
        self._shown = bool(words)

    def segment(self, segment: Mapping[str, Any]) -> None:
        text = str(segment.get("text") or "").strip()
        if self.tty and self._shown:
            self.out.write(_CLEAR_LINE)
            self._shown = False
        if text:
            self.out.write(text + "\n")
        self.out.flush()

    def notice(self, message: str) -> None:
        self._clear()
        self.err.write(message + "\n")
        self.err.flush()

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.out.write(_CLEAR_LINE)
            self.out.flush()
            self._shown = False


# --- the session ------------------------------------------------------------------------------------------
def live_url(server: str) -> str:
    """The WebSocket address of a server's ``GET /live``: http -> ws, https -> wss."""
    base = server.rstrip("/")
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(plain):
            base = secure + base[len(plain) :]
    if not base.startswith(("ws://", "wss://")):
        base = "ws://" + base
    return base + "/live"


class _Lost(Exception):
    """The connection went away before the session was over: connect again and resume."""


class LiveSession:
    """One live session: start it, send the audio, relay the events, end it; :meth:`run` returns the final
    job JSON (or raises a RemoteError with the exit code to end with).

    ``connect``, ``clock`` and ``sleep`` are seams for tests (``websockets.sync.client.connect``,
    ``time.monotonic``, ``time.sleep`` by default)."""

    def __init__(
        self,
        url: str,
        start: Mapping[str, Any],
        source: AudioSource,
        output: Output,
        *,
        api_key: str | None = None,
        connect: Callable[..., ClientConnection] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        connect_backoff: tuple[float, ...] | None = None,
        reconnect_backoff: tuple[float, ...] | None = None,
        reconnect_seconds: float | None = None,
    ) -> None:
        self.url = url
        self.start = {**start, "type": "start", "audio": source.audio}
        self.source = source
        self.output = output
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._connect = connect
        self.clock = clock
        self.sleep = sleep
        self.connect_backoff = CONNECT_BACKOFF if connect_backoff is None else connect_backoff
        self.reconnect_backoff = RECONNECT_BACKOFF if reconnect_backoff is None else reconnect_backoff
        self.reconnect_seconds = RECONNECT_SECONDS if reconnect_seconds is None else reconnect_seconds
        self.session_id: str | None = None
        self.last_segment = -1  # the id of the last segment received
        self.sent = bytearray()  # every byte of audio sent in this session, for a resume
        self.final: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.stopped = False  # {"type": "stop"} sent (sent again after a resume)
        self.resumes = 0
        self._ws: ClientConnection | None = None
        self._stack: ExitStack | None = None
        self._stop_requested = False
        self._reading = False  # waiting for the audio source (or for its pace): Ctrl-C stops it at once

    # --- the public face ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """The whole session, until the ``final`` event; the final job JSON."""
        source_error: CesarError | None = None
        try:
            self._open()
            try:
                self._send_audio()
            except CesarError as exc:  # the source failed (a device unplugged): keep what was said
                if isinstance(exc, RemoteError):
                    raise
                source_error = exc
            self._stop()
            self._await_final()
        finally:
            self.output.close()
            self._close()
        assert self.final is not None
        if self.error is not None:  # error, then final with the failed job (unsupported_media)
            raise RemoteError(_error_text(self.error), EXIT_JOB_FAILED)
        status = self.final.get("status")
        if status not in (None, "completed"):
            reason = self.final.get("error_message")
            raise RemoteError(
                f"the session ended {status}" + (f": {reason}" if reason else ""), EXIT_JOB_FAILED
            )
        if source_error is not None:
            raise source_error
        return self.final

    @property
    def job_id(self) -> str | None:
        return str((self.final or {}).get("id") or self.session_id or "") or None

    def interrupt(self) -> None:
        """Ctrl-C (from a SIGINT handler): the first ends the audio (at once while waiting for it, else
        after the message being sent); a second one aborts, as does one before the session started or
        after the audio ended (nothing left to stop)."""
        if self._stop_requested or self.stopped or self.session_id is None:
            raise KeyboardInterrupt
        self._stop_requested = True
        if self._reading:
            raise KeyboardInterrupt  # out of the source's read, caught by _send_audio

    # --- the connection ----------------------------------------------------------------------------------
    def _open(self) -> None:
        """Connect (again) and start or resume the session; send what the server lacks."""
        first = self.session_id is None
        backoff = self.connect_backoff if first else self.reconnect_backoff
        began = self.clock()
        attempt = 0
        while True:
            try:
                self._try_open()
                return
            except (_Lost, OSError, TimeoutError) as exc:
                failure: Exception = exc
            if first and attempt >= len(backoff):
                raise RemoteError(
                    f"cannot reach the Cesar server at {self.url} after {attempt + 1} tries: {failure} "
                    "(is it running? --server or CESAR_SERVER names it)",
                    EXIT_UNREACHABLE,
                )
            if not first and self.clock() - began >= self.reconnect_seconds:
                raise RemoteError(
                    f"lost the Cesar server at {self.url} for {self.reconnect_seconds:.0f} s: {failure} "
                    f"(the session {self.session_id} can be fetched with cesar remote transcript once done)",
                    EXIT_UNREACHABLE,
                )
            self.sleep(backoff[min(attempt, len(backoff) - 1)])
            attempt += 1

    def _try_open(self) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

        connect = self._connect
        if connect is None:
            from websockets.sync.client import connect as websockets_connect

            connect = cast("Callable[..., ClientConnection]", websockets_connect)
        self._close()
        stack = ExitStack()  # websockets wants its connections entered as context managers
        try:
            ws = stack.enter_context(
                connect(
                    self.url,
                    additional_headers=self.headers,
                    compression=None,  # PCM does not deflate: the CPU for nothing
                    max_size=MAX_EVENT_BYTES,
                    close_timeout=CLOSE_SECONDS,
                )
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (502, 503, 504):
                raise _Lost(f"the server answered {status}") from None
            raise _refusal(status, self.url) from None
        except InvalidHandshake as exc:
            raise _Lost(str(exc)) from None
        except InvalidURI:
            raise RemoteError(f"{self.url} is not a server's address: check --server", EXIT_REFUSED) from None
        self._ws, self._stack = ws, stack
        try:
            if self.session_id is None:
                ws.send(json.dumps(self.start))
            else:
                resume = {"type": "resume", "session_id": self.session_id, "last_segment": self.last_segment}
                ws.send(json.dumps(resume))
            answer = self._session_answer(ws)
            self.session_id = str(answer["session_id"])
            stored = min(max(int(answer.get("audio_bytes") or 0), 0), len(self.sent))
            for begin in range(stored, len(self.sent), RESEND_BYTES):
                ws.send(bytes(self.sent[begin : begin + RESEND_BYTES]))
            if self.stopped:
                ws.send(json.dumps({"type": "stop"}))
        except ConnectionClosed as exc:
            self._check_closed(exc)  # raises what ends the session; else it was lost
            raise _Lost(_close_text(exc)) from None

    def _close(self) -> None:
        stack, self._stack, self._ws = self._stack, None, None
        if stack is not None:
            stack.close()

    def _session_answer(self, ws: ClientConnection) -> dict[str, Any]:
        """The ``session`` event (an ``error`` first: the session cannot start, and the close says why)."""
        while True:
            event = self._event(ws.recv())
            if event.get("type") == "session":
                return event
            self._handle(event)

    def _lost(self, exc: Exception) -> None:
        """The connection closed: read what it still held, then end or resume the session."""
        from websockets.exceptions import ConnectionClosed

        if isinstance(exc, ConnectionClosed):
            self._drain(closing=True)
            if self.final is not None:
                return
            self._check_closed(exc)
        self._close()
        self.resumes += 1
        self.output.notice(f"lost the connection to the server ({_close_text(exc)}): reconnecting")
        self._open()

    def _check_closed(self, exc: Any) -> None:
        """After an ``error`` or a close that ends the session: the RemoteError to end with."""
        code = exc.rcvd.code if getattr(exc, "rcvd", None) is not None else None
        if self.error is not None and self.final is None:
            raise RemoteError(_error_text(self.error), _FATAL_CLOSES.get(code or 0, EXIT_SERVER))
        if code in _FATAL_CLOSES:
            reason = exc.rcvd.reason or _CLOSE_MEANINGS.get(code, "the server closed the session")
            raise RemoteError(f"{reason} (close code {code})", _FATAL_CLOSES[code])

    # --- sending -------------------------------------------------------------------------------------
    def _send_audio(self) -> None:
        frames = iter(self.source.frames)
        pace = self.source.bytes_per_second if self.source.realtime else None
        began, new_bytes = self.clock(), 0
        while not self._stop_requested and self.final is None:  # final: the server ended it (its limit)
            try:
                self._reading = True  # inside the try: Ctrl-C's KeyboardInterrupt lands in it
                frame = next(frames, None)
            except KeyboardInterrupt:
                self._stop_requested = True
                return
            finally:
                self._reading = False
            if frame is None:
                return
            if pace:
                new_bytes += len(frame)
                if not self._wait_until(began + new_bytes / pace):  # sent once it has been "spoken"
                    return
            self._send(frame)

    def _send(self, frame: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        self.sent += frame  # before sending: a resume sends it again if this send is lost
        try:
            assert self._ws is not None
            self._ws.send(frame)
        except ConnectionClosed as exc:
            self._lost(exc)
            return
        self._drain()

    def _stop(self) -> None:
        from websockets.exceptions import ConnectionClosed

        self.stopped = True
        if self.final is not None:
            return
        try:
            assert self._ws is not None
            self._ws.send(json.dumps({"type": "stop"}))
        except ConnectionClosed as exc:
            self._lost(exc)  # a resume sends the stop again

    def _wait_until(self, deadline: float) -> bool:
        """Read events until ``deadline``; False when Ctrl-C ended the audio meanwhile."""
        while (left := deadline - self.clock()) > 0:
            try:
                self._reading = True
                self.sleep(min(left, POLL_SECONDS))
            except KeyboardInterrupt:
                self._stop_requested = True
            finally:
                self._reading = False
            if self._stop_requested:
                return False
            self._drain()
        return True

    # --- receiving -----------------------------------------------------------------------------------
    def _drain(self, *, closing: bool = False) -> None:
        """Handle the events already received, without waiting."""
        from websockets.exceptions import ConnectionClosed

        while self._ws is not None:
            try:
                message = self._ws.recv(timeout=0)
            except TimeoutError:
                return
            except ConnectionClosed as exc:
                if closing:
                    return
                self._lost(exc)
                return
            self._handle(self._event(message))

    def _await_final(self) -> None:
        from websockets.exceptions import ConnectionClosed

        while self.final is None:
            assert self._ws is not None
            try:
                message = self._ws.recv(timeout=POLL_SECONDS * 5)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                self._lost(exc)
                continue
            self._handle(self._event(message))

    @staticmethod
    def _event(message: str | bytes) -> dict[str, Any]:
        try:
            event = json.loads(message)
        except ValueError:
            return {}
        return event if isinstance(event, dict) else {}

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "tentative":
            self.output.tentative(str(event.get("text") or ""))
        elif kind == "segment":
            number = int(event.get("id", self.last_segment + 1))
            if number > self.last_segment:  # each once, also when a resume sends it again
                self.last_segment = number
                self.output.segment(event)
        elif kind == "error":
            self.error = event
        elif kind == "final":
            self.final = dict(event.get("job") or {})


def _error_text(event: Mapping[str, Any]) -> str:
    message = str(event.get("message") or "the session failed")
    return f"{message} ({event['code']})" if event.get("code") else message


def _close_text(exc: Exception) -> str:
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is None:
        return str(exc) or type(exc).__name__
    return f"close code {rcvd.code}" + (f": {rcvd.reason}" if rcvd.reason else "")


def _refusal(status: int, url: str) -> RemoteError:
    if status in (401, 403):  # a WebSocket refused before its handshake completes is answered 403
        return RemoteError(
            f"the server wants an API key ({status}: set CESAR_API_KEY or --api-key to the server's key)",
            EXIT_UNAUTHORIZED,
            status=status,
        )
    if status == 404:
        return RemoteError(
            f"the server at {url} has no live transcription (404: it is older than cesar live)",
            EXIT_REFUSED,
            status=404,
        )
    code = EXIT_SERVER if status >= 500 else EXIT_REFUSED
    return RemoteError(f"the server refused the live session ({status})", code, status=status)


# --- the command ------------------------------------------------------------------------------------------
def output_format(output: Path | None, fmt: str | None) -> str | None:
    """The format ``-o`` is written in: ``-f``, else the file's extension; None without ``-o``."""
    if output is None:
        if fmt is not None:
            raise InvalidInputError("-f/--format is the format of -o FILE: give -o too")
        return None
    chosen = (fmt or output.suffix.lstrip(".")).lower()
    if chosen not in LIVE_FORMATS:
        raise InvalidInputError(
            f"-o {output}: name the format with the extension ({', '.join(LIVE_FORMATS)}) or -f"
        )
    return chosen


@contextmanager
def _ctrl_c(session: LiveSession) -> Iterator[None]:
    """SIGINT calls :meth:`LiveSession.interrupt` while the session runs (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        session.interrupt()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_live(
    source: str,
    *,
    server: str | None,
    api_key: str | None,
    start: Mapping[str, Any],
    realtime: bool,
    input_format: str | None,
    sample_rate: int | None,
    output: Path | None,
    fmt: str | None,
    verbose: bool,
    stdin: IO[bytes] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    fetch_transcript: Callable[[str, str], str] | None = None,
) -> None:
    """``cesar live``: errors end it with one line and the exit code docs/live.md gives (via
    :func:`cesar_common.exits.one_line_errors`)."""
    from cesar.remote.batch import write_atomically
    from cesar.remote.client import RemoteAPI
    from cesar_common.exits import one_line_errors
    from cesar_common.settings import get_settings

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    with one_line_errors(verbose=verbose):
        settings = get_settings(server=server, api_key=api_key)
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        written_as = output_format(output, fmt)
        audio = open_source(
            source, input_format=input_format, sample_rate=sample_rate, realtime=realtime, stdin=stdin
        )
        start = {name: value for name, value in start.items() if value is not None}
        printer = TerminalOutput(out, err, tty=out.isatty())
        session = LiveSession(live_url(settings.server), start, audio, printer, api_key=key)
        try:
            with _ctrl_c(session):
                session.run()
        finally:
            audio.close()
        if output is not None and written_as is not None and session.job_id is not None:
            if fetch_transcript is None:
                api = RemoteAPI(settings.server, key)
                try:
                    text = api.transcript(session.job_id, written_as)
                finally:
                    api.close()
            else:
                text = fetch_transcript(session.job_id, written_as)
            write_atomically(output, text)
