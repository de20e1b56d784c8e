"""Run the real `cesar serve` (or `cesar api` / `cesar worker`) in subprocesses and talk to it over HTTP.

Used by the serve end-to-end tests and by the benchmarks in bench/.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import serving

CESAR = str(Path(sys.executable).with_name("cesar"))
AUDIO_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
#: speech_en in every container the fixtures hold, and words each transcript of it has (fixtures README)
SPEECH_FILES = [
    "speech_en.wav",
    "speech_en.flac",
    "speech_en.mp3",
    "speech_en.m4a",
    "speech_en.ogg",
    "speech_en.webm",
    "speech_en_stereo44k.wav",
]
SPEECH_WORDS = ("lazy", "transcription", "fast", "reliable")
FINAL = serving.FINAL

#: Short leases and grace periods keep the crash and shutdown tests quick.
FAST_ENV: Mapping[str, str] = {
    "CESAR_LEASE_SECONDS": "4",
    "CESAR_SHUTDOWN_GRACE_SECONDS": "5",
    "CESAR_POLL_MAX_SECONDS": "0.25",
    "CESAR_ALLOW_PRIVATE_URLS": "true",
    "CESAR_OFFLINE": "true",
    "HF_HUB_OFFLINE": "1",
    "CESAR_LOG_LEVEL": "info",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def cesar_env(extra: Mapping[str, str] | None = None, *, fast: bool = True) -> dict[str, str]:
    """This environment without any CESAR_* the developer set, plus FAST_ENV (if ``fast``) and ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CESAR_")}
    return {**env, **(FAST_ENV if fast else {}), **(extra or {})}


def wait_for(condition: Any, *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- processes ------------------------------------------------------------------------------------
@dataclass
class CesarProcess:
    """A `cesar ...` command running in the background, its output in a log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None
    seen: set[int] = field(default_factory=set)  # every descendant pid ever observed

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen.update(child.pid for child in found)
        return found

    def workers(self) -> list[psutil.Process]:
        return [child for child in self.children() if _runs(child, "cesar_worker")]

    def api(self) -> psutil.Process | None:
        return next((child for child in self.children() if _runs(child, "cesar_api")), None)

    def planned_workers(self) -> int | None:
        """The worker count serve printed at start ("Starting 2 workers x ..."), once it has."""
        log = self.log()
        if "Starting the API alone" in log:
            return 0
        match = re.search(r"Starting (\d+) workers? x", log)
        return int(match.group(1)) if match else None

    def wait_healthy(self, *, workers: int = 0, timeout: float = 60) -> dict[str, Any]:
        """Wait for GET /health to answer 200 with at least ``workers`` live workers."""

        def healthy() -> dict[str, Any] | None:
            self._check_alive()
            try:
                response = httpx.get(f"{self.url}/health", timeout=2)
            except httpx.HTTPError:
                return None
            body: dict[str, Any] = response.json()
            if response.status_code == 200 and (body.get("workers") or {}).get("count", 0) >= workers:
                return body
            return None

        return wait_for(healthy, timeout=timeout, interval=0.2, what=f"{self.url}/health")  # type: ignore[no-any-return]

    def stop(self, signum: int = signal.SIGTERM, *, timeout: float = 30) -> int:
        """Send ``signum`` and wait for the exit code."""
        self.children()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)

    def leftovers(self) -> list[int]:
        """Descendants that are still alive (zombies do not count)."""
        alive = []
        for pid in self.seen:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return alive

    def kill_everything(self) -> None:
        self.children()
        for pid in [self.pid, *self.seen]:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"cesar exited with {code} before it was ready:\n{self.log()[-4000:]}")


def _runs(process: psutil.Process, module: str) -> bool:
    try:
        return module in process.cmdline()
    except psutil.Error:
        return False


def start_cesar(
    args: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    fast: bool = True,
    binary: str = CESAR,
    cwd: Path | None = None,
) -> CesarProcess:
    """Start ``cesar <args>`` with output to ``log_path`` (appended: a restart keeps the earlier log).

    ``fast``: short leases, grace periods and polls (FAST_ENV); off, Cesar's defaults (for benchmarks).
    ``binary``: another installation's ``cesar``, started in ``cwd``.
    """
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=cesar_env(env, fast=fast),
            cwd=cwd,
        )
    return CesarProcess(process=process, log_path=log_path, port=port)


@contextlib.contextmanager
def running_serve(
    db_url: str,
    *,
    log_path: Path,
    workers: str = "1",
    port: int | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    timeout: float = 90,
    fast: bool = True,
    binary: str = CESAR,
    cwd: Path | None = None,
) -> Iterator[CesarProcess]:
    """`cesar serve` on a free port and ``db_url``; waits for /health with every worker alive.

    On the way out: SIGTERM (if still running), then anything left is killed, so no test leaks processes.
    """
    port = port or free_port()
    command = ["serve", "--port", str(port), "--db", db_url, "--workers", workers, *args]
    serve = start_cesar(command, log_path=log_path, env=env, port=port, fast=fast, binary=binary, cwd=cwd)
    try:
        if wait:
            planned = wait_for(
                lambda: serve._check_alive() or serve.planned_workers() is not None,
                timeout=timeout,
                what="serve to print its layout",
            )
            assert planned
            serve.wait_healthy(workers=serve.planned_workers() or 0, timeout=timeout)
            serve.children()
        yield serve
    finally:
        try:
            if serve.process.poll() is None:
                serve.stop(timeout=30)
        finally:
            serve.kill_everything()


# --- HTTP -----------------------------------------------------------------------------------------
class Client(serving.Client):
    """The benchmarks' client (bench/serving.py), and the few calls only the tests make."""

    def submit_url(self, url: str, **options: Any) -> str:
        response = self.http.post("/transcribe", json={"url": url, **options})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def wait_status(self, job_id: str, statuses: Iterable[str], *, timeout: float = 60) -> dict[str, Any]:
        wanted = set(statuses)
        return wait_for(  # type: ignore[no-any-return]
            lambda: (job := self.job(job_id))["status"] in wanted and job,
            timeout=timeout,
            interval=0.05,
            what=f"job {job_id} to be {sorted(wanted)}",
        )


# --- a URL source -----------------------------------------------------------------------------------
@contextlib.contextmanager
def serving_directory(directory: Path) -> Iterator[str]:
    """An HTTP server for ``directory`` on loopback; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
