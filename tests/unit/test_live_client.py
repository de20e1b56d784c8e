"""`cesar live` against a fake `GET /live` server (docs/live.md) in a thread: the start message, every PCM
byte sent once and in order, the lines printed (once each, flushed as they come; the tentative words on a
terminal), a dropped connection resumed, errors as one line and an exit code, Ctrl-C, -o, the pace."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from http import HTTPStatus
from pathlib import Path
from typing import Any

import av
import pytest
from click.testing import CliRunner
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as websockets_connect
from websockets.sync.server import ServerConnection, serve

from cesar import live_client
from cesar.cli import cli
from cesar.live_client import (
    AudioSource,
    LiveSession,
    TerminalOutput,
    live_url,
    open_source,
    output_format,
)
from cesar.remote.client import RemoteError
from cesar_common.errors import InvalidInputError
from cesar_common.settings import reset_settings_cache

SPEECH = Path(__file__).parents[1] / "fixtures" / "audio" / "speech_en.wav"
EVERY = 32000  # the fake server confirms a segment per second of 16 kHz PCM
TRANSCRIPT = "1\n00:00:00,000 --> 00:00:01,000\nsegment 0\n"


def decoded_pcm(path: Path) -> bytes:
    """The file as 16 kHz mono s16, decoded apart from the client's own code."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    pieces = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            pieces += [piece.to_ndarray().tobytes() for piece in resampler.resample(frame)]
    pieces += [piece.to_ndarray().tobytes() for piece in resampler.resample(None)]
    return b"".join(pieces)


PCM = decoded_pcm(SPEECH)


class FakeLive:
    """A `/live` server as docs/live.md says: ``session``; per ``EVERY`` bytes stored a ``tentative`` and a
    ``segment``; on ``stop`` a segment for the rest, ``final`` and close 1000.

    ``drop_at``: once that many bytes are stored, it keeps only ``keep`` of them and drops the connection
    (no close frame); ``resend_all``: a resume gets every segment again, not only those after
    ``last_segment``; ``error``: the first message is answered with this error event and ``close_code``;
    ``failed``: stop gets an ``unsupported_media`` error, then ``final`` with a failed job;
    ``interrupt_on_stop``: stop sends this process SIGINT (Ctrl-C while waiting) and no ``final``;
    ``stay_gone``: after the drop, every connection is dropped at once; ``end_at``: the session ends
    itself (``final``, close 1000) once that many bytes are stored, as at ``CESAR_LIVE_MAX_SECONDS``."""

    def __init__(
        self,
        *,
        drop_at: int | None = None,
        keep: int | None = None,
        resend_all: bool = False,
        error: dict[str, str] | None = None,
        close_code: int = 1000,
        failed: bool = False,
        interrupt_on_stop: bool = False,
        stay_gone: bool = False,
        end_at: int | None = None,
        api_key: str | None = None,
    ) -> None:
        self.end_at = end_at
        self.stay_gone = stay_gone
        self.drop_at = drop_at
        self.keep = keep
        self.resend_all = resend_all
        self.error = error
        self.close_code = close_code
        self.failed = failed
        self.interrupt_on_stop = interrupt_on_stop
        self.api_key = api_key
        self.messages: list[dict[str, Any]] = []  # the clients' text messages, in order
        self.audio = bytearray()  # what the session stored
        self.binary_sizes: list[int] = []
        self.segments: list[dict[str, Any]] = []
        self.connections = 0
        self.authorization: list[str | None] = []
        self.fetched: list[str] = []
        self.dropped = False

    # --- HTTP beside the socket: the transcript, the API key ----------------------------------------------
    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/jobs/"):
            self.fetched.append(request.path)
            return connection.respond(HTTPStatus.OK, TRANSCRIPT)
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized")
        return None

    # --- the socket ----------------------------------------------------------------------------------------
    def handler(self, ws: ServerConnection) -> None:
        with suppress(ConnectionClosed):  # the client went away: what a test looks at is recorded
            self._serve(ws)

    def _serve(self, ws: ServerConnection) -> None:
        self.connections += 1
        if self.stay_gone and self.dropped:
            ws.socket.shutdown(socket.SHUT_RDWR)
            return
        self.authorization.append(ws.request.headers.get("Authorization") if ws.request else None)
        first = json.loads(ws.recv())
        self.messages.append(first)
        if self.error is not None:
            ws.send(json.dumps({"type": "error", **self.error}))
            ws.close(self.close_code, self.error.get("code", ""))
            return
        ws.send(
            json.dumps({"type": "session", "session_id": "s1", "audio_bytes": len(self.audio), "job": {}})
        )
        if first["type"] == "resume":
            after = -1 if self.resend_all else first.get("last_segment", -1)
            for segment in self.segments[after + 1 :]:
                ws.send(json.dumps(segment))
        for message in ws:
            if isinstance(message, bytes):
                self.binary_sizes.append(len(message))
                self.audio += message
                while len(self.audio) >= (len(self.segments) + 1) * EVERY:
                    self._confirm(ws, len(self.audio))
                if self.drop_at is not None and not self.dropped and len(self.audio) >= self.drop_at:
                    self.dropped = True
                    del self.audio[self.keep if self.keep is not None else len(self.audio) :]
                    ws.socket.shutdown(socket.SHUT_RDWR)  # gone, without a close frame
                    return
                if self.end_at is not None and len(self.audio) >= self.end_at:
                    ws.send(json.dumps({"type": "final", "job": {"id": "s1", "status": "completed"}}))
                    ws.close()
                    return
                continue
            event = json.loads(message)
            self.messages.append(event)
            if event["type"] == "stop":
                self._stop(ws)
                return

    def _confirm(self, ws: ServerConnection, stored: int) -> None:
        number = len(self.segments)
        ws.send(json.dumps({"type": "tentative", "text": f"segment {number} tentative", "start": number}))
        segment = {
            "type": "segment",
            "id": number,
            "start": number * EVERY / 32000,
            "end": min(stored, (number + 1) * EVERY) / 32000,
            "text": f" segment {number}",
            "words": [],
        }
        self.segments.append(segment)
        ws.send(json.dumps(segment))

    def _stop(self, ws: ServerConnection) -> None:
        if self.interrupt_on_stop:
            os.kill(os.getpid(), signal.SIGINT)
            ws.recv()  # until the client goes
            return
        if self.failed:
            ws.send(json.dumps({"type": "error", "code": "unsupported_media", "message": "not audio"}))
            ws.send(json.dumps({"type": "final", "job": {"id": "s1", "status": "error"}}))
            ws.close()
            return
        if len(self.audio) > len(self.segments) * EVERY:
            self._confirm(ws, len(self.audio))
        ws.send(json.dumps({"type": "final", "job": {"id": "s1", "status": "completed"}}))
        ws.close()


@contextmanager
def serving(fake: FakeLive) -> Iterator[str]:
    # max_queue=None: reading on while the handler is done, it sees the client's closing frame at once
    server = serve(fake.handler, "127.0.0.1", 0, process_request=fake.http, compression=None, max_queue=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(10)


class Recorded:
    """An Output that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def tentative(self, text: str) -> None:
        self.events.append(("tentative", text))

    def segment(self, segment: Mapping[str, Any]) -> None:
        self.events.append(("segment", str(segment["text"]).strip()))

    def notice(self, message: str) -> None:
        self.events.append(("notice", message))

    def close(self) -> None:
        self.events.append(("close", ""))

    @property
    def lines(self) -> list[str]:
        return [text for kind, text in self.events if kind == "segment"]


def expected_lines(total: int) -> list[str]:
    return [f"segment {number}" for number in range(-(-total // EVERY))]


def session(url: str, source: AudioSource, output: Recorded | TerminalOutput, **kwargs: Any) -> LiveSession:
    kwargs.setdefault("connect_backoff", (0.0,))
    kwargs.setdefault("reconnect_backoff", (0.0, 0.01))
    return LiveSession(live_url(url), kwargs.pop("start", {}), source, output, **kwargs)


@pytest.fixture(autouse=True)
def _no_settings_from_outside(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("CESAR_SERVER", "CESAR_API_KEY", "CESAR_MODEL", "CESAR_LANGUAGE", "CESAR_TASK"):
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()
    yield
    reset_settings_cache()


# --- the audio ----------------------------------------------------------------------------------------------
def test_a_file_is_decoded_to_16khz_mono_pcm_in_100_ms_frames() -> None:
    source = open_source(str(SPEECH))
    frames = list(source.frames)
    source.close()
    assert source.audio == {"format": "pcm_s16le", "sample_rate": 16000}
    assert {len(frame) for frame in frames[:-1]} == {3200}
    assert 0 < len(frames[-1]) <= 3200
    assert b"".join(frames) == PCM
    assert abs(len(PCM) - 230_400) < 3200  # 7.2 s, give or take a frame


def test_stdin_is_sent_as_it_comes_or_as_raw_pcm() -> None:
    data = SPEECH.read_bytes()
    container = open_source("-", stdin=io.BytesIO(data))
    assert container.audio == {"format": "container"}
    assert b"".join(container.frames) == data
    raw = open_source("-", input_format="s16le", sample_rate=8000, stdin=io.BytesIO(PCM[:4000]))
    assert raw.audio == {"format": "pcm_s16le", "sample_rate": 8000}
    assert [len(frame) for frame in raw.frames] == [1600, 1600, 800]  # 100 ms at 8 kHz


def test_a_wrong_source_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="this FFmpeg has no input device or format 'pulse'"):
        open_source("default", input_format="pulse")
    with pytest.raises(InvalidInputError, match="no such file"):
        open_source(str(tmp_path / "missing.wav"))
    with pytest.raises(InvalidInputError, match="--sample-rate describes raw PCM"):
        open_source("-", sample_rate=8000)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 100)
    with pytest.raises(InvalidInputError, match="cannot open"):
        open_source(str(tmp_path / "junk.wav"))


def test_an_input_device_is_opened_with_its_format_and_not_paced() -> None:
    source = open_source("sine=frequency=440:duration=0.5", input_format="lavfi", realtime=True)
    assert not source.realtime  # a device is real time by nature
    assert len(b"".join(source.frames)) == 16000  # 0.5 s at 16 kHz, 2 bytes a sample
    source.close()


# --- a session ----------------------------------------------------------------------------------------------
def test_a_session_starts_sends_every_byte_prints_each_segment_and_ends_with_final() -> None:
    fake = FakeLive()
    output = Recorded()
    start = {"model": "tiny.en", "language": "en", "task": "transcribe", "prompt": "Cesar"}
    with serving(fake) as url:
        live = session(url, open_source(str(SPEECH)), output, start=start, api_key="sesame")
        final = live.run()
    assert fake.messages[0] == {
        "type": "start",
        "model": "tiny.en",
        "language": "en",
        "task": "transcribe",
        "prompt": "Cesar",
        "audio": {"format": "pcm_s16le", "sample_rate": 16000},
    }
    assert fake.messages[-1] == {"type": "stop"}
    assert fake.authorization == ["Bearer sesame"]
    assert bytes(fake.audio) == PCM
    assert max(fake.binary_sizes) == 3200
    assert output.lines == expected_lines(len(PCM))
    assert ("tentative", "segment 0 tentative") in output.events
    assert output.events[-1] == ("close", "")
    assert final == {"id": "s1", "status": "completed"}
    assert live.job_id == "s1"


def test_a_dropped_connection_is_resumed_and_the_audio_sent_again_from_what_the_server_kept() -> None:
    fake = FakeLive(drop_at=3 * EVERY + 1000, keep=3 * EVERY - 5000)  # the server lost its last 6000 bytes
    output = Recorded()
    with serving(fake) as url:
        session(url, open_source(str(SPEECH)), output).run()
    assert fake.connections == 2
    resume = fake.messages[1]
    assert resume["type"] == "resume" and resume["session_id"] == "s1"
    notice = next(index for index, (kind, _) in enumerate(output.events) if kind == "notice")
    printed_before = [text for kind, text in output.events[:notice] if kind == "segment"]
    assert resume["last_segment"] == len(printed_before) - 1  # the id of the last segment received
    assert bytes(fake.audio) == PCM  # each byte once, in order: resent from audio_bytes
    assert output.lines == expected_lines(len(PCM))  # none lost, none twice


def test_segments_sent_again_after_a_resume_are_printed_once() -> None:
    fake = FakeLive(drop_at=4 * EVERY, resend_all=True)
    output = Recorded()
    with serving(fake) as url:
        session(url, open_source(str(SPEECH)), output).run()
    assert fake.connections == 2
    assert output.lines == expected_lines(len(PCM))


def test_a_server_gone_for_good_ends_the_session_as_unreachable() -> None:
    fake = FakeLive(drop_at=EVERY, stay_gone=True)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with serving(fake) as url:
        live = session(
            url,
            open_source(str(SPEECH)),
            Recorded(),
            clock=lambda: now[0],
            sleep=sleep,
            reconnect_backoff=(0.5, 1.0, 2.0, 4.0, 5.0),
        )
        with pytest.raises(RemoteError, match="lost the Cesar server") as caught:
            live.run()
    assert caught.value.exit_code == 3
    assert 60.0 <= now[0] < 70.0  # 0.5, 1, 2, 4, then every 5 s for about a minute


def test_ctrl_c_in_the_audio_sends_stop_and_waits_for_the_final_transcript() -> None:
    def five_frames_then_ctrl_c() -> Iterator[bytes]:
        for start in range(0, 5 * 3200, 3200):
            yield PCM[start : start + 3200]
        raise KeyboardInterrupt

    fake = FakeLive()
    output = Recorded()
    with serving(fake) as url:
        source = AudioSource(five_frames_then_ctrl_c(), {"format": "pcm_s16le", "sample_rate": 16000})
        final = session(url, source, output).run()
    assert fake.messages[-1] == {"type": "stop"}
    assert bytes(fake.audio) == PCM[: 5 * 3200]
    assert output.lines == ["segment 0"]  # the rest, confirmed after stop
    assert final["status"] == "completed"


def test_a_session_the_server_ends_stops_the_audio() -> None:
    def microphone() -> Iterator[bytes]:
        while True:
            yield b"\0" * 3200

    fake = FakeLive(end_at=10 * 3200)
    with serving(fake) as url:
        source = AudioSource(microphone(), {"format": "pcm_s16le", "sample_rate": 16000})
        final = session(url, source, Recorded()).run()
    assert final == {"id": "s1", "status": "completed"}
    assert len(fake.audio) == 10 * 3200


def test_the_first_ctrl_c_ends_the_audio_and_a_second_one_aborts() -> None:
    live = LiveSession("ws://unused/live", {}, AudioSource([], {"format": "container"}), Recorded())
    with pytest.raises(KeyboardInterrupt):
        live.interrupt()  # before the session started: nothing to keep
    live.session_id = "s1"
    live.interrupt()  # while a message is being sent: the loop stops after it
    with pytest.raises(KeyboardInterrupt):
        live.interrupt()


def test_realtime_sends_each_frame_when_its_time_comes_by_the_clock() -> None:
    now = [0.0]
    sleeps: list[float] = []
    sent: list[tuple[float, int]] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    class Timed:
        def __init__(self, ws: ClientConnection) -> None:
            self.ws = ws

        def send(self, message: str | bytes) -> None:
            if isinstance(message, bytes):
                sent.append((now[0], len(message)))
            self.ws.send(message)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.ws, name)

        def __enter__(self) -> Timed:
            self.ws.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            self.ws.__exit__(*exc)  # type: ignore[arg-type]

    def connect(url: str, **kwargs: Any) -> Any:
        return Timed(websockets_connect(url, **kwargs))

    fake = FakeLive()
    with serving(fake) as url:
        source = open_source(str(SPEECH), realtime=True)
        session(url, source, Recorded(), clock=lambda: now[0], sleep=sleep, connect=connect).run()
    assert bytes(fake.audio) == PCM
    spoken = 0
    for at, size in sent:
        spoken += size
        assert at == pytest.approx(spoken / 32000)  # each frame once it has been "spoken", not before
    assert sum(sleeps) == pytest.approx(len(PCM) / 32000)

    sleeps.clear()
    with serving(FakeLive()) as url:
        session(url, open_source(str(SPEECH)), Recorded(), clock=lambda: now[0], sleep=sleep).run()
    assert sleeps == []  # without --realtime, as fast as the socket takes it


# --- what is printed ----------------------------------------------------------------------------------------
class Flushes(io.StringIO):
    """A stream that notes what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_without_a_terminal_each_confirmed_line_is_printed_and_flushed_as_it_comes() -> None:
    out, err = Flushes(), io.StringIO()
    with serving(FakeLive()) as url:
        session(url, open_source(str(SPEECH)), TerminalOutput(out, err, tty=False)).run()
    lines = expected_lines(len(PCM))
    assert out.getvalue() == "".join(f"{line}\n" for line in lines)
    snapshots = sorted(set(out.flushed), key=len)
    assert snapshots == ["".join(f"{line}\n" for line in lines[: count + 1]) for count in range(len(lines))]
    assert "\r" not in out.getvalue() and "tentative" not in out.getvalue()


def test_on_a_terminal_the_tentative_words_show_on_the_current_line_until_a_confirmed_line() -> None:
    out, err = Flushes(), io.StringIO()
    terminal = TerminalOutput(out, err, tty=True, width=lambda: 30)
    terminal.tentative("hello wor")
    terminal.tentative("hello world and")
    terminal.segment({"text": " Hello world."})
    terminal.tentative("x" * 100)
    terminal.notice("lost the connection")
    terminal.close()
    assert out.getvalue() == (
        "\r\x1b[2Khello wor"
        "\r\x1b[2Khello world and"
        "\r\x1b[2KHello world.\n"
        "\r\x1b[2K…" + "x" * 28 + "\r\x1b[2K"  # never wider than the terminal; cleared before a notice
    )
    assert out.flushed[0] == "\r\x1b[2Khello wor"
    assert err.getvalue() == "lost the connection\n"

    out = Flushes()
    with serving(FakeLive()) as url:
        session(url, open_source(str(SPEECH)), TerminalOutput(out, err, tty=True, width=lambda: 80)).run()
    assert "\r\x1b[2Ksegment 0 tentative\r\x1b[2Ksegment 0\n" in out.getvalue()


# --- the command --------------------------------------------------------------------------------------------
def invoke(*args: str, input: bytes | None = None) -> Any:
    return CliRunner().invoke(cli, ["live", *args], input=input)


def test_the_command_prints_the_lines_and_writes_o_in_its_format(tmp_path: Path) -> None:
    fake = FakeLive(api_key="sesame")
    with serving(fake) as url:
        result = invoke(
            str(SPEECH), "--server", url, "--api-key", "sesame", "-m", "tiny.en", "--task", "TRANSLATE",
            "-o", str(tmp_path / "out.srt"),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == expected_lines(len(PCM))
    assert fake.messages[0] == {
        "type": "start",
        "model": "tiny.en",
        "task": "translate",
        "audio": {"format": "pcm_s16le", "sample_rate": 16000},
    }
    assert fake.fetched == ["/jobs/s1/transcript?format=srt"]
    assert (tmp_path / "out.srt").read_text() == TRANSCRIPT


def test_stdin_is_sent_as_a_container_for_the_server_to_decode() -> None:
    fake = FakeLive()
    with serving(fake) as url:
        result = invoke("-", "--server", url, input=SPEECH.read_bytes())
    assert result.exit_code == 0, result.output
    assert fake.messages[0]["audio"] == {"format": "container"}
    assert bytes(fake.audio) == SPEECH.read_bytes()


@pytest.mark.parametrize(
    ("close_code", "exit_code"), [(1008, 1), (1009, 1), (1011, 2), (1013, 2)]
)  # fmt: skip
def test_an_error_event_is_one_line_and_the_exit_code_of_its_close(close_code: int, exit_code: int) -> None:
    fake = FakeLive(
        error={"code": "no_worker", "message": "no worker took the session"}, close_code=close_code
    )
    with serving(fake) as url:
        result = invoke(str(SPEECH), "--server", url)
    assert result.exit_code == exit_code
    assert result.stderr == "error: no worker took the session (no_worker)\n"


def test_a_job_that_fails_after_its_audio_exits_5_with_the_error() -> None:
    with serving(FakeLive(failed=True)) as url:
        result = invoke(str(SPEECH), "--server", url)
    assert result.exit_code == 5
    assert result.stderr == "error: not audio (unsupported_media)\n"


def test_an_unreachable_server_is_one_line_and_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_client, "CONNECT_BACKOFF", (0.0, 0.0))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = invoke(str(SPEECH), "--server", f"http://127.0.0.1:{port}")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: cannot reach the Cesar server at ws://127.0.0.1:{port}/live")
    assert result.stderr.count("\n") == 1


def test_a_wrong_api_key_exits_4() -> None:
    with serving(FakeLive(api_key="sesame")) as url:
        result = invoke(str(SPEECH), "--server", url, "--api-key", "wrong")
    assert result.exit_code == 4
    assert "CESAR_API_KEY" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["default", "--input-format", "pulse"], "this FFmpeg has no input device or format 'pulse'"),
        (["missing.wav"], "missing.wav: no such file"),
        ([str(SPEECH), "-f", "srt"], "-f/--format is the format of -o FILE"),
        ([str(SPEECH), "-o", "out.docx"], "name the format with the extension"),
    ],
)
def test_bad_input_is_refused_in_one_line_with_exit_1(args: list[str], message: str) -> None:
    result = invoke(*args, "--server", "http://127.0.0.1:9")  # never reached
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_ctrl_c_ends_the_audio_and_a_second_one_exits_130() -> None:
    class Microphone(io.RawIOBase):
        """Raw PCM on stdin that rings Ctrl-C (SIGINT, as a terminal does) after its third read."""

        reads = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            self.reads += 1
            if self.reads == 3:
                signal.raise_signal(signal.SIGINT)
            buffer[:] = b"\0" * len(buffer)
            return len(buffer)

    before = signal.getsignal(signal.SIGINT)
    fake = FakeLive()
    with serving(fake) as url:
        out = io.StringIO()
        live_client.run_live(
            "-", server=url, api_key=None, start={}, realtime=False, input_format="s16le", sample_rate=None,
            output=None, fmt=None, verbose=False, stdin=Microphone(), stdout=out,  # type: ignore[arg-type]
        )  # fmt: skip
    assert fake.messages[-1] == {"type": "stop"}
    assert len(fake.audio) == 2 * 3200  # the frame being read when Ctrl-C came is not sent
    assert signal.getsignal(signal.SIGINT) is before  # given back

    fake = FakeLive(interrupt_on_stop=True)  # Ctrl-C after the file ended: nothing to stop, it quits
    with serving(fake) as url:
        result = invoke(str(SPEECH), "--server", url)
    assert result.exit_code == 130
    assert result.stderr == "interrupted\n"


def test_output_format_and_live_url() -> None:
    assert output_format(None, None) is None
    assert output_format(Path("talk.VTT"), None) == "vtt"
    assert output_format(Path("talk.txt"), "json") == "json"
    assert live_url("http://host:5000/") == "ws://host:5000/live"
    assert live_url("https://cesar.example/base") == "wss://cesar.example/base/live"


def test_the_authorization_header_only_with_a_key() -> None:
    assert LiveSession("ws://x/live", {}, AudioSource([], {}), Recorded()).headers == {}
    keyed = LiveSession("ws://x/live", {}, AudioSource([], {}), Recorded(), api_key="k")
    assert keyed.headers == {"Authorization": "Bearer k"}
