"""Migration 0004 (live segments) keeps existing jobs both ways; jobs completed before get their count."""

from __future__ import annotations

from dbtools import downgrade, migrate
from sqlalchemy import inspect

from cesar_common.db.connect import open_engine
from cesar_common.db.records import JobResult, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

SEGMENTS = [{"id": n, "start": float(n), "end": n + 0.5, "text": f" Part {n}."} for n in range(3)]


def tables(url: str) -> set[str]:
    engine = open_engine(url, pooled=False)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def url_job(store: JobStore) -> str:
    new = NewJob(source=JobSource.URL, options=TranscribeOptions(model="tiny.en"), source_url="https://a.b/c")
    return store.create_job(new, None).id


def test_live_segments_come_and_go_and_jobs_stay(db_url: str) -> None:
    store = JobStore.from_url(db_url)
    try:
        done = url_job(store)
        store.claim_work("w", lease_seconds=60)
        store.complete_job(done, "w", JobResult("Part 0. Part 1. Part 2.", "en", 1.0, 3.0, SEGMENTS))
        running = url_job(store)
        store.claim_work("w", lease_seconds=60)
        store.report_progress(running, "w", 0.5, segments=SEGMENTS[:2])
        queued = url_job(store)
        store.close()

        downgrade(db_url, "0003")
        assert "job_segments" not in tables(db_url)
        migrate(db_url)
        assert "job_segments" in tables(db_url)

        counts = {job_id: store.get_job(job_id).segment_count for job_id in (done, running, queued)}
        # a running job's live segments go with the table (migrations run with the service stopped)
        assert counts == {done: 3, running: 0, queued: 0}
        assert store.get_job(done, with_segments=True).segments == SEGMENTS
        assert store.report_progress(running, "w", 0.75, segments=SEGMENTS[:1]) is False
        assert store.live_segments(running) == SEGMENTS[:1]
    finally:
        store.close()
