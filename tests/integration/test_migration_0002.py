"""Migration 0002 (callbacks, idempotency keys, the webhook outbox) keeps existing jobs both ways."""

from __future__ import annotations

from dbtools import downgrade, migrate, revision
from sqlalchemy import inspect, text

from cesar_common.db.connect import open_engine
from cesar_common.db.migrate import head_revision
from cesar_common.db.records import JobResult, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

NEW_TABLES = {"webhook_deliveries", "metric_totals"}
NEW_COLUMNS = {"callback_url", "idempotency_key", "request_fingerprint"}


def shape(url: str) -> tuple[set[str], set[str]]:
    engine = open_engine(url, pooled=False)
    try:
        inspector = inspect(engine)
        return set(inspector.get_table_names()), {c["name"] for c in inspector.get_columns("jobs")}
    finally:
        engine.dispose()


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = open_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql)).all()]
    finally:
        engine.dispose()


def test_jobs_survive_the_upgrade_and_the_downgrade(db_url: str) -> None:
    store = JobStore.from_url(db_url, keep_audio=True)
    try:
        downgrade(db_url, "0001")
        tables, columns = shape(db_url)
        assert not tables & NEW_TABLES and not columns & NEW_COLUMNS
        # a job written by the previous version
        engine = open_engine(db_url, pooled=False)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, status, source, model, task, word_timestamps, vad, created_at,"
                    " progress, attempts, max_attempts, cancel_requested)"
                    " VALUES ('old-job', 'queued', 'upload', 'tiny.en', 'transcribe', false, true,"
                    " CURRENT_TIMESTAMP, 0, 0, 3, false)"
                )
            )
            conn.execute(
                text("INSERT INTO job_audio (job_id, seq, data) VALUES ('old-job', 0, :data)"), {"data": b"x"}
            )
        engine.dispose()

        migrate(db_url)
        assert revision(db_url) == head_revision()
        old = store.get_job("old-job")
        assert old.callback_url is None and old.webhook is None
        assert b"".join(store.iter_audio("old-job")) == b"x"

        # new-style data, then back down: the jobs stay, the new tables and columns go
        new = NewJob(
            source=JobSource.URL,
            options=TranscribeOptions(model="tiny.en"),
            source_url="https://93.184.215.14/a.mp3",
            callback_url="https://93.184.215.14/hook",
            idempotency_key="k",
        )
        job = store.create_job(new, None)
        store.claim_work("w", lease_seconds=60)  # old-job, the oldest
        store.claim_work("w", lease_seconds=60)
        store.complete_job(job.id, "w", JobResult("hi", "en", 1.0, 1.0, []))
        store.close()
        downgrade(db_url, "0001")
        tables, columns = shape(db_url)
        assert not tables & NEW_TABLES and not columns & NEW_COLUMNS
        assert sorted(rows(db_url, "SELECT id, status FROM jobs")) == sorted(
            [("old-job", "processing"), (job.id, "completed")]
        )
        assert rows(db_url, "SELECT count(*) FROM job_audio") == [(1,)]
        migrate(db_url)
    finally:
        store.close()
