"""Live sessions at the job store, on SQLite and PostgreSQL: a session is a queued job with a stream of its
own, claimed apart from file work; its audio is appended a chunk at a time until it ends; its worker reports
confirmed segments and tentative words under a fenced lease; a session whose worker is lost goes back to the
queue keeping what was confirmed, and a finished one keeps its segments until it is deleted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from dbtools import age
from sqlalchemy import func, select, update

from cesar_common.db.idempotency import IdempotencyKeyReusedError
from cesar_common.db.records import (
    AudioFormat,
    JobRecord,
    JobResult,
    JobSource,
    JobStatus,
    LiveEnd,
    NewJob,
    TranscribeOptions,
)
from cesar_common.db.store import JobStore, LeaseLostError
from cesar_common.db.tables import job_audio, job_segments, jobs, live_sessions

LEASE = 30.0
OPTIONS = TranscribeOptions(model="tiny.en", language="en", word_timestamps=True)


def live(key: str | None = None, options: TranscribeOptions = OPTIONS) -> NewJob:
    return NewJob(source=JobSource.LIVE, options=options, idempotency_key=key)


def open_session(store: JobStore, rate: int | None = 16000) -> JobRecord:
    job, created = store.open_live_session(live(), AudioFormat.PCM_S16LE, rate)
    assert created
    return job


def file_job(store: JobStore) -> JobRecord:
    new = NewJob(source=JobSource.UPLOAD, options=OPTIONS, filename="a.wav", content_type="audio/wav")
    return store.create_job(new, b"RIFF-not-really-audio")


def claimed_session(store: JobStore, worker: str = "w1") -> JobRecord:
    job = open_session(store)
    claimed = store.claim_live(worker, lease_seconds=LEASE)
    assert claimed is not None and claimed.id == job.id
    return claimed


def segment(start: float, text: str) -> dict[str, Any]:
    return {"start": start, "end": start + 0.5, "text": text, "words": []}


def report(store: JobStore, job_id: str, worker: str, *texts: str, tentative: str = "") -> bool:
    segments = [segment(float(n), text) for n, text in enumerate(texts)]
    return store.report_live(
        job_id,
        worker,
        segments=segments,
        tentative=tentative,
        tentative_start=None,
        behind_seconds=0.5,
        lease_seconds=LEASE,
    )


def texts(store: JobStore, job_id: str, first: int = 0) -> list[tuple[int, str]]:
    return [(s["id"], s["text"]) for s in store.live_segments(job_id, first=first)]


def result(text: str = "hello there") -> JobResult:
    segments = [{"id": 0, "start": 0.0, "end": 1.0, "text": text, "words": []}]
    return JobResult(text=text, language="en", language_probability=1.0, duration=1.0, segments=segments)


def count(store: JobStore, table: Any, job_id: str) -> int:
    key = table.c.job_id if "job_id" in table.c else table.c.id
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(key == job_id)).scalar_one())


def age_audio(store: JobStore, job_id: str, seconds: float) -> None:
    """Move the session's last audio ``seconds`` into the past, as if that long went by on the database's
    clock without audio (dbtools.age for a table keyed by ``job_id``)."""
    where = live_sessions.c.job_id == job_id
    with store.engine.begin() as conn:
        at = conn.execute(select(live_sessions.c.audio_at).where(where)).scalar_one()
        conn.execute(update(live_sessions).where(where).values(audio_at=at - timedelta(seconds=seconds)))


# --- opening and claiming ----------------------------------------------------------------------------
def test_a_session_is_a_queued_live_job_with_an_empty_stream(store: JobStore) -> None:
    job = open_session(store, 44100)
    assert (job.status, job.source, job.attempts, job.worker_id) == (
        JobStatus.QUEUED,
        JobSource.LIVE,
        0,
        None,
    )
    assert job.options == OPTIONS
    assert store.get_job(job.id) == job

    state = store.live_state(job.id)
    assert state is not None
    assert (state.job_id, state.audio_format, state.sample_rate) == (job.id, AudioFormat.PCM_S16LE, 44100)
    assert (state.audio_bytes, state.chunks, state.ended) == (0, 0, None)
    assert (state.tentative, state.tentative_start) == ("", None)
    assert state.idle_seconds >= 0.0
    assert store.live_audio(job.id, from_seq=0) == []

    container, _ = store.open_live_session(live(), AudioFormat.CONTAINER, None)
    container_state = store.live_state(container.id)
    assert container_state is not None
    assert (container_state.audio_format, container_state.sample_rate) == (AudioFormat.CONTAINER, None)

    assert store.live_state(file_job(store).id) is None  # a file job has no stream


def test_file_claims_never_take_a_session_and_live_claims_never_take_a_file(store: JobStore) -> None:
    session = open_session(store)
    assert store.claim_work("files", lease_seconds=LEASE) is None
    assert store.get_job(session.id).status is JobStatus.QUEUED

    claimed = store.claim_live("live", lease_seconds=LEASE)
    assert claimed is not None and claimed.id == session.id
    assert (claimed.status, claimed.attempts, claimed.worker_id) == (JobStatus.PROCESSING, 1, "live")
    assert claimed.started_at is not None and claimed.lease_expires_at is not None
    assert store.claim_live("live", lease_seconds=LEASE) is None  # one session, taken once

    upload = file_job(store)
    assert store.claim_live("live", lease_seconds=LEASE) is None
    assert store.get_job(upload.id).status is JobStatus.QUEUED
    taken = store.claim_work("files", lease_seconds=LEASE)
    assert isinstance(taken, JobRecord) and taken.id == upload.id


def test_a_session_does_not_wait_behind_queued_files(store: JobStore) -> None:
    first, second = file_job(store), file_job(store)
    session = open_session(store)  # the newest job in the queue
    claimed = store.claim_live("live", lease_seconds=LEASE)
    assert claimed is not None and claimed.id == session.id
    assert [store.get_job(job.id).status for job in (first, second)] == [JobStatus.QUEUED] * 2
    taken = store.claim_work("files", lease_seconds=LEASE)
    assert isinstance(taken, JobRecord) and taken.id == first.id


def test_sessions_are_claimed_oldest_first(store: JobStore) -> None:
    older, newer = open_session(store), open_session(store)
    first, second = store.claim_live("a", lease_seconds=LEASE), store.claim_live("b", lease_seconds=LEASE)
    assert first is not None and second is not None
    assert (first.id, first.worker_id, second.id, second.worker_id) == (older.id, "a", newer.id, "b")
    assert store.claim_live("c", lease_seconds=LEASE) is None


# --- the audio stream --------------------------------------------------------------------------------
def test_audio_is_stored_in_order_until_the_session_ends(store: JobStore) -> None:
    job = open_session(store)
    pieces = [b"\x01\x02" * 10, b"\x03", b"\x04\x05\x06" * 1000, b"\x07" * 7]
    totals = [store.append_live_audio(job.id, piece) for piece in pieces]
    assert totals == [20, 21, 3021, 3028]
    state = store.live_state(job.id)
    assert state is not None and (state.audio_bytes, state.chunks, state.ended) == (3028, 4, None)

    assert store.live_audio(job.id, from_seq=0) == pieces
    assert store.live_audio(job.id, from_seq=2) == pieces[2:]
    assert store.live_audio(job.id, from_seq=4) == []

    assert store.end_live_audio(job.id, LiveEnd.STOP)
    assert store.append_live_audio(job.id, b"late") is None
    assert not store.end_live_audio(job.id, LiveEnd.IDLE)  # the first reason stays
    state = store.live_state(job.id)
    assert state is not None and (state.audio_bytes, state.chunks, state.ended) == (3028, 4, LiveEnd.STOP)
    assert store.live_audio(job.id, from_seq=0) == pieces


def test_audio_for_no_session_is_refused(store: JobStore) -> None:
    upload = file_job(store)
    assert store.append_live_audio(upload.id, b"audio") is None
    assert store.append_live_audio("no-such-job", b"audio") is None
    assert not store.end_live_audio("no-such-job", LiveEnd.STOP)
    assert store.live_state("no-such-job") is None


def test_idle_time_grows_with_the_database_clock_and_resets_on_audio(store: JobStore) -> None:
    job = open_session(store)
    age_audio(store, job.id, 3600)
    state = store.live_state(job.id)
    assert state is not None and state.idle_seconds >= 3600

    age_audio(store, job.id, 60)
    later = store.live_state(job.id)
    assert later is not None and later.idle_seconds >= state.idle_seconds + 60

    assert store.append_live_audio(job.id, b"\0\0") == 2
    fresh = store.live_state(job.id)
    assert fresh is not None and fresh.idle_seconds < 60  # an hour less than before: audio just came


# --- the worker's reports ----------------------------------------------------------------------------
def test_reports_append_segments_write_tentative_and_extend_the_lease(store: JobStore) -> None:
    job = claimed_session(store)
    age(store.engine, jobs, "lease_expires_at", 25, id=job.id)  # 25 of the 30 seconds went by
    nearly_out = store.get_job(job.id).lease_expires_at
    assert nearly_out is not None

    assert not report(store, job.id, "w1", "one", "two", tentative="thr")
    after = store.get_job(job.id)
    assert after.segment_count == 2
    assert after.lease_expires_at is not None
    assert after.lease_expires_at - nearly_out >= timedelta(seconds=25)  # 30 s from now again
    assert texts(store, job.id) == [(0, "one"), (1, "two")]
    state = store.live_state(job.id)
    assert state is not None and state.tentative == "thr"

    assert not store.report_live(
        job.id,
        "w1",
        segments=[segment(2.0, "three")],
        tentative="",
        tentative_start=2.5,
        behind_seconds=1.25,
        lease_seconds=LEASE,
    )
    snapshot = store.metrics_snapshot(alive_within_seconds=60)
    assert (job.id, "processing", 1.25) in snapshot.live_sessions  # GET /metrics: how far behind
    assert texts(store, job.id) == [(0, "one"), (1, "two"), (2, "three")]  # numbered on
    assert texts(store, job.id, first=2) == [(2, "three")]
    state = store.live_state(job.id)
    assert state is not None and (state.tentative, state.tentative_start) == ("", 2.5)
    assert store.get_job(job.id).segment_count == 3


def test_a_report_is_fenced_by_the_lease(store: JobStore) -> None:
    job = claimed_session(store)
    report(store, job.id, "w1", "one", tentative="mine")
    with pytest.raises(LeaseLostError):
        report(store, job.id, "intruder", "two", tentative="theirs")
    assert texts(store, job.id) == [(0, "one")]  # nothing written
    state = store.live_state(job.id)
    assert state is not None and state.tentative == "mine"
    assert store.get_job(job.id).segment_count == 1

    queued = open_session(store)  # held by nobody
    with pytest.raises(LeaseLostError):
        report(store, queued.id, "w1", "x")


def test_a_report_says_when_a_cancel_was_requested(store: JobStore) -> None:
    job = claimed_session(store)
    assert not report(store, job.id, "w1", "one")
    flagged = store.request_cancel(job.id)
    assert flagged.status is JobStatus.PROCESSING and flagged.cancel_requested
    assert report(store, job.id, "w1", "two")
    assert store.cancel_running(job.id, "w1")
    assert store.get_job(job.id).status is JobStatus.CANCELLED


def test_a_queued_session_cancelled_ends_at_once(store: JobStore) -> None:
    job = open_session(store)
    assert store.request_cancel(job.id).status is JobStatus.CANCELLED
    assert store.claim_live("w1", lease_seconds=LEASE) is None


# --- a lost worker -----------------------------------------------------------------------------------
def test_a_lost_session_is_requeued_with_its_segments_and_the_next_worker_goes_on(store: JobStore) -> None:
    session = claimed_session(store, "w1")
    store.append_live_audio(session.id, b"\0\0" * 100)
    report(store, session.id, "w1", "one", "two", tentative="thr")
    upload = file_job(store)
    taken = store.claim_work("files", lease_seconds=LEASE)
    assert isinstance(taken, JobRecord) and taken.id == upload.id
    store.report_progress(upload.id, "files", 0.5, segments=[segment(0.0, "file")])
    assert texts(store, upload.id) == [(0, "file")]

    for job_id in (session.id, upload.id):
        age(store.engine, jobs, "lease_expires_at", 2 * LEASE, id=job_id)
    swept = store.sweep_expired_leases()
    assert sorted(swept.requeued) == sorted([session.id, upload.id]) and swept.failed == []

    requeued = store.get_job(session.id)
    assert (requeued.status, requeued.worker_id, requeued.segment_count) == (JobStatus.QUEUED, None, 2)
    assert requeued.started_at == session.started_at  # the session started when it first ran
    assert texts(store, session.id) == [(0, "one"), (1, "two")]
    assert store.live_audio(session.id, from_seq=0) == [b"\0\0" * 100]  # its audio stays too
    restarted = store.get_job(upload.id)
    assert (restarted.status, restarted.segment_count) == (JobStatus.QUEUED, 0)
    assert texts(store, upload.id) == []  # a file starts over

    again = store.claim_live("w2", lease_seconds=LEASE)
    assert again is not None and again.id == session.id
    assert (again.status, again.worker_id, again.attempts, again.segment_count) == (
        JobStatus.PROCESSING,
        "w2",
        2,
        2,
    )
    assert again.started_at == session.started_at
    report(store, session.id, "w2", "three")
    assert texts(store, session.id) == [(0, "one"), (1, "two"), (2, "three")]
    with pytest.raises(LeaseLostError):
        report(store, session.id, "w1", "stale")  # the lost worker writes nothing


def test_a_session_lost_too_often_fails(store: JobStore) -> None:
    new = NewJob(source=JobSource.LIVE, options=OPTIONS, max_attempts=1)
    job, _ = store.open_live_session(new, AudioFormat.PCM_S16LE, 16000)
    assert store.claim_live("w1", lease_seconds=LEASE) is not None
    age(store.engine, jobs, "lease_expires_at", 2 * LEASE, id=job.id)
    assert store.sweep_expired_leases().failed == [job.id]
    failed = store.get_job(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.ERROR, "worker_lost")


def test_a_released_session_goes_back_with_its_segments(store: JobStore) -> None:
    session = claimed_session(store, "w1")
    report(store, session.id, "w1", "one")
    assert store.release_job(session.id, "w1")
    released = store.get_job(session.id)
    assert (released.status, released.attempts, released.segment_count) == (JobStatus.QUEUED, 0, 1)
    assert texts(store, session.id) == [(0, "one")]


# --- the end -----------------------------------------------------------------------------------------
def test_a_completed_session_keeps_its_segments_a_file_job_drops_them(store: JobStore) -> None:
    session = claimed_session(store)
    store.append_live_audio(session.id, b"\0\0" * 10)
    report(store, session.id, "w1", "one", "two")
    store.end_live_audio(session.id, LiveEnd.STOP)
    assert store.complete_job(session.id, "w1", result())
    assert store.get_job(session.id).status is JobStatus.COMPLETED
    assert texts(store, session.id) == [(0, "one"), (1, "two")]  # a client may still be catching up
    state = store.live_state(session.id)
    assert state is not None and state.ended is LiveEnd.STOP

    upload = file_job(store)
    taken = store.claim_work("files", lease_seconds=LEASE)
    assert isinstance(taken, JobRecord) and taken.id == upload.id
    store.report_progress(upload.id, "files", 0.5, segments=[segment(0.0, "file")])
    assert store.complete_job(upload.id, "files", result())
    assert texts(store, upload.id) == []


def test_a_failed_session_keeps_its_segments_too(store: JobStore) -> None:
    session = claimed_session(store)
    report(store, session.id, "w1", "one")
    assert store.fail_job(session.id, "w1", code="unsupported_media", message="could not decode")
    assert store.get_job(session.id).status is JobStatus.ERROR
    assert texts(store, session.id) == [(0, "one")]


def test_deleting_a_session_removes_everything(store: JobStore) -> None:
    session = claimed_session(store)
    store.append_live_audio(session.id, b"\0\0" * 10)
    report(store, session.id, "w1", "one")
    assert store.complete_job(session.id, "w1", result())

    store.delete_job(session.id)
    assert store.live_state(session.id) is None
    assert store.live_segments(session.id) == []
    for table in (jobs, live_sessions, job_segments, job_audio):
        assert count(store, table, session.id) == 0, table.name


# --- idempotency -------------------------------------------------------------------------------------
def test_the_same_key_and_options_give_the_same_session(store: JobStore) -> None:
    first, created = store.open_live_session(live("key-1"), AudioFormat.PCM_S16LE, 16000)
    assert created
    again, created_again = store.open_live_session(live("key-1"), AudioFormat.PCM_S16LE, 16000)
    assert not created_again
    assert again.id == first.id
    assert count(store, live_sessions, first.id) == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(live_sessions)).scalar_one() == 1


@pytest.mark.parametrize(
    ("options", "audio_format", "rate"),
    [
        (TranscribeOptions(model="tiny.en", language="fr"), AudioFormat.PCM_S16LE, 16000),
        (OPTIONS, AudioFormat.PCM_S16LE, 8000),
        (OPTIONS, AudioFormat.CONTAINER, None),
    ],
    ids=["options", "rate", "format"],
)
def test_the_same_key_with_another_request_is_refused(
    store: JobStore, options: TranscribeOptions, audio_format: AudioFormat, rate: int | None
) -> None:
    first, _ = store.open_live_session(live("key-2"), AudioFormat.PCM_S16LE, 16000)
    with pytest.raises(IdempotencyKeyReusedError):
        store.open_live_session(live("key-2", options), audio_format, rate)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(live_sessions)).scalar_one() == 1
    assert store.get_job(first.id).status is JobStatus.QUEUED
