"""A real worker with a fake engine, for tests that need many jobs or many crashes to stay fast.

Used two ways: imported by in-process tests (``from fake_worker import FakeEngine``; ``tests/`` is on
``sys.path`` through the root conftest), and run as a process: ``python tests/fake_worker.py [--record FILE]``
(settings from the ``CESAR_*`` environment, like ``cesar worker``).

A job's ``initial_prompt`` tells the fake what to do:

- none: finish at once with a fake transcript;
- ``slow:S``: take S seconds, reporting progress and honouring stop requests between 20 ms "segments";
- ``slow-first:S``: like ``slow:S`` on the first attempt only (a crash test's retry finishes at once);
- ``fail``: raise AudioDecodeError; ``crash``: raise RuntimeError.

With ``--record FILE`` each start and finish is appended as a line ``start|done PID JOB_ID ATTEMPTS``.

``--fork-server`` makes a process that pays the imports once, then forks a worker for each JSON request
``{"args": [...], "log": PATH, "env": {...}}`` read from stdin and answers with its pid: crash tests start
many workers and `kill -9` them, and a fork starts in milliseconds where a fresh interpreter takes a second.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cesar_common.db.records import JobRecord, JobResult
from cesar_common.errors import AudioDecodeError
from cesar_worker.jobrun import JobStopped, StopReason

STEP_SECONDS = 0.02
SEGMENT_SECONDS = 0.25


class FakeEngine:
    def __init__(self, *, record: str | Path | None = None) -> None:
        self.record = str(record) if record else None
        self.started: list[str] = []
        self.audio: dict[str, bytes] = {}
        self.preloaded: list[str] = []
        self.closed = False

    def preload(self, model: str) -> None:
        self.preloaded.append(model)

    def loaded_models(self) -> list[str]:
        return ["fake"]

    def close(self) -> None:
        self.closed = True

    def plan_parts(self, job: Any, audio_path: Path, **_: Any) -> None:
        return None  # never cut: jobs here are short

    def transcribe(
        self,
        job: JobRecord,
        audio_path: Path,
        *,
        on_progress: Callable[[float, float], None],
        should_stop: Callable[[], bool],
        on_segment: Callable[[dict[str, Any]], None] = lambda segment: None,
    ) -> JobResult:
        self.started.append(job.id)
        self.audio[job.id] = audio_path.read_bytes()
        self._note("start", job)
        command, _, argument = (job.options.initial_prompt or "").partition(":")
        if command == "fail":
            raise AudioDecodeError("fake: this audio does not decode")
        if command == "crash":
            raise RuntimeError("fake engine bug")
        segments = [{"id": 0, "start": 0.0, "end": 1.0, "text": "fake"}]
        text = f"fake transcript of {job.id}"
        if command == "slow" or (command == "slow-first" and job.attempts == 1):
            segments = _take(float(argument), on_progress, on_segment, should_stop)
            text = " ".join(segment["text"] for segment in segments)
        self._note("done", job)
        return JobResult(
            text=text,
            language="en",
            language_probability=1.0,
            duration=float(argument or 1.0),
            segments=segments,
        )

    def _note(self, event: str, job: JobRecord) -> None:
        if self.record is None:
            return
        line = f"{event} {os.getpid()} {job.id} {job.attempts}\n".encode()
        fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of a short line to an O_APPEND file: never interleaved
        finally:
            os.close(fd)


def _take(
    seconds: float,
    on_progress: Callable[[float, float], None],
    on_segment: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
) -> list[dict[str, Any]]:
    """Take ``seconds``, "decoding" a segment every quarter second of them; the segments."""
    start = time.monotonic()
    segments: list[dict[str, Any]] = []

    def decoded_until(elapsed: float) -> None:
        while (len(segments) + 1) * SEGMENT_SECONDS <= elapsed:
            n = len(segments)
            segment = {
                "id": n,
                "start": n * SEGMENT_SECONDS,
                "end": (n + 1) * SEGMENT_SECONDS,
                "text": f"part {n}",
            }
            segments.append(segment)
            on_segment(segment)

    while (elapsed := time.monotonic() - start) < seconds:
        if should_stop():
            raise JobStopped(StopReason.CANCELLED)
        decoded_until(elapsed)
        on_progress(elapsed, seconds)
        time.sleep(STEP_SECONDS)
    decoded_until(seconds)  # however the loop was scheduled, S seconds make S / SEGMENT_SECONDS segments
    return segments or [{"id": 0, "start": 0.0, "end": seconds, "text": "fake"}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", help="append start/done lines to this file")
    parser.add_argument("--worker-id")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--fork-server", action="store_true")
    args = parser.parse_args(argv)
    if args.fork_server:
        return fork_server()

    from cesar_common.logs import configure_logging
    from cesar_common.settings import get_settings
    from cesar_worker.worker import quiet_library_logs, run_worker

    settings = get_settings()
    configure_logging(settings.log_level, name="fake-worker")
    quiet_library_logs(settings.log_level)
    return run_worker(
        settings,
        once=args.once,
        worker_id=args.worker_id,
        transcriber_factory=lambda _settings: FakeEngine(record=args.record),
    )


def fork_server() -> int:
    # the imports a worker needs, done once (no threads or connections exist yet, so forking is safe)
    import cesar_worker.worker  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _forked_worker(request)
        print(pid, flush=True)
    return 0


def _forked_worker(request: dict[str, object]) -> None:
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.environ.update(dict(request.get("env") or {}))  # type: ignore[call-overload]
        code = main([str(arg) for arg in request["args"]])  # type: ignore[attr-defined]
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
