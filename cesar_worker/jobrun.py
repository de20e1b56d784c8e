"""The state of the job a worker is running, shared by the decoding thread and the heartbeat thread.

The decoding thread reports progress and asks ``should_stop()`` between segments; the heartbeat thread writes
progress to the database, notices cancel requests and lost leases, and says so through :meth:`JobRun.stop`.
The end of the shutdown grace period is noticed by whichever thread looks first. Only the first reason to stop
counts.
"""

from __future__ import annotations

import threading
import time
from enum import StrEnum
from typing import Any

from cesar_common.db.records import JobRecord, PartWork

__all__ = ["TEMP_PREFIX", "JobRun", "JobStopped", "StopReason"]

#: a job's temporary directory starts with this, then the worker's pid: a crashed worker's leftovers can be
#: told apart (:func:`cesar_worker.worker.remove_orphaned_temp_dirs`)
TEMP_PREFIX = "cesar-job-"


class StopReason(StrEnum):
    CANCELLED = "cancelled"  # the client asked: the job ends `cancelled`
    LEASE_LOST = "lease_lost"  # another worker may own it now: write nothing
    SHUTDOWN = "shutdown"  # the grace period ran out: hand the job back


class JobStopped(Exception):  # control flow, not an error
    """Raised inside a job when it must stop early; the worker reads the reason from the run."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(f"job stopped: {reason}")
        self.reason = reason


class JobRun:
    """One claimed job, or one part of a long job (``part``), while this worker runs it."""

    def __init__(
        self,
        job: JobRecord,
        *,
        part: PartWork | None = None,
        shutdown: threading.Event | None = None,
        grace_seconds: float = 0.0,
    ) -> None:
        self.job = job
        self.part = part
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._progress = 0.0
        self._progress_dirty = False
        self._segments: list[dict[str, Any]] = []  # decoded, not written yet
        self._stop_reason: StopReason | None = None
        self._shutdown = shutdown
        self._grace_seconds = grace_seconds
        self._grace_deadline: float | None = None
        self._finishing = False

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def name(self) -> str:
        """How logs name what runs: the job, or the part of a job."""
        if self.part is None:
            return f"job {self.job.id}"
        return f"job {self.job.id} part {self.part.part.seq + 1}/{self.part.part.count}"

    # --- the decoding side ---------------------------------------------------------------------
    def on_progress(self, position: float, duration: float) -> None:
        """Engine callback: a segment ended at ``position`` seconds of ``duration``."""
        if duration <= 0:
            return
        value = min(max(position / duration, 0.0), 1.0)
        with self._lock:
            if value > self._progress:
                self._progress = value
                self._progress_dirty = True

    def on_segment(self, segment: dict[str, Any]) -> None:
        """Engine callback: a segment is final (in order); the heartbeat publishes it with the progress."""
        with self._lock:
            self._segments.append(segment)

    def should_stop(self) -> bool:
        return self._stop_reason is not None or self.check_shutdown()

    def raise_if_stopped(self) -> None:
        self.check_shutdown()
        reason = self._stop_reason
        if reason is not None:
            raise JobStopped(reason)

    def finish(self) -> None:
        """The main thread is about to write the job's end: the heartbeat leaves the job alone from here (a
        lease it then fails to extend is not "lost", it went with the job)."""
        self._finishing = True

    @property
    def finishing(self) -> bool:
        return self._finishing

    # --- the heartbeat side --------------------------------------------------------------------
    def take_report(self) -> tuple[float, list[dict[str, Any]]] | None:
        """The progress and the new segments to write, if either moved since the last call."""
        with self._lock:
            if not self._progress_dirty and not self._segments:
                return None
            segments, self._segments = self._segments, []
            self._progress_dirty = False
            return self._progress, segments

    def give_back(self, segments: list[dict[str, Any]]) -> None:
        """A report that could not be written: its segments go out with the next one, in order."""
        with self._lock:
            self._segments[:0] = segments
            self._progress_dirty = True

    @property
    def progress(self) -> float:
        return self._progress

    def stop(self, reason: StopReason) -> bool:
        """Ask the job to stop; False if it was already asked (the first reason wins)."""
        with self._lock:
            if self._stop_reason is not None:
                return False
            self._stop_reason = reason
            return True

    @property
    def stop_reason(self) -> StopReason | None:
        return self._stop_reason

    def check_shutdown(self) -> bool:
        """True once the worker is stopping and the job's grace period is over (it then stops the job)."""
        if self._shutdown is None or not self._shutdown.is_set():
            return False
        now = time.monotonic()
        with self._lock:
            if self._grace_deadline is None:
                self._grace_deadline = now + self._grace_seconds
            over = now >= self._grace_deadline
        if over:
            self.stop(StopReason.SHUTDOWN)
        return over

    @property
    def grace_deadline(self) -> float | None:
        return self._grace_deadline
