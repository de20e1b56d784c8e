"""Long jobs cut into parts, at the job store, on SQLite and PostgreSQL: parts are claimed like jobs (first),
leased and swept one by one, published in the file's order, merged once by the last one to finish; cancel
and failure end every part; nothing of the parts outlives the job."""

from __future__ import annotations

from typing import Any

from dbtools import age
from sqlalchemy import func, select

from cesar_common.db.records import (
    FinishedPart,
    JobRecord,
    JobResult,
    JobSource,
    JobStatus,
    NewJob,
    PartPlan,
    PartWork,
    TranscribeOptions,
)
from cesar_common.db.store import JobStore
from cesar_common.db.tables import JobPart, JobPartAudio
from cesar_worker.part_results import merge_parts

LEASE = 30.0
PLANS = [PartPlan(0.0, 10.0), PartPlan(10.0, 20.0), PartPlan(20.0, 30.0)]


def queue(store: JobStore, *, callback: str | None = "https://receiver.example/hook") -> JobRecord:
    new = NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model="tiny.en"),
        filename="long.wav",
        callback_url=callback,
    )
    return store.create_job(new, b"RIFF-not-really-audio")


def split(store: JobStore, worker: str = "cutter") -> JobRecord:
    """A queued job, claimed and cut into PLANS, each part's audio stored."""
    job = queue(store)
    claimed = store.claim_work(worker, lease_seconds=LEASE)
    assert isinstance(claimed, JobRecord) and claimed.id == job.id
    for seq in range(len(PLANS)):
        store.store_part_audio(job.id, worker, seq, bytes([seq]) * 3000, lease_seconds=LEASE)
    assert store.split_job(job.id, worker, PLANS, language="en", language_probability=0.5)
    return job


def claim_part(store: JobStore, worker: str) -> PartWork:
    work = store.claim_work(worker, lease_seconds=LEASE)
    assert isinstance(work, PartWork), work
    return work


def result(work: PartWork, *words: str) -> dict[str, Any]:
    start = work.part.start
    segments = [
        {"id": n, "start": start + n, "end": start + n + 0.5, "text": word} for n, word in enumerate(words)
    ]
    decoding = {"device": "cpu", "compute_type": "int8", "mode": "batched", "batch_size": 4}
    return {"segments": segments, "language": "en", "language_probability": 0.5, "decoding": decoding}


def count(store: JobStore, table: Any, job_id: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(table.c.job_id == job_id)).scalar_one())


PARTS, AUDIO = JobPart.__table__, JobPartAudio.__table__


def test_parts_are_claimed_in_order_before_newer_jobs_and_merge_once(store: JobStore) -> None:
    job = split(store)
    later = queue(store, callback=None)
    got = store.get_job(job.id)
    assert got.status is JobStatus.PROCESSING and got.worker_id is None and got.duration == 30.0
    assert got.detected_language == "en"

    works = [claim_part(store, f"w{n}") for n in range(3)]
    assert [work.part.seq for work in works] == [0, 1, 2]
    assert all(work.job.id == job.id and work.part.count == 3 for work in works)
    assert b"".join(store.iter_part_audio(works[1].part.id)) == bytes([1]) * 3000
    # the newer job waits until every part is taken
    newer = store.claim_work("w3", lease_seconds=LEASE)
    assert isinstance(newer, JobRecord) and newer.id == later.id

    merges: list[list[FinishedPart]] = []

    def merge(parts: list[FinishedPart]) -> JobResult:
        merges.append(parts)
        return merge_parts(parts)

    # the last part finishes first: nothing is published before the parts ahead of it are done
    assert store.complete_part(works[2], "w2", result(works[2], "five", "six"), merge) == "part"
    assert store.get_job(job.id).segment_count == 0
    assert count(store, AUDIO, job.id) == 2  # a part's audio goes when the part is done
    assert store.report_part(works[0], "w0", 0.5, lease_seconds=LEASE) is False
    assert abs(store.get_job(job.id).progress - 0.5) < 1e-6  # (0.5 + 0 + 1) / 3 by duration

    assert store.complete_part(works[0], "w0", result(works[0], "one", "two"), merge) == "part"
    live = store.live_segments(job.id)
    assert [segment["text"] for segment in live] == ["one", "two"]
    assert store.complete_part(works[1], "w1", result(works[1], "three", "four"), merge) == "job"
    assert len(merges) == 1

    done = store.get_job(job.id, with_segments=True)
    assert done.status is JobStatus.COMPLETED and done.progress == 1.0
    assert done.result_text == "one two three four five six"
    assert [segment["id"] for segment in done.segments or []] == list(range(6))
    starts = [segment["start"] for segment in done.segments or []]
    assert starts == sorted(starts)
    assert done.decoding is not None and (done.decoding.parts, done.decoding.workers) == (3, 3)
    assert done.language_probability == 0.5
    assert len(store.list_deliveries(job.id)) == 1
    assert count(store, PARTS, job.id) == 0 and count(store, AUDIO, job.id) == 0
    # a late report finds its job ended: stop
    assert store.report_part(works[1], "w1", 0.9, lease_seconds=LEASE) is True


def test_cancel_ends_a_split_job_at_once_and_every_part_stops(store: JobStore) -> None:
    job = split(store)
    running = claim_part(store, "w0")
    cancelled = store.request_cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert count(store, PARTS, job.id) == 0 and count(store, AUDIO, job.id) == 0
    assert store.part_should_stop(job.id)
    assert store.report_part(running, "w0", 0.3, lease_seconds=LEASE) is True
    assert store.complete_part(running, "w0", result(running, "late"), merge_parts) is None
    assert store.claim_work("w1", lease_seconds=LEASE) is None  # no part is left to take
    assert store.get_job(job.id).status is JobStatus.CANCELLED
    assert len(store.list_deliveries(job.id)) == 1


def test_a_lost_part_is_requeued_alone_then_fails_the_job_after_max_attempts(store: JobStore) -> None:
    job = split(store)
    first = claim_part(store, "w0")
    second = claim_part(store, "w1")
    assert store.complete_part(second, "w1", result(second, "kept"), merge_parts) == "part"
    for attempt in range(1, 4):
        age(store.engine, PARTS, "lease_expires_at", 2 * LEASE, id=first.part.id)
        swept = store.sweep_expired_leases()
        if attempt < 3:
            assert swept.parts_requeued == [first.part.id] and swept.failed == []
            first = claim_part(store, f"w{attempt + 1}")
            assert first.part.seq == 0 and first.part.attempts == attempt + 1
        else:
            assert swept.failed == [job.id]
    failed = store.get_job(job.id)
    assert failed.status is JobStatus.ERROR and failed.error_code == "worker_lost"
    assert failed.error_message == "worker lost 3 times on part 1"
    assert count(store, PARTS, job.id) == 0


def test_a_part_that_fails_fails_its_job_and_a_shutdown_hands_a_part_back(store: JobStore) -> None:
    job = split(store)
    first = claim_part(store, "w0")
    assert store.release_part(first, "w0")
    again = claim_part(store, "w1")
    assert again.part.seq == 0 and again.part.attempts == 1  # a hand-back is not an attempt
    other = claim_part(store, "w2")
    assert store.fail_part(other, "w2", code="decode_failed", message="part 2 of 3: bad audio")
    failed = store.get_job(job.id)
    assert failed.status is JobStatus.ERROR and failed.error_message == "part 2 of 3: bad audio"
    assert store.complete_part(again, "w1", result(again, "late"), merge_parts) is None
    assert len(store.list_deliveries(job.id)) == 1


def test_a_cutter_lost_before_queueing_the_parts_leaves_nothing_behind(store: JobStore) -> None:
    job = queue(store)
    claimed = store.claim_work("cutter", lease_seconds=LEASE)
    assert isinstance(claimed, JobRecord)
    store.store_part_audio(job.id, "cutter", 0, b"\0" * 5000, lease_seconds=LEASE)
    age(store.engine, JobPart.metadata.tables["jobs"], "lease_expires_at", 2 * LEASE, id=job.id)
    assert store.sweep_expired_leases().requeued == [job.id]
    assert count(store, AUDIO, job.id) == 0
    again = store.claim_work("next", lease_seconds=LEASE)
    assert isinstance(again, JobRecord) and again.id == job.id
    assert not store.split_job(job.id, "cutter", PLANS, language="en", language_probability=1.0)
