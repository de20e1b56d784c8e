"""Migration 0003 (how a job was decoded) keeps existing jobs both ways; old jobs show no decoding."""

from __future__ import annotations

from dbtools import downgrade, migrate
from sqlalchemy import inspect

from cesar_common.db.connect import open_engine
from cesar_common.db.records import Decoding, JobResult, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

NEW_COLUMNS = {"decode_device", "decode_compute_type", "decode_mode", "decode_batch_size"}


def job_columns(url: str) -> set[str]:
    engine = open_engine(url, pooled=False)
    try:
        return {column["name"] for column in inspect(engine).get_columns("jobs")}
    finally:
        engine.dispose()


def url_job(store: JobStore) -> str:
    new = NewJob(source=JobSource.URL, options=TranscribeOptions(model="tiny.en"), source_url="https://a.b/c")
    return store.create_job(new, None).id


def test_decoding_columns_come_and_go_and_jobs_stay(db_url: str) -> None:
    store = JobStore.from_url(db_url)
    try:
        done_before = url_job(store)
        store.claim_work("w", lease_seconds=60)
        store.complete_job(done_before, "w", JobResult("old", "en", 1.0, 1.0, []))
        store.close()

        downgrade(db_url, "0002")
        assert not job_columns(db_url) & NEW_COLUMNS
        store.close()
        migrate(db_url)
        assert job_columns(db_url) >= NEW_COLUMNS

        old = store.get_job(done_before)
        assert old.result_text == "old" and old.decoding is None  # completed before Cesar kept it

        decoding = Decoding(device="cpu", compute_type="int8", mode="batched", batch_size=4)
        new = url_job(store)
        store.claim_work("w", lease_seconds=60)
        store.complete_job(new, "w", JobResult("new", "en", 1.0, 1.0, [], decoding=decoding))
        assert store.get_job(new).decoding == decoding
        assert {job.id: job.decoding for job in store.list_jobs().jobs} == {done_before: None, new: decoding}
        store.close()

        downgrade(db_url, "0002")
        assert not job_columns(db_url) & NEW_COLUMNS
        store.close()
        migrate(db_url)
        assert {job.id for job in store.list_jobs().jobs} == {done_before, new}
    finally:
        store.close()
