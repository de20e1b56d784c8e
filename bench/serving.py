"""What the benchmarks need to run the real `cesar serve` and talk to it: a subprocess on a free port with
Cesar's defaults (its log in a file), waited for until every worker is alive, and a small HTTP client.

The tests have their own, fuller helpers (tests/e2e/serve_helpers.py); the product imports neither.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

CESAR = str(Path(sys.executable).with_name("cesar"))
AUDIO_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"
FINAL = frozenset({"completed", "error", "cancelled"})


def wait_for(condition: Any, *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy; RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


@dataclass
class Serve:
    """A running `cesar serve`."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def planned_workers(self) -> int | None:
        """The worker count serve printed at start ("Starting 2 workers x ..."), once it has."""
        if self.process.poll() is not None:
            raise RuntimeError(f"cesar serve exited with {self.process.returncode}:\n{self.log()[-4000:]}")
        if "Starting the API alone" in self.log():
            return 0
        match = re.search(r"Starting (\d+) workers? x", self.log())
        return int(match.group(1)) if match else None

    def healthy(self, workers: int) -> bool:
        try:
            response = httpx.get(f"{self.url}/health", timeout=2)
        except httpx.HTTPError:
            return False
        return (
            response.status_code == 200 and (response.json().get("workers") or {}).get("count", 0) >= workers
        )


@contextlib.contextmanager
def running_serve(
    db_url: str,
    *,
    log_path: Path,
    workers: str = "auto",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
) -> Iterator[Serve]:
    """`cesar serve` on a free port and ``db_url`` with Cesar's defaults (no CESAR_* of the caller's but
    ``env``), once /health shows every worker alive; stopped (SIGTERM, then killed) on the way out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    clean = {name: value for name, value in os.environ.items() if not name.startswith("CESAR_")}
    command = [CESAR, "serve", "--port", str(port), "--db", db_url, "--workers", workers, *args]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**clean, **(env or {})},
        )
    serve = Serve(process, log_path, port)
    try:
        planned = wait_for(
            lambda: serve.planned_workers() is not None, timeout=timeout, what="serve's layout"
        )
        assert planned
        wait_for(lambda: serve.healthy(serve.planned_workers() or 0), timeout=timeout, what="/health")
        yield serve
    finally:
        family = [serve.process.pid]
        with contextlib.suppress(psutil.Error):
            family += [child.pid for child in psutil.Process(serve.process.pid).children(recursive=True)]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        for pid in family:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


class Client:
    """The few API calls the benchmarks make."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def upload(self, path: Path, **fields: str) -> str:
        with path.open("rb") as handle:
            response = self.http.post("/transcribe", files={"file": (path.name, handle)}, data=fields)
        response.raise_for_status()
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def transcript(self, job_id: str, fmt: str = "txt") -> str:
        response = self.http.get(f"/jobs/{job_id}/transcript", params={"format": fmt})
        response.raise_for_status()
        return response.text

    def wait_all(self, job_ids: Iterable[str], *, timeout: float = 600) -> dict[str, dict[str, Any]]:
        """Poll until every job is final; returns them by id. Each poll asks for the last job still pending
        (workers take jobs oldest first) before it lists them all: polling takes little CPU from the
        workers being measured."""
        order = list(job_ids)
        done: dict[str, dict[str, Any]] = {}

        def all_final() -> bool:
            pending = [job_id for job_id in order if job_id not in done]
            try:
                if self.job(pending[-1])["status"] not in FINAL:
                    return False
                listed = {job["id"]: job for job in self.http.get("/jobs", params={"limit": 1000}).json()}
                for job_id in pending:
                    job = listed.get(job_id) or self.job(job_id)
                    if job["status"] in FINAL:
                        done[job_id] = job
            except httpx.HTTPError:
                return False  # the API is restarting
            return len(done) == len(order)

        wait_for(all_final, timeout=timeout, interval=0.25, what="the jobs to end")
        return done
