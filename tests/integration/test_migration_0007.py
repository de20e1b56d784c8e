"""Migration 0007 (live sessions) both ways: the upgrade adds ``live_sessions``; a downgrade ends the
sessions still queued or running as errors (the schema before cannot run them), makes every live job an
upload (the version before reads no other source), leaves file jobs as they were, and drops the table."""

from __future__ import annotations

from datetime import UTC

from dbtools import downgrade, engine_for, migrate
from sqlalchemy import inspect, select

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
from cesar_common.db.store import JobStore
from cesar_common.db.tables import jobs

OPTIONS = TranscribeOptions(model="tiny.en")
LEASE = 60.0


def tables(url: str) -> set[str]:
    with engine_for(url) as engine:
        return set(inspect(engine).get_table_names())


def session(store: JobStore) -> str:
    job, _ = store.open_live_session(NewJob(JobSource.LIVE, OPTIONS), AudioFormat.PCM_S16LE, 16000)
    return job.id


def url_job(store: JobStore) -> str:
    return store.create_job(NewJob(JobSource.URL, OPTIONS, source_url="https://a.b/c"), None).id


def test_the_live_sessions_table_comes_and_goes(db_url: str) -> None:
    assert "live_sessions" in tables(db_url)
    downgrade(db_url, "0006")
    assert "live_sessions" not in tables(db_url)
    migrate(db_url)
    assert "live_sessions" in tables(db_url)

    store = JobStore.from_url(db_url)
    try:
        job_id = session(store)  # the upgraded schema runs sessions
        assert store.append_live_audio(job_id, b"\0\0") == 2
        claimed = store.claim_live("w", lease_seconds=LEASE)
        assert claimed is not None and claimed.id == job_id
    finally:
        store.close()


def test_a_downgrade_ends_unfinished_sessions_and_keeps_the_rest(db_url: str) -> None:
    store = JobStore.from_url(db_url)
    try:
        done = session(store)
        assert store.claim_live("w", lease_seconds=LEASE) is not None
        store.end_live_audio(done, LiveEnd.STOP)
        assert store.complete_job(done, "w", JobResult("hello", "en", 1.0, 1.0, []))
        running = session(store)
        assert store.claim_live("w", lease_seconds=LEASE) is not None
        store.append_live_audio(running, b"\0\0" * 50)
        queued = session(store)
        file_running = url_job(store)
        claimed = store.claim_work("files", lease_seconds=LEASE)
        assert isinstance(claimed, JobRecord) and claimed.id == file_running
        file_queued = url_job(store)
    finally:
        store.close()

    downgrade(db_url, "0006")
    assert "live_sessions" not in tables(db_url)
    with engine_for(db_url) as engine, engine.connect() as conn:
        # the columns of schema 0006 only: the model's later columns are not there
        known = [
            jobs.c[name]
            for name in (
                "id", "status", "source", "error_code", "error_message", "lease_expires_at", "completed_at",
                "result_text", "worker_id",
            )
        ]  # fmt: skip
        rows = {row.id: row for row in conn.execute(select(*known)).all()}
    for ended in (running, queued):
        row = rows[ended]
        assert (row.status, row.error_code, row.lease_expires_at) == ("error", "downgraded", None)
        assert row.error_message == "live sessions are not supported by this version"
        assert row.completed_at is not None
    assert (rows[done].status, rows[done].result_text) == ("completed", "hello")  # its transcript stays
    assert (rows[file_running].status, rows[file_running].worker_id) == ("processing", "files")
    assert rows[file_queued].status == "queued"
    # the version before knows no other source: every job must stay readable by it
    assert {row.source for row in rows.values()} <= {"upload", "url"}

    migrate(db_url)
    store = JobStore.from_url(db_url)
    try:
        failed = store.get_job(running)
        assert failed.status is JobStatus.ERROR and failed.error_code == "downgraded"
        assert failed.source is JobSource.UPLOAD
        assert failed.completed_at is not None and failed.completed_at.tzinfo is UTC
        assert store.live_state(running) is None  # the stream went with the table
        assert store.claim_live("w", lease_seconds=LEASE) is None  # nothing left to run
        taken = store.claim_work("files", lease_seconds=LEASE)
        assert isinstance(taken, JobRecord) and taken.id == file_queued
    finally:
        store.close()
