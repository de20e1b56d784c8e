"""The job store on a real SQLite file and a real PostgreSQL database (each test on a fresh one)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from dbtools import age
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from cesar_common.db import feed as feed_module
from cesar_common.db.audio_chunks import CHUNK_SIZE
from cesar_common.db.connect import open_engine, read_only
from cesar_common.db.feed import ChangeFeed, WorkSignal
from cesar_common.db.records import (
    JobResult,
    JobSource,
    JobStatus,
    NewJob,
    PartPlan,
    PartWork,
    TranscribeOptions,
)
from cesar_common.db.rows import Cursor, decode_cursor, encode_cursor
from cesar_common.db.store import JobStore, LeaseLostError
from cesar_common.db.tables import Job, JobAudio, jobs, workers
from cesar_common.errors import (
    ConflictError,
    DatabaseError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
)

OPTIONS = TranscribeOptions(model="tiny.en", language="en", word_timestamps=True, initial_prompt="Cesar")
UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


def upload(max_attempts: int = 3) -> NewJob:
    return NewJob(
        source=JobSource.UPLOAD,
        options=OPTIONS,
        filename="speech.wav",
        content_type="audio/wav",
        max_attempts=max_attempts,
    )


def url_job() -> NewJob:
    return NewJob(source=JobSource.URL, options=OPTIONS, source_url="https://example.org/a.mp3")


def row_counts(store: JobStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        jobs = conn.execute(select(func.count()).select_from(Job)).scalar_one()
        chunks = conn.execute(select(func.count()).select_from(JobAudio)).scalar_one()
    return jobs, chunks


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


def result(text: str = "hello world") -> JobResult:
    segments = [{"id": 0, "start": 0.0, "end": 1.5, "text": text, "words": [{"word": "hello", "p": 0.9}]}]
    return JobResult(text=text, language="en", language_probability=0.98, duration=1.5, segments=segments)


# --- creating and reading ----------------------------------------------------------------------------
def test_upload_is_stored_in_chunks_and_read_back(store: JobStore) -> None:
    data = bytes(range(256)) * (CHUNK_SIZE // 256) * 2 + b"tail"
    job = store.create_job(upload(), io.BytesIO(data))

    assert job.status is JobStatus.QUEUED
    assert job.source is JobSource.UPLOAD
    assert (job.filename, job.content_type, job.size_bytes) == ("speech.wav", "audio/wav", len(data))
    assert job.options == OPTIONS
    assert (job.attempts, job.max_attempts, job.progress, job.cancel_requested) == (0, 3, 0.0, False)
    assert_utc(job.created_at)
    assert store.get_job(job.id) == job
    assert row_counts(store) == (1, 3)  # two full chunks and the tail
    assert b"".join(store.iter_audio(job.id)) == data
    assert store.audio_size(job.id) == len(data)
    sink = io.BytesIO()
    assert store.copy_audio_to(job.id, sink) == len(data)
    assert sink.getvalue() == data


def test_audio_from_an_iterable_of_odd_sized_pieces(store: JobStore) -> None:
    pieces = [b"a" * 1000, b"b" * (CHUNK_SIZE + 7), b"", b"c" * 3]
    job = store.create_job(upload(), iter(pieces))
    assert b"".join(store.iter_audio(job.id)) == b"".join(pieces)
    assert [len(chunk) for chunk in store.iter_audio(job.id)] == [CHUNK_SIZE, 1010]


def test_url_job_is_queued_at_once(store: JobStore) -> None:
    job = store.create_job(url_job(), None)
    assert job.status is JobStatus.QUEUED
    assert job.source_url == "https://example.org/a.mp3"
    assert job.size_bytes is None
    assert list(store.iter_audio(job.id)) == []


def test_upload_without_audio_is_refused(store: JobStore) -> None:
    with pytest.raises(InvalidInputError):
        store.create_job(upload(), None)
    assert row_counts(store) == (0, 0)


def test_unknown_job_is_not_found(store: JobStore) -> None:
    for call in (store.get_job, store.iter_audio, store.audio_size, store.request_cancel, store.delete_job):
        with pytest.raises(NotFoundError):
            call("no-such-job")


def test_job_view_reads_what_get_job_reads_with_the_queue_position(store: JobStore) -> None:
    """On SQLite the view runs on the driver's cursor: its records must be the ones SQLAlchemy gives."""
    done = store.create_job(dataclasses.replace(url_job(), callback_url="https://hooks.example.org/x"), None)
    assert (claimed := store.claim_work("w1", lease_seconds=60)) is not None and claimed.id == done.id
    assert store.complete_job(done.id, "w1", result())
    running = store.create_job(url_job(), None)
    assert store.claim_work("w1", lease_seconds=60) is not None
    store.report_progress(running.id, "w1", 0.25, lease_seconds=60)
    first, second = (store.create_job(upload(), io.BytesIO(b"audio")) for _ in range(2))
    for job, position in ((done, None), (running, None), (first, 1), (second, 2)):
        view = store.job_view(job.id)
        assert view.job == store.get_job(job.id)
        assert view.queue_position == position == store.queue_position(view.job)
    assert store.job_view(done.id).job.webhook is not None
    for unknown in ("no-such-job", "x" * 500, "bad\x00id"):
        with pytest.raises(NotFoundError):
            store.job_view(unknown)


# --- uploads in flight ---------------------------------------------------------------------------------
def test_pending_upload_is_invisible_and_unclaimable_then_cleaned_up(store: JobStore) -> None:
    seen: dict[str, object] = {}

    def stream() -> Iterator[bytes]:
        yield b"x" * CHUNK_SIZE
        yield b"y" * 10  # the first chunk is stored by now; the job is still pending
        seen["page"] = store.list_jobs()
        seen["claim"] = store.claim_work("w1", lease_seconds=30)
        seen["counts"] = store.queue_counts()
        seen["rows"] = row_counts(store)
        raise OSError("client went away")

    with pytest.raises(OSError, match="client went away"):
        store.create_job(upload(), stream())

    assert seen["page"].jobs == []  # type: ignore[attr-defined]
    assert seen["claim"] is None
    assert seen["counts"].queued == 0  # type: ignore[attr-defined]
    assert seen["rows"] == (1, 1)
    assert row_counts(store) == (0, 0)  # the interrupted upload left nothing behind


def test_upload_over_the_limit_is_refused_and_removed(store: JobStore) -> None:
    with pytest.raises(PayloadTooLargeError, match="1 MiB"):
        store.create_job(upload(), io.BytesIO(b"z" * (CHUNK_SIZE + 1)), max_bytes=CHUNK_SIZE)
    assert row_counts(store) == (0, 0)
    exact = store.create_job(upload(), io.BytesIO(b"z" * CHUNK_SIZE), max_bytes=CHUNK_SIZE)
    assert exact.size_bytes == CHUNK_SIZE


def test_stale_uploads_are_purged(store: JobStore) -> None:
    purged: list[int] = []

    def stream() -> Iterator[bytes]:
        yield b"x" * CHUNK_SIZE
        purged.append(store.purge_stale_uploads(older_than_seconds=3600))  # still fresh: kept
        age(store.engine, jobs, "created_at", 7200, status="pending")  # no chunk for two hours
        purged.append(store.purge_stale_uploads(older_than_seconds=3600))  # "dead": purged
        yield b"y" * CHUNK_SIZE

    with pytest.raises(DatabaseError, match="stale"):
        store.create_job(upload(), stream())
    assert purged == [0, 1]
    assert row_counts(store) == (0, 0)


# --- listing -------------------------------------------------------------------------------------------
def test_list_pages_newest_first_with_status_filter(store: JobStore) -> None:
    created = [store.create_job(url_job(), None) for _ in range(7)]
    store.request_cancel(created[2].id)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_jobs(limit=3, cursor=cursor)
        seen += [job.id for job in page.jobs]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    # newest first; jobs created in the same millisecond (SQLite's resolution) by id, as claims order them
    assert seen == [job.id for job in sorted(created, key=lambda job: (job.created_at, job.id), reverse=True)]

    cancelled = store.list_jobs(status=JobStatus.CANCELLED)
    assert [job.id for job in cancelled.jobs] == [created[2].id]
    assert cancelled.next_cursor is None
    queued = store.list_jobs(status=JobStatus.QUEUED, limit=6)
    assert len(queued.jobs) == 6
    assert queued.next_cursor is None
    assert store.list_jobs(limit=1).jobs[0].id == created[-1].id


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


BAD_CURSORS = [
    "",
    "not base64!",
    b64("not a cursor"),
    b64("2024-01-01T00:00:00|naive"),
    b64("2024-13-01T00:00:00+00:00|bad-month"),
    b64("2024-01-01T00:00:00+00:00|"),
    b64("|"),
    "\u00e9t\u00e9",
    b64("2024-01-01T00:00:00+00:00|abc\x00|"),  # a NUL in the id
    b64("2024-01-01T00:00:00+00:00|abc|finished"),  # not a status
]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_bad_cursor_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInputError, match="cursor"):
        decode_cursor(cursor)


def test_list_refuses_a_bad_cursor(store: JobStore) -> None:
    store.create_job(url_job(), None)
    with pytest.raises(InvalidInputError, match="invalid cursor"):
        store.list_jobs(cursor=BAD_CURSORS[3])


def test_cursor_round_trip() -> None:
    stamp = datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    for cursor in (Cursor(stamp, "abc"), Cursor(stamp, "abc", "completed")):
        assert decode_cursor(encode_cursor(cursor)) == cursor
        assert "=" not in encode_cursor(cursor)


def test_a_cursor_alone_keeps_its_listing_s_filter(store: JobStore) -> None:
    created = [store.create_job(url_job(), None) for _ in range(5)]
    for job in created[:4]:
        store.request_cancel(job.id)
    first = store.list_jobs(status=JobStatus.CANCELLED, limit=2)
    assert first.next_cursor is not None
    second = store.list_jobs(cursor=first.next_cursor, limit=2)  # no status given: the cursor's
    assert [job.status for job in second.jobs] == [JobStatus.CANCELLED] * 2
    assert {job.id for job in first.jobs + second.jobs} == {job.id for job in created[:4]}
    with pytest.raises(InvalidInputError, match="continues a listing of cancelled"):
        store.list_jobs(status=JobStatus.QUEUED, cursor=first.next_cursor)


def test_list_refuses_bad_limits_and_internal_statuses(store: JobStore) -> None:
    for limit in (0, -1, 100_000):
        with pytest.raises(InvalidInputError):
            store.list_jobs(limit=limit)
    for status in (JobStatus.PENDING, "bogus"):
        with pytest.raises(InvalidInputError, match="unknown job status"):
            store.list_jobs(status=status)  # type: ignore[arg-type]
    assert store.list_jobs(status="queued").jobs == []  # type: ignore[arg-type]


def test_queue_position_and_counts(store: JobStore) -> None:
    created = [store.create_job(url_job(), None) for _ in range(3)]
    # claims take jobs by creation time, then by id (ids sort in the order they were made)
    first, second, third = sorted(created, key=lambda job: (job.created_at, job.id))
    assert [store.queue_position(job) for job in (first, second, third)] == [1, 2, 3]
    claimed = store.claim_work("w1", lease_seconds=30)
    assert claimed is not None and claimed.id == first.id
    assert store.queue_position(claimed) is None
    assert store.queue_position(store.get_job(third.id)) == 2
    counts = store.queue_counts()
    assert (counts.queued, counts.processing) == (2, 1)


# --- claiming and fencing --------------------------------------------------------------------------------
def test_claim_takes_the_oldest_and_counts_the_attempt(store: JobStore) -> None:
    created = [store.create_job(url_job(), None) for _ in range(3)]
    before = datetime.now(UTC)
    claimed = [store.claim_work(f"w{i}", lease_seconds=30) for i in range(3)]
    assert [job.id for job in claimed if job] == [job.id for job in created]
    job = claimed[0]
    assert job is not None
    assert (job.status, job.worker_id, job.attempts) == (JobStatus.PROCESSING, "w0", 1)
    assert_utc(job.started_at)
    assert_utc(job.lease_expires_at)
    assert job.started_at is not None and job.lease_expires_at is not None
    assert before <= job.started_at <= datetime.now(UTC)
    assert job.lease_expires_at - job.started_at == timedelta(seconds=30)
    assert store.claim_work("w9", lease_seconds=30) is None


def test_only_the_holder_may_touch_a_processing_job(store: JobStore) -> None:
    job = store.create_job(upload(), io.BytesIO(b"audio"))
    assert store.claim_work("w1", lease_seconds=30) is not None

    assert store.complete_job(job.id, "w2", result()) is False
    assert store.fail_job(job.id, "w2", code="x", message="x") is False
    assert store.cancel_running(job.id, "w2") is False
    assert store.release_job(job.id, "w2") is False
    assert store.extend_lease(job.id, "w2", lease_seconds=30) is False
    with pytest.raises(LeaseLostError) as lost:
        store.report_progress(job.id, "w2", 0.5)
    assert isinstance(lost.value, ConflictError)
    assert lost.value.code == "lease_lost"
    untouched = store.get_job(job.id)
    assert (untouched.status, untouched.worker_id, untouched.progress) == (JobStatus.PROCESSING, "w1", 0.0)

    assert store.report_progress(job.id, "w1", 0.25) is False
    assert store.report_progress(job.id, "w1", 7) is False
    assert store.get_job(job.id).progress == 1.0  # clamped
    before = store.get_job(job.id).lease_expires_at
    assert before is not None
    assert store.extend_lease(job.id, "w1", lease_seconds=300) is True
    after = store.get_job(job.id).lease_expires_at
    assert after is not None and after > before


def test_complete_stores_the_result_and_drops_the_audio(store: JobStore) -> None:
    job = store.create_job(upload(), io.BytesIO(b"audio" * 1000))
    store.claim_work("w1", lease_seconds=30)
    assert store.complete_job(job.id, "w1", result("bonjour")) is True

    done = store.get_job(job.id)
    assert done.status is JobStatus.COMPLETED
    assert (done.result_text, done.detected_language, done.language_probability) == ("bonjour", "en", 0.98)
    assert done.duration == 1.5
    assert done.segments is None  # megabytes for a long file: only read when asked for
    assert store.get_job(job.id, with_segments=True).segments == result("bonjour").segments
    assert all(job.segments is None for job in store.list_jobs().jobs)
    assert done.progress == 1.0
    assert_utc(done.completed_at)
    assert done.is_final
    assert store.audio_size(job.id) == 0
    with pytest.raises(NotFoundError, match="no longer stored"):
        store.iter_audio(job.id)
    # final: nobody can change it any more
    assert store.complete_job(job.id, "w1", result("again")) is False
    assert store.fail_job(job.id, "w1", code="x", message="y") is False
    assert store.get_job(job.id).result_text == "bonjour"


def test_keep_audio_keeps_it_after_the_job_ends(db_url: str, store: JobStore) -> None:
    keeping = JobStore(store.engine, keep_audio=True)
    job = keeping.create_job(upload(), io.BytesIO(b"audio"))
    keeping.claim_work("w1", lease_seconds=30)
    assert keeping.fail_job(job.id, "w1", code="decode_failed", message="no audio stream") is True
    assert b"".join(keeping.iter_audio(job.id)) == b"audio"


def test_fail_records_the_error(store: JobStore) -> None:
    job = store.create_job(upload(), io.BytesIO(b"audio"))
    store.claim_work("w1", lease_seconds=30)
    assert store.fail_job(job.id, "w1", code="decode_failed", message="no audio stream") is True
    failed = store.get_job(job.id)
    assert (failed.status, failed.error_code, failed.error_message) == (
        JobStatus.ERROR,
        "decode_failed",
        "no audio stream",
    )
    assert_utc(failed.completed_at)
    assert store.audio_size(job.id) == 0


# --- cancelling, releasing, deleting ----------------------------------------------------------------------
def test_cancel_a_queued_job_at_once(store: JobStore) -> None:
    job = store.create_job(upload(), io.BytesIO(b"audio"))
    cancelled = store.request_cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert_utc(cancelled.completed_at)
    assert store.claim_work("w1", lease_seconds=30) is None
    assert store.audio_size(job.id) == 0
    with pytest.raises(ConflictError, match="already cancelled"):
        store.request_cancel(job.id)


def test_cancel_a_processing_job_through_its_worker(store: JobStore) -> None:
    job = store.create_job(url_job(), None)
    store.claim_work("w1", lease_seconds=30)
    assert store.is_cancel_requested(job.id) is False

    flagged = store.request_cancel(job.id)
    assert (flagged.status, flagged.cancel_requested) == (JobStatus.PROCESSING, True)
    assert store.request_cancel(job.id).cancel_requested  # asking twice is fine
    assert store.is_cancel_requested(job.id) is True
    assert store.report_progress(job.id, "w1", 0.5) is True  # the worker learns it here

    assert store.cancel_running(job.id, "w1") is True
    assert store.get_job(job.id).status is JobStatus.CANCELLED
    assert store.is_cancel_requested(job.id) is True
    with pytest.raises(ConflictError):
        store.request_cancel(job.id)


def test_release_hands_the_job_back_without_counting_the_attempt(store: JobStore) -> None:
    job = store.create_job(url_job(), None)
    store.claim_work("w1", lease_seconds=30)
    assert store.release_job(job.id, "w1") is True
    back = store.get_job(job.id)
    assert (back.status, back.attempts, back.worker_id, back.lease_expires_at) == (
        JobStatus.QUEUED,
        0,
        None,
        None,
    )
    again = store.claim_work("w2", lease_seconds=30)
    assert again is not None and (again.id, again.attempts) == (job.id, 1)

    store.request_cancel(job.id)
    assert store.release_job(job.id, "w2") is True  # a cancel was asked for: released means cancelled
    assert store.get_job(job.id).status is JobStatus.CANCELLED


def test_delete_only_finished_jobs(store: JobStore) -> None:
    job = store.create_job(upload(), io.BytesIO(b"audio"))
    with pytest.raises(ConflictError):
        store.delete_job(job.id)
    store.claim_work("w1", lease_seconds=30)
    with pytest.raises(ConflictError):
        store.delete_job(job.id)
    store.cancel_running(job.id, "w1")
    store.delete_job(job.id)
    with pytest.raises(NotFoundError):
        store.get_job(job.id)
    assert row_counts(store) == (0, 0)


def test_purge_finished_jobs(store: JobStore) -> None:
    old = store.create_job(url_job(), None)
    store.request_cancel(old.id)
    waiting = store.create_job(url_job(), None)
    assert store.purge_finished_jobs(older_than_seconds=3600) == 0
    age(store.engine, jobs, "completed_at", 7200, id=old.id)
    assert store.purge_finished_jobs(older_than_seconds=3600) == 1
    assert store.get_job(waiting.id).status is JobStatus.QUEUED
    with pytest.raises(NotFoundError):
        store.get_job(old.id)


# --- leases ----------------------------------------------------------------------------------------------
def test_expired_leases_are_requeued_then_failed(store: JobStore) -> None:
    job = store.create_job(upload(max_attempts=2), io.BytesIO(b"audio"))
    live = store.create_job(url_job(), None)
    store.claim_work("w1", lease_seconds=10)
    store.claim_work("w2", lease_seconds=600)
    assert store.sweep_expired_leases().requeued == []  # by the database's clock, nothing expired yet
    age(store.engine, Job.__table__, "lease_expires_at", 11, id=job.id)  # 11 s went by for w1

    first = store.sweep_expired_leases()
    assert (first.requeued, first.failed) == ([job.id], [])
    requeued = store.get_job(job.id)
    assert (requeued.status, requeued.worker_id, requeued.attempts) == (JobStatus.QUEUED, None, 1)
    assert store.get_job(live.id).status is JobStatus.PROCESSING  # its lease still runs

    assert store.claim_work("w3", lease_seconds=10) is not None
    assert store.complete_job(job.id, "w1", result()) is False  # the lost worker is fenced out
    age(store.engine, Job.__table__, "lease_expires_at", 11, id=job.id)
    second = store.sweep_expired_leases()
    assert (second.requeued, second.failed) == ([], [job.id])
    lost = store.get_job(job.id)
    assert (lost.status, lost.error_code, lost.error_message) == (
        JobStatus.ERROR,
        "worker_lost",
        "worker lost 2 times",
    )
    assert store.audio_size(job.id) == 0
    assert store.sweep_expired_leases().requeued == []


def test_an_expired_job_whose_cancel_was_requested_is_cancelled(store: JobStore) -> None:
    job = store.create_job(url_job(), None)
    store.claim_work("w1", lease_seconds=1)
    store.request_cancel(job.id)
    age(store.engine, Job.__table__, "lease_expires_at", 2, id=job.id)
    swept = store.sweep_expired_leases()
    assert (swept.requeued, swept.failed) == ([], [])
    assert store.get_job(job.id).status is JobStatus.CANCELLED


# --- workers --------------------------------------------------------------------------------------------
def test_worker_presence(store: JobStore) -> None:
    store.register_worker("w1", host="alpha", pid=101)
    store.register_worker("w2", host="beta", pid=202)
    store.heartbeat_worker("w1", current_job_id="job-1", models=["tiny.en"])

    alive = {worker.id: worker for worker in store.list_workers(alive_within_seconds=60)}
    assert set(alive) == {"w1", "w2"}
    assert (alive["w1"].host, alive["w1"].pid) == ("alpha", 101)
    assert (alive["w1"].current_job_id, alive["w1"].models) == ("job-1", ["tiny.en"])
    assert alive["w2"].models == []
    assert_utc(alive["w1"].last_seen_at)

    store.register_worker("w1", host="alpha", pid=303)  # restarted under the same id
    assert {w.id: w.pid for w in store.list_workers(alive_within_seconds=60)}["w1"] == 303

    store.unregister_worker("w2")
    assert store.remove_stale_workers(older_than_seconds=3600) == 0
    age(store.engine, workers, "last_seen_at", 7200, id="w1")
    assert store.list_workers(alive_within_seconds=3600) == []
    assert store.remove_stale_workers(older_than_seconds=3600) == 1

    store.heartbeat_worker("w1", current_job_id=None, models=[])  # removed meanwhile: comes back
    assert [w.id for w in store.list_workers(alive_within_seconds=60)] == ["w1"]


# --- waiting for work ----------------------------------------------------------------------------------
@contextlib.contextmanager
def work_signal(store: JobStore, stop: threading.Event | None = None) -> Iterator[WorkSignal]:
    feed = ChangeFeed(store.engine)
    try:
        with WorkSignal(feed, stop_event=stop) as signal:
            yield signal
    finally:
        feed.close()


def test_waiter_wakes_when_a_job_is_queued(db_url: str, store: JobStore) -> None:
    with work_signal(store) as waiter:
        assert waiter.wait(0.2) is False
        timer = threading.Timer(0.2, lambda: store.create_job(url_job(), None))
        timer.start()
        try:
            assert waiter.wait(30) is True
        finally:
            timer.join()
        store.claim_work("w1", lease_seconds=30)
        assert waiter.wait(0.2) is False  # the claim is not news


def test_a_part_queued_wakes_an_idle_waiter(db_url: str, store: JobStore) -> None:
    """Parts are claimed before jobs: a part turning claimable (here: handed back) is work too, on SQLite
    as on PostgreSQL, heard at once rather than at the next poll."""
    job = store.create_job(url_job(), None)
    claimed = store.claim_work("cutter", lease_seconds=30)
    assert claimed is not None and claimed.id == job.id
    store.split_job(job.id, "cutter", [PartPlan(0.0, 1.0)], language="en", language_probability=1.0)
    part = store.claim_work("w1", lease_seconds=30)
    assert isinstance(part, PartWork)
    with work_signal(store) as waiter:
        assert waiter.wait(0.2) is False  # nothing waits: the one part is held
        timer = threading.Timer(0.2, lambda: store.release_part(part, "w1"))
        timer.start()
        try:
            assert waiter.wait(30) is True
        finally:
            timer.join()
    assert store.claim_work("w2", lease_seconds=30) is not None


def test_a_postgres_notification_is_handed_on_the_moment_it_arrives(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener hands each notification on as it comes, not when its wait for more ends: with that
    wait an hour long, a queued job still wakes the waiter."""
    monkeypatch.setattr(feed_module, "LISTEN_STEP_SECONDS", 3600.0)
    store = JobStore.from_url(postgres_url)
    try:
        with work_signal(store) as waiter:
            store.create_job(url_job(), None)
            assert waiter.wait(30) is True
    finally:
        store.close()


def test_waiter_honours_its_stop_event(store: JobStore) -> None:
    stop = threading.Event()
    with work_signal(store, stop) as waiter:
        stop.set()
        assert waiter.wait(30) is False


def test_postgres_waiter_survives_a_lost_connection_and_ignores_other_schemas(
    postgres_url: str, postgres_server_url: str
) -> None:
    store = JobStore.from_url(postgres_url)
    with work_signal(store) as waiter:
        assert waiter.wait(0.1) is False  # listening since it was made: nothing to look at yet
        # end every connection of this test (they all carry its application_name), the feed's among them
        name = make_url(postgres_url).query["application_name"]
        conninfo = make_url(postgres_server_url).set(drivername="postgresql")
        with psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (name,),
            )
        assert waiter.wait(30) is True  # listening again: anything missed meanwhile means "look"
        assert waiter.wait(0.1) is False
        with psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True) as admin:
            admin.execute("SELECT pg_notify('cesar_jobs', 'another_schema')")
        assert waiter.wait(0.3) is False  # jobs of another schema (another Cesar) are not ours
        timer = threading.Timer(0.2, lambda: store.create_job(url_job(), None))
        timer.start()
        assert waiter.wait(30) is True
        timer.join()


# --- the SQLite engine -------------------------------------------------------------------------------
def test_sqlite_connections_are_set_up_for_several_processes(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    with engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
        }
    engine.dispose()
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 30_000, "synchronous": 1, "foreign_keys": 1}


def test_sqlite_writes_take_the_lock_at_begin_and_reads_do_not_wait(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    path = make_url(sqlite_url).database
    assert path is not None
    with engine.begin() as conn:  # BEGIN IMMEDIATE: the write lock is ours before any statement
        conn.exec_driver_sql("SELECT 1")
        other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            with read_only(engine).connect() as reader:  # a reader is not blocked by the writer
                assert reader.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == 0
        finally:
            other.close()
    engine.dispose()


# --- errors and restarts -------------------------------------------------------------------------------
def test_unreachable_database_is_a_database_error() -> None:
    store = JobStore.from_url(UNREACHABLE_URL)
    with pytest.raises(DatabaseError) as raised:
        store.ping()
    assert raised.value.__cause__ is not None
    assert raised.value.status_code == 503
    with pytest.raises(DatabaseError):
        store.get_job("x")


CREATE_SCRIPT = """
import io, sys
from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
store = JobStore.from_url(sys.argv[1])
new = NewJob(source=JobSource.UPLOAD, options=TranscribeOptions(model="tiny.en"), filename="a.wav")
print(store.create_job(new, io.BytesIO(b"survives" * 300000)).id)
"""


def test_jobs_survive_a_restart(db_url: str) -> None:
    """Created by one process, read back by another (this one, with a new engine)."""
    created = subprocess.run(
        [sys.executable, "-c", CREATE_SCRIPT, db_url], capture_output=True, text=True, timeout=60
    )
    assert created.returncode == 0, created.stderr
    store = JobStore.from_url(db_url)
    job = store.get_job(created.stdout.strip())
    assert (job.status, job.filename, job.size_bytes) == (JobStatus.QUEUED, "a.wav", 8 * 300000)
    assert b"".join(store.iter_audio(job.id)) == b"survives" * 300000
    store.close()
