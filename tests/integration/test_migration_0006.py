"""Migration 0006 (long jobs cut into parts) keeps existing jobs both ways: jobs from before were transcribed
whole, and a downgrade puts jobs running as parts back in the queue."""

from __future__ import annotations

from dbtools import downgrade, migrate

from cesar_common.db.records import JobRecord, JobSource, NewJob, PartPlan, TranscribeOptions
from cesar_common.db.store import JobStore


def test_jobs_survive_the_parts_tables_coming_and_going(db_url: str) -> None:
    downgrade(db_url, "0005")
    migrate(db_url)
    store = JobStore.from_url(db_url)
    try:
        new = NewJob(source=JobSource.UPLOAD, options=TranscribeOptions(model="tiny.en"), filename="a.wav")
        job = store.create_job(new, b"audio")
        claimed = store.claim_work("cutter", lease_seconds=30)
        assert isinstance(claimed, JobRecord)
        store.store_part_audio(job.id, "cutter", 0, b"\0" * 100, lease_seconds=30)
        store.store_part_audio(job.id, "cutter", 1, b"\0" * 100, lease_seconds=30)
        plans = [PartPlan(0.0, 1.0), PartPlan(1.0, 2.0)]
        assert store.split_job(job.id, "cutter", plans, language="en", language_probability=1.0)
        store.close()

        downgrade(db_url, "0005")
        migrate(db_url)
        store = JobStore.from_url(db_url)
        again = store.get_job(job.id)
        assert again.status.value == "queued" and again.worker_id is None  # to be transcribed whole
        claimed = store.claim_work("next", lease_seconds=30)
        assert isinstance(claimed, JobRecord) and claimed.id == job.id
    finally:
        store.close()
