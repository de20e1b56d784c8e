"""Retention: old finished jobs go with their audio and deliveries; queued and processing jobs never do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbtools import utcnow
from sqlalchemy import func, select, update
from worker_support import worker_processes

from cesar.cli import cli
from cesar.purge import parse_duration
from cesar_common.db.records import JobRecord, JobResult, JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import Job, JobAudio, WebhookDelivery
from cesar_common.errors import InvalidInputError

DAY = 86400.0
WORKER = "w1"


@pytest.fixture
def keeping_store(db_url: str) -> Iterator[JobStore]:
    """A store that keeps audio after jobs end, so purging visibly removes it."""
    store = JobStore.from_url(db_url, keep_audio=True)
    yield store
    store.close()


def new_upload(store: JobStore, *, callback: str | None = None) -> JobRecord:
    new = NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model="tiny.en"),
        filename="a.wav",
        callback_url=callback,
    )
    return store.create_job(new, b"audio bytes")


def finished(store: JobStore, status: JobStatus, *, days_ago: float, callback: str | None = None) -> str:
    job = new_upload(store, callback=callback)
    if status is JobStatus.CANCELLED:
        store.request_cancel(job.id)
    else:
        claimed = store.claim_work(WORKER, lease_seconds=60)
        assert claimed is not None and claimed.id == job.id
        if status is JobStatus.COMPLETED:
            store.complete_job(job.id, WORKER, JobResult("hi", "en", 0.9, 1.0, []))
        else:
            store.fail_job(job.id, WORKER, code="decode_failed", message="bad audio")
    age(store, job.id, days_ago)
    return job.id


def age(store: JobStore, job_id: str, days: float) -> None:
    then = utcnow() - timedelta(days=days)
    with store.engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(created_at=then, completed_at=then))


def ids(store: JobStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(Job.id)).scalars())


def audio_rows(store: JobStore, job_id: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(JobAudio.job_id == job_id)).scalar_one())


def test_purge_removes_old_finished_jobs_and_their_audio_only(keeping_store: JobStore) -> None:
    store = keeping_store
    old = [finished(store, status, days_ago=10) for status in JobStatus if status.is_final]
    recent = finished(store, JobStatus.COMPLETED, days_ago=1)
    running = new_upload(store).id
    claimed = store.claim_work(WORKER, lease_seconds=60)
    assert claimed is not None and claimed.id == running
    queued = new_upload(store).id
    for job_id in (queued, running):
        age(store, job_id, 30)  # old, but not finished: never purged
    assert all(audio_rows(store, job_id) == 1 for job_id in old)

    assert store.purge_finished_jobs(older_than_seconds=7 * DAY) == 3
    assert ids(store) == {recent, queued, running}
    assert all(audio_rows(store, job_id) == 0 for job_id in old)
    assert audio_rows(store, recent) == 1
    assert store.purge_finished_jobs(older_than_seconds=7 * DAY) == 0


def test_purge_by_status_in_small_batches(store: JobStore) -> None:
    errors = [finished(store, JobStatus.ERROR, days_ago=3) for _ in range(5)]
    done = finished(store, JobStatus.COMPLETED, days_ago=3)
    assert (
        store.purge_finished_jobs(older_than_seconds=DAY, statuses=["error"], batch_size=2, max_batches=2)
        == 4
    )
    assert len(ids(store) & set(errors)) == 1
    assert store.purge_finished_jobs(older_than_seconds=DAY, statuses=[JobStatus.ERROR], batch_size=2) == 1
    assert ids(store) == {done}
    for status in ("queued", "processing", "pending", "nonsense"):
        with pytest.raises(InvalidInputError):
            store.purge_finished_jobs(older_than_seconds=DAY, statuses=[status])


def test_purge_takes_the_deliveries_but_waits_for_one_in_flight(store: JobStore) -> None:
    delivered = finished(store, JobStatus.COMPLETED, days_ago=5, callback="https://93.184.215.14/h")
    waiting = finished(store, JobStatus.COMPLETED, days_ago=5, callback="https://93.184.215.14/h")
    with store.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery).where(WebhookDelivery.job_id == delivered).values(state="delivered")
        )
    assert store.purge_finished_jobs(older_than_seconds=DAY) == 1
    assert ids(store) == {waiting}
    with store.engine.connect() as conn:
        left = conn.execute(select(WebhookDelivery.job_id)).scalars().all()
    assert left == [waiting]


def test_cesar_jobs_purge_says_how_many_it_removed(db_url: str) -> None:
    store = JobStore.from_url(db_url)
    try:
        old_error = finished(store, JobStatus.ERROR, days_ago=8)
        old_done = finished(store, JobStatus.COMPLETED, days_ago=8)
        queued = new_upload(store).id
        runner = CliRunner()
        result = runner.invoke(
            cli, ["jobs", "purge", "--older-than", "7d", "--status", "error", "--db", db_url]
        )
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "removed 1 job"
        result = runner.invoke(cli, ["jobs", "purge", "--older-than", "2w", "--db", db_url])
        assert result.output.strip() == "removed 0 jobs"
        result = runner.invoke(cli, ["jobs", "purge", "--older-than", "1week", "--db", db_url])
        assert result.exit_code == 1
        assert result.output.strip().startswith("error: invalid duration '1week'")
        assert "Traceback" not in result.output
        assert ids(store) == {old_done, queued}
        assert old_error not in ids(store)
    finally:
        store.close()


def test_durations() -> None:
    assert parse_duration("90m") == 5400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("7d") == 7 * DAY
    assert parse_duration("2w") == 14 * DAY
    assert parse_duration("1.5D") == 1.5 * DAY
    for bad in ("", "7", "d", "-1d", "7y"):
        with pytest.raises(InvalidInputError):
            parse_duration(bad)


def test_workers_sweep_old_jobs_with_cesar_retention_days(db_url: str, tmp_path: Path) -> None:
    store = JobStore.from_url(db_url, keep_audio=True)
    try:
        old = finished(store, JobStatus.COMPLETED, days_ago=3)
        recent = finished(store, JobStatus.ERROR, days_ago=1)
        queued = new_upload(store).id
        age(store, queued, 10)
        with worker_processes(tmp_path) as start:
            worker = start(db_url, "--once", fake=True, env={"CESAR_RETENTION_DAYS": "2"})
            assert worker.wait(60) == 0, worker.log()
        assert old not in ids(store)
        assert audio_rows(store, old) == 0
        assert {recent, queued} <= ids(store)
        assert "retention: removed 1 finished jobs older than 2 days" in worker.log()
    finally:
        store.close()
