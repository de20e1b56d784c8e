"""Slow request bodies and resources that run out: 200 uploads trickling a byte a second are cut off by the
body timeout (408) while a normal upload goes through; at a low open-file limit the API sheds load with
503 and ``Retry-After`` (never 500, never a traceback), /health says so, and it recovers by itself.

The API runs as its own process (``python -m cesar_api``, as ``cesar serve`` starts it), its open-file
limit lowered with ``setrlimit`` before it starts. The timeout is short here (4 s) to keep the tests short.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from api_helpers import AUDIO_DIR, error_body, running_api

BODY_TIMEOUT = 4.0
SLOW_UPLOADS = 200
#: the head of a multipart upload whose file then comes a byte at a time
SLOW_HEAD = (
    b"POST /transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: multipart/form-data; boundary=slow\r\nContent-Length: 1000000\r\n\r\n"
    b'--slow\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def load(self) -> dict[str, object]:
        return dict(httpx.get(f"{self.url}/health", timeout=10).json()["load"])


@contextmanager
def api_with_open_files(db_url: str, open_files: int, tmp_path: Path, **env: str) -> Iterator[ApiProcess]:
    """``python -m cesar_api`` with at most ``open_files`` open files (soft and hard limit)."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    environment.update(
        CESAR_DATABASE_URL=db_url,
        CESAR_PORT=str(port),
        CESAR_LOG_LEVEL="info",
        CESAR_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        **env,
    )
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cesar_api"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_files,
        )
    api = ApiProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_until(lambda: _answers(api), what="the API to answer /health/live", timeout=30)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _answers(api: ApiProcess) -> bool:
    assert api.process.poll() is None, api.log()
    try:
        return httpx.get(f"{api.url}/health/live", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(condition: Callable[[], object], *, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class SlowUpload:
    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    closed: bool = False
    answered_at: float | None = None  # when the first byte of the answer came

    @property
    def status(self) -> int | None:
        head = bytes(self.received).split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) > 1 else None

    def headers_and_body(self) -> tuple[dict[str, str], dict[str, object]]:
        head, _, body = bytes(self.received).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        return headers, json.loads(body)


class Trickle:
    """``count`` uploads sending their file a byte a second, each until the server answers and closes."""

    def __init__(self, url: str, count: int) -> None:
        port = int(url.rsplit(":", 1)[1])
        self.selector = selectors.DefaultSelector()
        self.uploads: list[SlowUpload] = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setblocking(False)
            upload = SlowUpload(sock)
            self.uploads.append(upload)
            with suppress(OSError):  # refused as it was accepted, and already closed
                sock.send(SLOW_HEAD)
            self.selector.register(sock, selectors.EVENT_READ, upload)
        self.last_byte = time.monotonic()

    @property
    def open(self) -> list[SlowUpload]:
        return [upload for upload in self.uploads if not upload.closed]

    def run(self, *, until: Callable[[], bool], timeout: float) -> None:
        """Read answers as they come, and send each open upload one byte a second, until ``until()``."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.open)} slow uploads still open after {timeout:g} s")
            for key, _events in self.selector.select(timeout=0.2):
                self._read(key.data)
            if time.monotonic() - self.last_byte >= 1.0:
                self.last_byte = time.monotonic()
                for upload in self.open:
                    with suppress(OSError):  # closed by the server: its answer is read above
                        upload.sock.send(b"\x00")

    def _read(self, upload: SlowUpload) -> None:
        try:
            data = upload.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:  # a reset: the answer, if any, was read before it
            assert exc.errno in (errno.ECONNRESET, errno.EPIPE), exc
            data = b""
        if data and upload.answered_at is None:
            upload.answered_at = time.monotonic()
        upload.received += data
        if not data:
            upload.closed = True
            self.selector.unregister(upload.sock)
            upload.sock.close()

    def close(self) -> None:
        for upload in self.open:
            self.selector.unregister(upload.sock)
            upload.sock.close()
        self.selector.close()


def normal_upload(url: str) -> httpx.Response:
    with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
        return httpx.post(
            f"{url}/transcribe", files={"file": ("speech_en.wav", audio, "audio/wav")}, timeout=60
        )


def test_slow_uploads_are_cut_off_while_a_normal_upload_goes_through(db_url: str, tmp_path: Path) -> None:
    """At 400 open files: enough for 200 connections, not for 200 connections and 200 spool files (what
    each upload held before), which made the API answer 500 as it ran out."""
    with api_with_open_files(db_url, 400, tmp_path) as api:
        trickle = Trickle(api.url, SLOW_UPLOADS)
        try:
            wait_until(
                lambda: api.load()["connections"] == SLOW_UPLOADS + 1, what="200 slow uploads", timeout=30
            )
            accepted = normal_upload(api.url)
            passed_at = time.monotonic()
            assert accepted.status_code == 202, accepted.text
            trickle.run(until=lambda: not trickle.open, timeout=BODY_TIMEOUT + 30)
        finally:
            trickle.close()
        cut_off = [upload.answered_at for upload in trickle.uploads if upload.answered_at is not None]
        assert len(cut_off) == SLOW_UPLOADS and min(cut_off) > passed_at  # the upload passed meanwhile
        assert {upload.status for upload in trickle.uploads} == {408}
        headers, body = trickle.uploads[0].headers_and_body()
        assert body["code"] == "body_timeout" and "CESAR_BODY_TIMEOUT_SECONDS" in str(body["detail"])
        assert headers["connection"] == "close"
        load = api.load()
        assert load["shedding"] is False and load["refused"] == 0 and load["uploads_in_flight"] == 0
        log = api.log()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]


def test_at_a_low_open_file_limit_the_api_sheds_load_and_never_fails(db_url: str, tmp_path: Path) -> None:
    """At 128 open files: 32 connections (and 16 more for the probes), 16 uploads in flight."""
    with api_with_open_files(db_url, 128, tmp_path) as api:
        trickle = Trickle(api.url, SLOW_UPLOADS)
        try:
            wait_until(lambda: api.load()["shedding"], what="the API to shed load", timeout=30)
            during = api.load()  # a probe still gets through
            assert during["reason"] == "connections"
            assert during["max_connections"] == 32 and during["max_uploads_in_flight"] == 16
            shed = normal_upload(api.url)  # refused as a whole, with when to come back
            if shed.status_code != 202:
                assert error_body(shed, 503)["code"] == "overloaded"
                assert shed.headers["retry-after"] == "5"
            trickle.run(until=lambda: not trickle.open, timeout=BODY_TIMEOUT + 30)
        finally:
            trickle.close()
        statuses = [upload.status for upload in trickle.uploads]
        assert set(statuses) == {408, 503}, statuses
        for upload in trickle.uploads:
            if upload.status == 503:
                headers, body = upload.headers_and_body()
                assert headers["retry-after"] == "5" and body["code"] == "overloaded"
                assert body["extra"] == {"resource": "connections"}
        assert normal_upload(api.url).status_code == 202  # by itself again once they are gone
        assert api.load()["refused"] >= SLOW_UPLOADS - 48
        log = api.log()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
    assert "leaves room for 16 uploads in flight" in log and "shedding load" in log


# --- the upload slots and the spool file, in-process -------------------------------------------------------
def test_past_the_cap_on_uploads_in_flight_an_upload_is_refused_with_503(sqlite_url: str) -> None:
    with running_api(sqlite_url, max_uploads_in_flight=1, body_timeout_seconds=BODY_TIMEOUT) as api:
        holder = socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])))
        try:
            holder.sendall(SLOW_HEAD + bytes(100 * 1024))  # past 64 KiB: it holds the one slot
            wait_until(lambda: api.client.get("/health").json()["load"]["uploads_in_flight"] == 1,
                       what="the first upload to take the slot", timeout=30)  # fmt: skip
            refused = normal_upload(api.url)
            body = error_body(refused, 503)
            assert body["code"] == "overloaded" and body["extra"] == {"resource": "uploads"}
            assert "CESAR_MAX_UPLOADS_IN_FLIGHT" in body["detail"] and refused.headers["retry-after"] == "5"
            holder.settimeout(BODY_TIMEOUT + 30)
            assert holder.recv(65536).startswith(b"HTTP/1.1 408 ")  # the stalled one, cut off
        finally:
            holder.close()
        wait_until(lambda: api.client.get("/health").json()["load"]["uploads_in_flight"] == 0,
                   what="the slot to be given back", timeout=30)  # fmt: skip
        assert normal_upload(api.url).status_code == 202


def test_out_of_files_while_spooling_is_a_503(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_more_files() -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    with running_api(sqlite_url) as api:
        monkeypatch.setattr(tempfile, "TemporaryFile", no_more_files)
        refused = normal_upload(api.url)
        body = error_body(refused, 503)
        assert body["code"] == "overloaded" and body["extra"] == {"resource": "open_files"}
        assert refused.headers["retry-after"] == "5"
        assert api.client.get("/health").json()["load"]["reason"] == "open_files"
        monkeypatch.undo()
        assert normal_upload(api.url).status_code == 202
    assert "Traceback" not in caplog.text
