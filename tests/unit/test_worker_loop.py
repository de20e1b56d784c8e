"""The worker loop in-process, on a real SQLite job store, with a fake engine (see tests/fake_worker.py)."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from dbtools import age
from fake_worker import FakeEngine

from cesar_common.db.records import JobRecord, JobSource, JobStatus, NewJob, PartPlan, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import jobs
from cesar_common.errors import DatabaseError, SchemaOutdatedError
from cesar_common.settings import Settings
from cesar_worker import worker as worker_module
from cesar_worker.heartbeat import CHECK_INTERVAL, PROGRESS_INTERVAL, Heartbeat
from cesar_worker.jobrun import JobRun
from cesar_worker.worker import Worker, remove_orphaned_temp_dirs, run_worker

FAST = {"lease_seconds": 5.0, "shutdown_grace_seconds": 5.0, "poll_max_seconds": 0.2}


class Harness:
    """A worker on a fresh SQLite file, run in this process (in a thread when it must wait)."""

    def __init__(self, url: str, **overrides: Any) -> None:
        self.settings = Settings(database_url=url, **{**FAST, **overrides})
        self.store = JobStore.from_url(url)
        self.engine = FakeEngine()
        self.stop = threading.Event()
        self.worker = Worker(self.settings, self.store, self.engine, worker_id="w1", stop_event=self.stop)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def submit(self, prompt: str | None = None, *, model: str = "tiny.en", audio: bytes = b"RIFF") -> str:
        new = NewJob(
            source=JobSource.UPLOAD,
            options=TranscribeOptions(model=model, initial_prompt=prompt),
            filename="talk.wav",
        )
        return self.store.create_job(new, audio).id

    def run_once(self) -> None:
        self.worker.run(once=True)

    def start(self) -> None:
        def target() -> None:
            try:
                self.worker.run()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def stop_and_join(self, timeout: float = 10.0) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)
            assert not self.thread.is_alive(), "the worker did not stop"
        assert self.error is None, self.error

    def job(self, job_id: str) -> JobRecord:
        return self.store.get_job(job_id, with_segments=True)

    def wait(self, job_id: str, predicate: Callable[[JobRecord], bool], timeout: float = 30.0) -> JobRecord:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if predicate(job):
                return job
            assert time.monotonic() < deadline, f"timed out; job is {job.status} ({job.progress:.2f})"
            time.sleep(0.01)


@pytest.fixture
def harness_factory(sqlite_url: str) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**overrides: Any) -> Harness:
        harness = Harness(sqlite_url, **overrides)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.stop.set()
        if harness.thread is not None:
            harness.thread.join(5)


@pytest.fixture
def harness(harness_factory: Callable[..., Harness]) -> Harness:
    return harness_factory()


def test_once_processes_the_queue_in_creation_order(harness: Harness) -> None:
    ids = [harness.submit(audio=f"audio {n}".encode()) for n in range(3)]
    harness.run_once()

    assert harness.engine.started == ids
    for n, job_id in enumerate(ids):
        job = harness.job(job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.result_text == f"fake transcript of {job_id}"
        assert job.attempts == 1 and job.progress == 1.0 and job.worker_id == "w1"
        assert job.segments == [{"id": 0, "start": 0.0, "end": 1.0, "text": "fake"}]
        assert harness.engine.audio[job_id] == f"audio {n}".encode()  # streamed from the database
    assert harness.engine.closed
    assert harness.store.list_workers(alive_within_seconds=60) == []  # unregistered on exit


def test_bad_jobs_end_in_error_and_the_worker_goes_on(harness_factory: Callable[..., Harness]) -> None:
    harness = harness_factory(models=["tiny.en"])
    not_allowed = harness.submit(model="large-v3")
    undecodable = harness.submit("fail")
    buggy = harness.submit("crash")
    empty = harness.submit(audio=b"")
    fine = harness.submit()
    harness.run_once()

    job = harness.job(not_allowed)
    assert (job.status, job.error_code) == (JobStatus.ERROR, "model_not_allowed")
    assert "model 'large-v3' is not allowed" in (job.error_message or "")
    job = harness.job(undecodable)
    assert (job.status, job.error_code) == (JobStatus.ERROR, "decode_failed")
    assert job.error_message == "fake: this audio does not decode"
    job = harness.job(buggy)
    assert (job.status, job.error_code) == (JobStatus.ERROR, "internal_error")
    assert "fake engine bug" in (job.error_message or "")
    job = harness.job(empty)
    assert (job.status, job.error_code) == (JobStatus.ERROR, "decode_failed")
    assert "empty" in (job.error_message or "")
    assert harness.job(fine).status is JobStatus.COMPLETED
    # deterministic failures are not retried
    assert all(harness.job(job_id).attempts == 1 for job_id in (not_allowed, undecodable, buggy, empty))


def test_cancel_stops_a_running_job_between_segments(harness: Harness) -> None:
    job_id = harness.submit("slow:600")
    harness.start()
    harness.wait(job_id, lambda job: job.progress > 0)  # progress reaches the database while it runs
    harness.store.request_cancel(job_id)
    job = harness.wait(job_id, lambda job: job.is_final, timeout=60)
    assert job.status is JobStatus.CANCELLED and job.progress < 0.5  # stopped mid-job, not at its end
    harness.stop_and_join()


def test_progress_is_written_about_once_a_second(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """However often the engine reports, the heartbeat writes a job's progress once per PROGRESS_INTERVAL,
    on a clock the test moves."""
    written: list[float] = []
    report = harness.store.report_progress

    def counting(job_id: str, worker_id: str, progress: float, **kwargs: Any) -> bool:
        written.append(progress)
        return report(job_id, worker_id, progress, **kwargs)

    monkeypatch.setattr(harness.store, "report_progress", counting)
    harness.submit()
    job = harness.store.claim_work("w1", lease_seconds=30)
    assert isinstance(job, JobRecord)
    now = [1000.0]
    heartbeat = Heartbeat(
        harness.store, harness.settings, "w1", stop_event=harness.stop, clock=lambda: now[0]
    )
    run = JobRun(job)
    heartbeat.begin(run)
    step, seconds = 0.02, 3.0
    for n in range(round(seconds / step)):  # 150 reports, as a fake engine decoding 3 s would make
        run.on_progress(n * step, seconds)
        heartbeat.tick()
        now[0] += step
    # the first write at the first check (CHECK_INTERVAL in), then one a PROGRESS_INTERVAL after it
    assert len(written) == 1 + int((seconds - CHECK_INTERVAL) // PROGRESS_INTERVAL) == 3, written
    assert written == sorted(written) and 0 < written[0] < written[-1] < 1


def test_stop_hands_the_running_job_back_after_the_grace_period(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = harness_factory(shutdown_grace_seconds=0.3)
    running = harness.submit("slow:600")  # would outlast the join's deadline if the grace were ignored
    waiting = harness.submit()
    harness.start()
    harness.wait(running, lambda job: job.status is JobStatus.PROCESSING)
    harness.stop_and_join(timeout=60)
    job = harness.job(running)
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.QUEUED, 0, None)
    assert harness.job(waiting).status is JobStatus.QUEUED  # no claim after the stop


def test_stop_lets_the_running_job_finish_within_the_grace_period(harness: Harness) -> None:
    running = harness.submit("slow:0.8")
    harness.start()
    harness.wait(running, lambda job: job.status is JobStatus.PROCESSING)
    harness.stop.set()
    waiting = harness.submit()
    harness.stop_and_join()
    assert harness.job(running).status is JobStatus.COMPLETED
    assert harness.job(waiting).status is JobStatus.QUEUED


def test_a_lost_lease_abandons_the_job_without_writing(harness_factory: Callable[..., Harness]) -> None:
    harness = harness_factory(lease_seconds=0.6)
    job_id = harness.submit("slow-first:30")
    harness.start()
    harness.wait(job_id, lambda job: job.status is JobStatus.PROCESSING)
    # as if this worker had been paused past its lease: another worker's sweep takes the job back
    age(harness.store.engine, jobs, "lease_expires_at", 3600, id=job_id)
    swept = harness.store.sweep_expired_leases()
    assert swept.requeued == [job_id]
    # the heartbeat notices, the first run stops without writing, and the retry completes
    job = harness.wait(job_id, lambda job: job.is_final)
    harness.stop_and_join()
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    assert harness.engine.started == [job_id, job_id]


def test_a_dead_workers_job_is_swept_and_retried(harness: Harness) -> None:
    job_id = harness.submit()
    assert harness.store.claim_work("dead-worker", lease_seconds=30) is not None
    age(harness.store.engine, jobs, "lease_expires_at", 3600, id=job_id)  # the dead worker's lease ran out
    harness.run_once()  # sweeps before its first claim
    job = harness.job(job_id)
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.COMPLETED, 2, "w1")


def test_the_loop_survives_database_errors(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = harness.submit()
    claim = harness.store.claim_work
    failures = iter([DatabaseError("job database error: disk I/O error")])

    def flaky(worker_id: str, *, lease_seconds: float) -> JobRecord | None:
        for exc in failures:
            raise exc
        return claim(worker_id, lease_seconds=lease_seconds)

    monkeypatch.setattr(harness.store, "claim_work", flaky)
    harness.run_once()
    assert harness.job(job_id).status is JobStatus.COMPLETED


def test_presence_shows_the_current_job(harness: Harness) -> None:
    job_id = harness.submit("slow:30")
    harness.start()
    harness.wait(job_id, lambda job: job.status is JobStatus.PROCESSING)
    deadline = time.monotonic() + 3
    while True:
        rows = harness.store.list_workers(alive_within_seconds=30)
        if rows and rows[0].current_job_id == job_id:
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.02)
    assert (rows[0].id, rows[0].models) == ("w1", ["fake"])
    harness.stop.set()  # the job is handed back after the grace period (5 s): cancel instead
    harness.store.request_cancel(job_id)
    harness.stop_and_join()
    assert harness.store.list_workers(alive_within_seconds=30) == []


def idle_for_an_hour(harness_factory: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> Harness:
    """A worker waiting for work whose next look by itself would be an hour away: anything it does
    sooner, the change feed woke it for."""
    monkeypatch.setattr(worker_module, "POLL_MIN_SECONDS", 3600.0)
    harness = harness_factory(poll_max_seconds=3600.0)
    harness.start()
    deadline = time.monotonic() + 30
    while not harness.worker.waiter.waiting:
        assert time.monotonic() < deadline, "the worker never went idle"
        time.sleep(0.01)
    return harness


def test_an_idle_worker_wakes_when_a_job_is_queued(
    harness_factory: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = idle_for_an_hour(harness_factory, monkeypatch)
    job_id = harness.submit()
    assert harness.wait(job_id, lambda job: job.is_final, timeout=60).status is JobStatus.COMPLETED
    harness.stop_and_join()


def test_an_idle_worker_wakes_when_a_part_is_queued(
    harness_factory: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts are claimed before jobs, so a part turning claimable is work too: on SQLite the feed asks the
    claim's own question after each commit, and the idle worker takes the part at once."""
    harness = idle_for_an_hour(harness_factory, monkeypatch)
    store = harness.store
    job = store.create_job(
        NewJob(
            source=JobSource.URL,
            source_url="https://example.com/a.wav",
            options=TranscribeOptions(model="tiny.en"),
        ),
        None,
    )
    # another worker claims and cuts it, handing a part of its audio to the queue
    assert store.claim_work("cutter", lease_seconds=30) is not None
    store.store_part_audio(job.id, "cutter", 0, b"\0\0" * 16000, lease_seconds=30)
    assert store.split_job(job.id, "cutter", [PartPlan(0.0, 1.0)], language="en", language_probability=1.0)
    done = harness.wait(job.id, lambda job: job.is_final, timeout=60)
    assert done.status is JobStatus.COMPLETED and harness.engine.started == [job.id]  # the part, by w1
    harness.stop_and_join()


def test_run_worker_checks_the_schema_and_preloads(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, **FAST)
    engine = FakeEngine()
    assert run_worker(settings, once=True, preload=True, transcriber_factory=lambda _s: engine) == 0
    assert engine.preloaded == [settings.model]


def test_run_worker_refuses_an_outdated_schema(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", **FAST)
    with pytest.raises(SchemaOutdatedError, match="cesar db upgrade"):
        run_worker(settings, once=True, transcriber_factory=lambda _s: FakeEngine())


def test_a_killed_workers_temp_files_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    orphan = tmp_path / f"cesar-job-{dead}-abc"
    mine = tmp_path / f"cesar-job-{os.getpid()}-def"
    other = tmp_path / "something-else"
    for path in (orphan, mine, other):
        path.mkdir()
        (path / "audio.wav").write_bytes(b"x")
    assert remove_orphaned_temp_dirs(tmp_path) == 1
    assert not orphan.exists() and mine.exists() and other.exists()


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# --- trust: clocks, slow housekeeping, downloads ----------------------------------------------------------
def test_a_sweeper_whose_clock_runs_ahead_requeues_nothing_alive(
    harness_factory: Callable[..., Harness],
) -> None:
    """Every clock the sweeping process reads (datetime, time.time, however a module imported them) is
    moved 90 s ahead, past the lease: leases are the database's business, so a live job stays with its
    worker."""
    harness = harness_factory(lease_seconds=60.0)
    job_id = harness.submit("slow:600")
    harness.start()
    harness.wait(job_id, lambda job: job.status is JobStatus.PROCESSING)
    sweeper = harness_factory()  # another worker's housekeeping, with the skewed clock
    lease = harness.job(job_id).lease_expires_at
    assert lease is not None
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=90), tick=True):
        assert datetime.now(UTC) > lease and time.time() > lease.timestamp()  # by this host, it expired
        sweeper.worker.housekeeping.sweep()
    assert harness.job(job_id).status is JobStatus.PROCESSING
    harness.store.request_cancel(job_id)
    harness.wait(job_id, lambda job: job.is_final)
    harness.stop_and_join()


def test_slow_housekeeping_never_delays_the_lease(
    harness_factory: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Housekeeping that takes three leases' time: the job's lease is renewed anyway, so another worker's
    sweep finds nothing to take back."""
    harness = harness_factory(lease_seconds=1.0)
    blocked = threading.Event()
    release = threading.Event()

    def slow_purge(**_: object) -> int:
        blocked.set()
        release.wait(10)
        return 0

    monkeypatch.setattr(harness.store, "purge_stale_uploads", slow_purge)
    job_id = harness.submit("slow:600")
    harness.start()
    harness.wait(job_id, lambda job: job.status is JobStatus.PROCESSING)
    assert blocked.wait(30)
    first = harness.job(job_id).lease_expires_at
    assert first is not None
    # while the purge hangs, the lease is pushed three leases' length further: renewal never waited on it
    renewed = harness.wait(
        job_id,
        lambda job: job.lease_expires_at is not None and job.lease_expires_at > first + timedelta(seconds=3),
    )
    assert blocked.is_set() and not release.is_set() and renewed.attempts == 1
    sweeper = harness_factory()
    assert sweeper.store.sweep_expired_leases().requeued == []
    release.set()
    harness.store.request_cancel(job_id)
    assert harness.wait(job_id, lambda job: job.is_final).status is JobStatus.CANCELLED
    harness.stop_and_join()


def test_a_finished_job_is_never_reported_as_a_lost_lease(
    harness_factory: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    harness = harness_factory(lease_seconds=0.3)  # renewals every 0.1 s: many race the completions
    ids = [harness.submit("slow:0.15") for _ in range(15)]
    with caplog.at_level("WARNING"):
        harness.run_once()
    assert all(harness.job(job_id).status is JobStatus.COMPLETED for job_id in ids)
    assert not [record for record in caplog.records if "lease lost" in record.getMessage()]


@contextlib.contextmanager
def trickling_server() -> Iterator[str]:
    """A server that sends 100 bytes every 2 s for ten minutes: only a cancel ends a download from it."""

    class Trickle(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(10**8))
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(300):
                    self.wfile.write(b"\0" * 100)
                    self.wfile.flush()
                    time.sleep(2)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/audio.mp3"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(60)
def test_a_trickling_download_is_cancelled_and_the_worker_moves_on(
    harness_factory: Callable[..., Harness], audio_dir: Path
) -> None:
    harness = harness_factory(allow_private_urls=True)
    with trickling_server() as server:
        new = NewJob(source=JobSource.URL, options=TranscribeOptions(model="tiny.en"), source_url=server)
        slow = harness.store.create_job(new, None).id
        harness.start()
        harness.wait(slow, lambda job: job.status is JobStatus.PROCESSING)
        harness.store.request_cancel(slow)
        assert harness.wait(slow, lambda job: job.is_final, timeout=10).status is JobStatus.CANCELLED
        after = harness.submit()  # the worker is free again
        assert harness.wait(after, lambda job: job.is_final, timeout=10).status is JobStatus.COMPLETED
    harness.stop_and_join()
