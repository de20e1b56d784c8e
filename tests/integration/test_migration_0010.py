"""Migration 0010 (decoding options, one JSON column) keeps existing jobs both ways: a job from before it has
an empty column, which reads as every default (how such a job was decoded)."""

from __future__ import annotations

from dbtools import downgrade, migrate

from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.job_options import DecodingOptions


def test_the_column_comes_and_goes_and_empty_means_every_default(db_url: str) -> None:
    downgrade(db_url, "0009")
    migrate(db_url)
    store = JobStore.from_url(db_url)
    try:
        decoding = DecodingOptions(temperature=(0.0, 0.2), hotwords="Cesar", clip_timestamps=(1.5, 3.0))
        options = TranscribeOptions(model="tiny.en", language="en", decoding_options=decoding)
        tuned = store.create_job(
            NewJob(source=JobSource.URL, options=options, source_url="https://a.b/d"), None
        )
        assert store.get_job(tuned.id).options == options == tuned.options
        store.close()

        downgrade(db_url, "0009")
        migrate(db_url)  # the job is one from before 0010 now: its column is empty
        store = JobStore.from_url(db_url)
        assert store.get_job(tuned.id).options == TranscribeOptions(model="tiny.en", language="en")
    finally:
        store.close()
