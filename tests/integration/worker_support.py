"""Helpers for the worker's integration tests: worker subprocesses, job polling, a local HTTP server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cesar_common.db.records import JobRecord, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent
FAKE_WORKER = TESTS_DIR / "fake_worker.py"


class WorkerProcess:
    """``python -m cesar_worker`` (or the fake-engine worker) with its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while " ready" not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no clean-up at all
        self.proc.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {timeout} s:\n{self.log()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@contextmanager
def worker_processes(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """A factory of worker processes, all killed at the end."""
    started: list[WorkerProcess] = []

    def start(
        db_url: str, *args: str, fake: bool = False, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")} | {
            "CESAR_DATABASE_URL": db_url,
            "CESAR_LEASE_SECONDS": "5",
            "CESAR_SHUTDOWN_GRACE_SECONDS": "5",
            "CESAR_POLL_MAX_SECONDS": "0.5",
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }
        command = [sys.executable, str(FAKE_WORKER)] if fake else [sys.executable, "-m", "cesar", "worker"]
        process = WorkerProcess([*command, *args], environment, tmp_path / f"worker-{len(started)}.log")
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.close()


class ForkedWorker:
    """A fake-engine worker forked by the fork server: starts in milliseconds (see tests/fake_worker.py)."""

    def __init__(self, pid: int, log_path: Path) -> None:
        self.pid = pid
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while " ready" not in self.log():
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(f"forked worker not ready:\n{self.log()}")
            time.sleep(0.01)

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.wait_gone()

    def wait_gone(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.alive():  # gone once the kernel has reaped it
            assert time.monotonic() < deadline, f"pid {self.pid} still running:\n{self.log()}"
            time.sleep(0.005)


@contextmanager
def fork_server(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., ForkedWorker]]:
    """Yields ``start(*args, env=...)`` that forks a fake-engine worker; every one is killed at the end."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")} | env
    server = subprocess.Popen(
        [sys.executable, str(FAKE_WORKER), "--fork-server"],
        cwd=REPO,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    forked: list[ForkedWorker] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ForkedWorker:
        assert server.stdin is not None and server.stdout is not None
        log = tmp_path / f"forked-{len(forked)}.log"
        server.stdin.write(json.dumps({"args": list(args), "log": str(log), "env": env or {}}) + "\n")
        server.stdin.flush()
        worker = ForkedWorker(int(server.stdout.readline()), log)
        forked.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in forked:
            worker.kill()
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


def submit_file(
    store: JobStore, path: Path, *, model: str = "tiny.en", language: str | None = None
) -> JobRecord:
    new = NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model=model, language=language),
        filename=path.name,
    )
    with path.open("rb") as audio:
        return store.create_job(new, audio)


def submit_bytes(store: JobStore, data: bytes, *, prompt: str | None = None) -> JobRecord:
    new = NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model="tiny.en", initial_prompt=prompt),
        filename="fake.wav",
    )
    return store.create_job(new, data)


def submit_url(store: JobStore, url: str) -> JobRecord:
    new = NewJob(source=JobSource.URL, options=TranscribeOptions(model="tiny.en"), source_url=url)
    return store.create_job(new, None)


def wait_for(
    store: JobStore,
    job_id: str,
    predicate: Callable[[JobRecord], bool],
    *,
    timeout: float = 60.0,
    interval: float = 0.02,
    what: str = "",
) -> JobRecord:
    deadline = time.monotonic() + timeout
    while True:
        job = store.get_job(job_id, with_segments=True)
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'the job'}: {job}")
        time.sleep(interval)


def wait_final(store: JobStore, job_id: str, *, timeout: float = 60.0) -> JobRecord:
    return wait_for(store, job_id, lambda job: job.is_final, timeout=timeout, what="a final status")


# --- a local HTTP server ---------------------------------------------------------------------------
class AudioHandler(BaseHTTPRequestHandler):
    """Serves the audio fixtures under /audio/NAME, and misbehaves on request for download tests."""

    protocol_version = "HTTP/1.1"
    audio_dir: Path

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        route = parts.path.strip("/").split("/")
        name = route[0]
        if name == "audio" and len(route) == 2 and (self.audio_dir / route[1]).is_file():
            self._send(200, (self.audio_dir / route[1]).read_bytes())
        elif name == "redirect":
            self._redirect(query["to"])
        elif name == "loop":
            self._redirect(f"/loop?n={int(query.get('n', '0')) + 1}")
        elif name == "big":  # declares its size up front
            self.send_response(200)
            self.send_header("Content-Length", query["bytes"])
            self.end_headers()
            self.wfile.write(b"\0" * 1024)
        elif name == "stream":  # chunked, size unknown until it is too late
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                for _ in range(int(query["bytes"]) // len(chunk)):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif name == "stall":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            time.sleep(float(query.get("seconds", "2")))
        elif name == "trickle":  # a slow server: 100 bytes every `every` seconds, for `seconds` seconds
            self.send_response(200)
            self.send_header("Content-Length", str(100 * 1000 * 1000))
            self.end_headers()
            every, until = (
                float(query.get("every", "1")),
                time.monotonic() + float(query.get("seconds", "600")),
            )
            try:
                while time.monotonic() < until:
                    self.wfile.write(b"\0" * 100)
                    self.wfile.flush()
                    time.sleep(every)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif name == "empty":
            self._send(200, b"")
        else:
            self._send(404, b"not here")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up mid-response are what some tests are about


@contextmanager
def audio_server(audio_dir: Path) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1; yields its base URL (``http://127.0.0.1:PORT``)."""
    handler = type("Handler", (AudioHandler,), {"audio_dir": audio_dir})
    server = _QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
