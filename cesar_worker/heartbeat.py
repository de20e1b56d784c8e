"""The worker's two helper threads, beside the main thread that decodes.

- :class:`Heartbeat` tends the job being run, and nothing else: it extends the lease every third of its
  length, writes progress (at most about once a second), notices a cancel request or a lost lease within
  half a second, and ends the shutdown grace period. Nothing else shares its thread, so a slow clean-up can
  never make it miss a renewal.
- :class:`Housekeeping` refreshes the worker's presence row and does the clean-up any worker does for
  everyone (expired leases, stale uploads, stale worker rows, old finished jobs under
  CESAR_RETENTION_DAYS), each at its own interval, in short transactions.

A model load or a decode in native code holds up neither.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cesar_common.db.store import JobStore
from cesar_common.errors import CesarError, ConflictError
from cesar_common.settings import Settings
from cesar_worker.jobrun import JobRun, StopReason

__all__ = ["CHECK_INTERVAL", "PROGRESS_INTERVAL", "Heartbeat", "Housekeeping"]

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # seconds between progress writes
CHECK_INTERVAL = 0.5  # seconds between cancel checks while a job runs
PRESENCE_INTERVAL = 5.0  # seconds between presence refreshes
PRESENCE_MIN_INTERVAL = 1.0  # a job starting or ending refreshes presence sooner, but not more often
SWEEP_INTERVAL = 5.0  # seconds between expired-lease sweeps (shorter when leases are)
PURGE_INTERVAL = 60.0  # seconds between stale-upload and stale-worker clean-ups
#: a `pending` upload that stored no chunk for this long was abandoned (uploads are spooled by the API
#: first, so storing one takes seconds; each chunk stored marks it alive)
STALE_UPLOAD_SECONDS = 300.0
STALE_WORKER_SECONDS = 300.0  # presence rows not refreshed for this long are removed
RETENTION_INTERVAL = 60.0  # seconds between retention sweeps (CESAR_RETENTION_DAYS)
#: seconds between sweeps of the object store (CESAR_BLOB_URL) for objects no row names; shorter with a
#: short grace period, so an orphan waits about a quarter of it past its grace
OBJECT_SWEEP_INTERVAL = 600.0
RETENTION_BATCH = 100  # jobs deleted per transaction by a retention sweep
RETENTION_MAX_BATCHES = 5  # batches per sweep, so the housekeeping thread is back within about a second


class _Thread:
    """A daemon thread that runs ``tick()`` until :meth:`close`, sleeping what ``tick`` returns between
    runs; :meth:`wake` cuts a sleep short."""

    name = "cesar-thread"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def tick(self) -> float:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                pause = self.tick()
            except CesarError as exc:  # the database hiccuped: say so, try again soon
                log.warning("%s: %s", self.name, exc)
                pause = CHECK_INTERVAL
            except Exception:
                log.exception("%s failed", self.name)
                pause = CHECK_INTERVAL
            if self._wake.wait(max(pause, 0.01)):
                self._wake.clear()


class Housekeeping(_Thread):
    """Presence and the clean-up any worker does for everyone."""

    name = "cesar-housekeeping"

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        worker_id: str,
        *,
        current: Callable[[], str | None],
        models: Callable[[], list[str]],
        memory: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """``models``: the names of the loaded models; ``memory``: what they take (JSON), when the
        transcriber says."""
        super().__init__()
        self.store = store
        self.worker_id = worker_id
        self.current = current
        self.models = models
        self.memory = memory
        self.sweep_interval = min(SWEEP_INTERVAL, settings.lease_seconds)
        self.retention_seconds = settings.retention_days * 86400.0
        self._next_presence = 0.0
        self._last_presence = -PRESENCE_MIN_INTERVAL
        self._next_sweep = 0.0
        self._next_purge = 0.0
        self._next_retention = 0.0 if self.retention_seconds > 0 else float("inf")
        self.object_grace = settings.blob_grace_seconds
        self.object_sweep_interval = max(1.0, min(OBJECT_SWEEP_INTERVAL, self.object_grace / 4))
        self._next_object_sweep = 0.0 if store.blobs is not None else float("inf")
        self._lock = threading.Lock()

    def show_soon(self) -> None:
        """The current job changed: refresh presence now, but at most about once a second."""
        with self._lock:
            self._next_presence = min(self._next_presence, self._last_presence + PRESENCE_MIN_INTERVAL)
        self.wake()

    def tick(self) -> float:
        now = time.monotonic()
        if self._presence_due(now):
            self.store.heartbeat_worker(
                self.worker_id,
                current_job_id=self.current(),
                models=self.models(),
                memory=None if self.memory is None else self.memory(),
            )
        self.run_due(now)
        with self._lock:
            next_presence = self._next_presence
        return min(next_presence, self.next_due()) - time.monotonic()

    def _presence_due(self, now: float) -> bool:
        with self._lock:
            if now < self._next_presence:
                return False
            self._next_presence = now + PRESENCE_INTERVAL
            self._last_presence = now
            return True

    def run_due(self, now: float) -> None:
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_interval
            self.sweep()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_INTERVAL
            purged = self.store.purge_stale_uploads(older_than_seconds=STALE_UPLOAD_SECONDS)
            removed = self.store.remove_stale_workers(older_than_seconds=STALE_WORKER_SECONDS)
            if purged or removed:
                log.info("removed %d stale uploads and %d stale worker rows", purged, removed)
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_INTERVAL
            self.retain()
        if now >= self._next_object_sweep:
            self._next_object_sweep = now + self.object_sweep_interval
            self.sweep_objects()

    def sweep_objects(self) -> None:
        """Delete objects no row names any more, once past CESAR_BLOB_GRACE_SECONDS: one worker of the
        fleet per interval."""
        try:
            if not self.store.take_chore("object_sweep", every_seconds=self.object_sweep_interval):
                return
            deleted = self.store.sweep_objects(grace_seconds=self.object_grace)
        except CesarError as exc:
            log.warning("could not sweep the object store: %s", exc)
            return
        if deleted:
            log.info("deleted %d objects no job names any more", deleted)

    def retain(self) -> None:
        """Delete jobs that finished longer ago than CESAR_RETENTION_DAYS, a few batches at a time."""
        removed = self.store.purge_finished_jobs(
            older_than_seconds=self.retention_seconds,
            batch_size=RETENTION_BATCH,
            max_batches=RETENTION_MAX_BATCHES,
        )
        if removed:
            log.info(
                "retention: removed %d finished jobs older than %g days",
                removed,
                self.retention_seconds / 86400,
            )
        if removed >= RETENTION_BATCH * RETENTION_MAX_BATCHES:  # more left: come back soon
            self._next_retention = time.monotonic() + SWEEP_INTERVAL

    def sweep(self) -> None:
        swept = self.store.sweep_expired_leases()
        for job_id in swept.requeued:
            log.warning("job %s: its worker was lost; queued again", job_id)
        for part in swept.parts_requeued:
            log.warning("part %s: its worker was lost; queued again", part)
        for job_id in swept.failed:
            log.warning("job %s: its worker was lost too many times; failed", job_id)

    def next_due(self) -> float:
        return min(self._next_sweep, self._next_purge, self._next_retention, self._next_object_sweep)


class Heartbeat(_Thread):
    """Tends the running job; :meth:`begin` and :meth:`end` bracket each job the main thread runs."""

    name = "cesar-heartbeat"

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        worker_id: str,
        *,
        stop_event: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: what its timers read (a test moves its own)."""
        super().__init__()
        self.store = store
        self.worker_id = worker_id
        self.stop_event = stop_event
        self.clock = clock
        self.lease_seconds = settings.lease_seconds
        self.grace_seconds = settings.shutdown_grace_seconds
        self.extend_interval = settings.lease_seconds / 3
        self.check_interval = min(CHECK_INTERVAL, settings.lease_seconds / 4)
        self._run: JobRun | None = None
        self._state: _JobState | None = None
        self._lock = threading.Lock()

    def begin(self, run: JobRun) -> None:
        with self._lock:
            self._run = run
        self.wake()

    def end(self) -> None:
        with self._lock:
            self._run = None
        self.wake()

    @property
    def current_job_id(self) -> str | None:
        with self._lock:
            return None if self._run is None else self._run.job_id

    def tick(self) -> float:
        with self._lock:
            run = self._run
        if run is None:
            self._state = None
            return 3600.0  # until begin() wakes it
        if self._state is None or self._state.run is not run:
            self._state = _JobState(
                run, self.clock(), extend_every=self.extend_interval, check_every=self.check_interval
            )
        self._tend(self._state, self.clock())
        return self.check_interval

    def _tend(self, state: _JobState, now: float) -> None:
        run = state.run
        if run.stop_reason is not None or run.finishing:
            return
        if self.stop_event.is_set() and not state.told_grace:
            state.told_grace = True
            log.info("%s: may finish within %.0f s, then stops", run.name, self.grace_seconds)
        if run.check_shutdown():
            return
        if now >= state.next_extend:
            state.next_extend = now + self.extend_interval
            if not self._extend(run):
                self._lost(run)
                return
        if now >= state.next_check:
            state.next_check = now + self.check_interval
            if self._cancel_requested(state, now) and run.stop(StopReason.CANCELLED):
                log.info("%s: cancel requested", run.name)

    def _extend(self, run: JobRun) -> bool:
        if run.part is None:
            return self.store.extend_lease(run.job_id, self.worker_id, lease_seconds=self.lease_seconds)
        try:
            if self.store.report_part(run.part, self.worker_id, None, lease_seconds=self.lease_seconds):
                run.stop(StopReason.CANCELLED)
        except ConflictError:
            return False
        return True

    def _cancel_requested(self, state: _JobState, now: float) -> bool:
        run = state.run
        report = run.take_report() if now >= state.next_progress else None
        if report is None:
            if run.part is not None:
                return self.store.part_should_stop(run.job_id)
            return self.store.is_cancel_requested(run.job_id)
        state.next_progress = now + PROGRESS_INTERVAL
        progress, segments = report
        try:
            # one write a second per job: the progress, the segments decoded since, and the lease (a part's
            # segments are published in the file's order once it is done)
            if run.part is not None:
                requested = self.store.report_part(
                    run.part, self.worker_id, progress, lease_seconds=self.lease_seconds
                )
            else:
                requested = self.store.report_progress(
                    run.job_id, self.worker_id, progress, segments=segments, lease_seconds=self.lease_seconds
                )
        except ConflictError:
            self._lost(state.run)
            return False
        except CesarError:
            state.run.give_back(segments)  # written with the next report: no segment is skipped
            raise
        state.next_extend = now + self.extend_interval
        return requested

    def _lost(self, run: JobRun) -> None:
        if run.finishing:
            return  # the main thread just wrote the job's end: its lease went with it
        if run.stop(StopReason.LEASE_LOST):
            log.warning("%s: lease lost; another worker may own it now", run.name)


class _JobState:
    """The heartbeat's timers for one job."""

    def __init__(self, run: JobRun, now: float, *, extend_every: float, check_every: float) -> None:
        self.run = run
        self.next_extend = now + extend_every
        self.next_check = now + check_every  # a claimed job starts with no cancel request
        self.next_progress = now
        self.told_grace = False
