"""Migration 0005 (diarization options) keeps existing jobs both ways: jobs from before were not diarized."""

from __future__ import annotations

from dbtools import downgrade, migrate

from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore


def test_jobs_from_before_were_not_diarized(db_url: str) -> None:
    downgrade(db_url, "0004")
    store = JobStore.from_url(db_url)
    try:
        store.close()
        migrate(db_url)
        store = JobStore.from_url(db_url)
        options = TranscribeOptions(model="tiny.en", diarize=True, num_speakers=2, max_speakers=3)
        new = NewJob(source=JobSource.URL, options=options, source_url="https://a.b/c")
        diarized = store.create_job(new, None).id
        assert store.get_job(diarized).options == options
        store.close()

        downgrade(db_url, "0004")
        migrate(db_url)
        store = JobStore.from_url(db_url)
        job = store.get_job(diarized)
        assert job.options == TranscribeOptions(model="tiny.en")  # the options went with their columns
        assert job.options.diarize is False and job.options.num_speakers is None
    finally:
        store.close()
