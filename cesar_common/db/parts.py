"""The SQL of long jobs cut into parts (``job_parts``, ``job_part_audio``): split, lease, report, complete
and merge, fail, hand back, sweep. Claims are the queue's (:mod:`cesar_common.db.queue`).

A split job stays ``processing`` with no worker and no lease of its own while its parts run: each part has
the claim, lease, attempts and sweep a job has. Every transaction that touches a part locks its job's row
first (PostgreSQL), so completions of one job's parts run one after the other and the last one, and only
it, merges the transcript and makes the job final (:func:`complete`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, delete, func, insert, select

from cesar_common.blob_store import StoredObject
from cesar_common.db import state, voice_library
from cesar_common.db.clock import db_now
from cesar_common.db.job_reads import for_update
from cesar_common.db.leases import LeaseLostError, completed_values, held
from cesar_common.db.records import FinishedPart, JobResult, JobStatus, PartPlan, PartRecord, PartStatus
from cesar_common.db.tables import job_part_audio, job_parts, jobs

__all__ = [
    "Merge",
    "complete",
    "fail",
    "insert_audio_chunk",
    "live_copy",
    "part_id",
    "part_record",
    "read_audio",
    "release",
    "report",
    "split",
    "sweep_expired",
]

PROCESSING = JobStatus.PROCESSING.value
PART_QUEUED, PART_PROCESSING, PART_COMPLETED = (status.value for status in PartStatus)
#: a merge: the parts' stored transcripts, in order, to the job's result
Merge = Callable[[list[FinishedPart]], JobResult]


def part_id(job_id: str, seq: int) -> str:
    return f"{job_id}:{seq}"


def part_record(row: Row[Any], count: int) -> PartRecord:
    return PartRecord(
        id=row.id,
        job_id=row.job_id,
        seq=row.seq,
        count=count,
        start=float(row.start),
        end=float(row.end),
        attempts=row.attempts,
    )


def _lock_job(conn: Connection, job_id: str) -> Row[Any] | None:
    """The job's row, locked (PostgreSQL) while this transaction touches its parts: the one lock order
    (job, then part) every part transaction follows."""
    return conn.execute(
        for_update(select(jobs.c.status, jobs.c.cancel_requested, jobs.c.parts).where(jobs.c.id == job_id))
    ).one_or_none()


def _held(part: str, worker_id: str) -> ColumnElement[bool]:
    return and_(
        job_parts.c.id == part, job_parts.c.status == PART_PROCESSING, job_parts.c.worker_id == worker_id
    )


# --- cutting a job -----------------------------------------------------------------------------------
def insert_audio_chunk(conn: Connection, job_id: str, seq: int, chunk_seq: int, data: bytes) -> None:
    conn.execute(
        insert(job_part_audio).values(part_id=part_id(job_id, seq), seq=chunk_seq, job_id=job_id, data=data)
    )


def insert_audio_object(conn: Connection, job_id: str, seq: int, stored: StoredObject) -> None:
    """Part ``seq``'s audio as one object (written before this row)."""
    conn.execute(
        insert(job_part_audio).values(
            part_id=part_id(job_id, seq),
            seq=0,
            job_id=job_id,
            data=b"",
            object_key=stored.key,
            size=stored.size,
            sha256=stored.sha256,
        )
    )


def split(
    conn: Connection,
    job_id: str,
    worker_id: str,
    plans: Sequence[PartPlan],
    *,
    language: str | None,
    language_probability: float | None,
) -> bool:
    """Queue the parts of a job held by ``worker_id`` (their audio is stored already) and let go of the
    job: it stays processing, held by no one, until its last part merges. False when the job is not held
    (its audio then goes with the requeue or the end that took it)."""
    row = state.change_job(
        conn,
        held(job_id, worker_id),
        {
            "worker_id": None,
            "lease_expires_at": None,
            "parts": len(plans),
            "duration": round(plans[-1].end, 3),
            "detected_language": language,
            "language_probability": language_probability,
            "progress": 0.0,
        },
    )
    if row is None:
        return False
    state.insert_parts(
        conn,
        [
            {
                "id": part_id(job_id, seq),
                "job_id": job_id,
                "seq": seq,
                "start": plan.start,
                "end": plan.end,
                "created_at": row.created_at,
                "attempts": 0,
                "progress": 0.0,
                "published": False,
            }
            for seq, plan in enumerate(plans)
        ],
    )
    return True


# --- workers' side -----------------------------------------------------------------------------------
def read_audio(
    conn: Connection, part: str, *, from_seq: int, limit: int
) -> Sequence[Row[Any, Any, Any, Any, Any]]:
    return conn.execute(
        select(
            job_part_audio.c.seq,
            job_part_audio.c.data,
            job_part_audio.c.object_key,
            job_part_audio.c.size,
            job_part_audio.c.sha256,
        )
        .where(job_part_audio.c.part_id == part, job_part_audio.c.seq >= from_seq)
        .order_by(job_part_audio.c.seq)
        .limit(limit)
    ).all()


def report(
    conn: Connection, job_id: str, part: str, worker_id: str, progress: float | None, *, lease_seconds: float
) -> bool:
    """Extend a held part's lease, with its progress when given (the job's progress becomes the parts'
    average, by duration). Returns True when the part should stop: its job ended (cancelled, or failed by
    another part). LeaseLostError when the part is not ``worker_id``'s any more."""
    job = _lock_job(conn, job_id)
    if job is None or job.status != PROCESSING:
        return True
    values: dict[str, Any] = {"lease_expires_at": db_now(lease_seconds)}
    if progress is not None:
        values["progress"] = progress
    if not state.change_parts(conn, _held(part, worker_id), values):
        raise LeaseLostError(f"part {part} is no longer held by worker {worker_id}")
    if progress is not None:
        _update_job_progress(conn, job_id)
    return bool(job.cancel_requested)


def _update_job_progress(conn: Connection, job_id: str, segments: Sequence[dict[str, Any]] = ()) -> None:
    """The job's progress as its parts' average by length, with ``segments`` added to its live ones."""
    length = job_parts.c.end - job_parts.c.start
    average = (
        select(func.sum(job_parts.c.progress * length) / func.sum(length))
        .where(job_parts.c.job_id == job_id)
        .scalar_subquery()
    )
    state.report(conn, jobs.c.id == job_id, {"progress": func.coalesce(average, 0.0)}, segments)


def complete(
    conn: Connection,
    job_id: str,
    part: str,
    worker_id: str,
    result: dict[str, Any],
    merge: Merge,
    *,
    keep_audio: bool,
) -> str | None:
    """Store a held part's transcript (``result``, in the file's time), drop its audio, publish the
    segments of the parts now done in order, and when it was the last part, merge them all
    (``merge``) into the job's result and make the job completed, in this same transaction.

    Returns "part" or "job" (what was completed), or None when the part is not ``worker_id``'s any more
    or its job ended meanwhile (nothing is written then)."""
    job = _lock_job(conn, job_id)
    if job is None or job.status != PROCESSING:
        return None
    done = state.change_parts(
        conn,
        _held(part, worker_id),
        {"status": PART_COMPLETED, "progress": 1.0, "lease_expires_at": None, "result": result},
    )
    if not done:
        return None
    conn.execute(delete(job_part_audio).where(job_part_audio.c.part_id == part))
    rows = conn.execute(select(job_parts).where(job_parts.c.job_id == job_id).order_by(job_parts.c.seq)).all()
    if all(row.status == PART_COMPLETED for row in rows):
        finished = [
            FinishedPart(row.seq, row.start, row.end, row.worker_id or "", row.result) for row in rows
        ]
        merged = merge(finished)
        _end_job(conn, job_id, completed_values(merged), keep_audio)
        if merged.voices:
            voice_library.store_job_voices(conn, job_id, voice_library.encode_voices(merged.voices))
        return "job"
    _update_job_progress(conn, job_id, _publish_in_order(conn, rows))
    return "part"


def _publish_in_order(conn: Connection, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    """The segments of the completed parts that follow the published ones without a gap, marked
    published: appended to the job's live segments, a client following the job sees the transcript in the
    file's order."""
    newly: list[str] = []
    segments: list[dict[str, Any]] = []
    for row in rows:
        if row.published:
            continue
        if row.status != PART_COMPLETED:
            break
        newly.append(row.id)
        segments.extend(live_copy(segment) for segment in (row.result or {}).get("segments", ()))
    if newly:
        state.change_parts(conn, job_parts.c.id.in_(newly), {"published": True})
    return segments


def live_copy(segment: dict[str, Any]) -> dict[str, Any]:
    """A part's segment as live segments show it: speakers come with the completed job (a part's are its
    own until the merge names them across parts)."""
    copy = {key: value for key, value in segment.items() if key != "speaker"}
    if "words" in copy:
        copy["words"] = [{k: v for k, v in word.items() if k != "speaker"} for word in copy["words"]]
    return copy


def fail(
    conn: Connection, job_id: str, part: str, worker_id: str, *, code: str, message: str, keep_audio: bool
) -> bool:
    """A part failed for a reason another try would not change: the job fails with its error. False when
    the part is not ``worker_id``'s any more, or its job ended meanwhile."""
    job = _lock_job(conn, job_id)
    if job is None or job.status != PROCESSING:
        return False
    held_part = conn.execute(select(job_parts.c.id).where(_held(part, worker_id))).one_or_none()
    if held_part is None:
        return False
    failed = state.final_values(JobStatus.ERROR, error_code=code, error_message=message)
    _end_job(conn, job_id, failed, keep_audio)
    return True


def _end_job(conn: Connection, job_id: str, values: dict[str, Any], keep_audio: bool) -> None:
    """Make a split job final with ``values`` (it is processing, held by no one: its parts' transactions
    lock its row first)."""
    ended = state.end_jobs(
        conn, (jobs.c.id == job_id) & (jobs.c.status == PROCESSING), values, keep_audio=keep_audio
    )
    assert ended, f"split job {job_id} was not processing"


def release(conn: Connection, job_id: str, part: str, worker_id: str) -> bool:
    """Hand a held part back to the queue without counting the attempt (a worker shutting down)."""
    job = _lock_job(conn, job_id)
    if job is None or job.status != PROCESSING:
        return False
    greatest = func.greatest if conn.dialect.name == "postgresql" else func.max
    released = state.change_parts(
        conn,
        _held(part, worker_id),
        {
            "status": PART_QUEUED,
            "worker_id": None,
            "lease_expires_at": None,
            "progress": 0.0,
            "attempts": greatest(job_parts.c.attempts - 1, 0),
        },
    )
    if released:
        _update_job_progress(conn, job_id)
    return bool(released)


def sweep_expired(conn: Connection, *, keep_audio: bool) -> tuple[list[str], list[str]]:
    """Parts whose worker stopped renewing their lease: requeued, or, after the job's max_attempts claims
    of one part, the job fails (``worker_lost``). Returns (parts requeued, jobs failed)."""
    expired = conn.execute(
        select(job_parts.c.id, job_parts.c.job_id).where(
            job_parts.c.status == PART_PROCESSING, job_parts.c.lease_expires_at < db_now()
        )
    ).all()
    requeued: list[str] = []
    failed: list[str] = []
    for part, job_id in expired:
        job = conn.execute(
            for_update(
                select(jobs.c.status, jobs.c.max_attempts).where(jobs.c.id == job_id), skip_locked=True
            )
        ).one_or_none()
        if job is None or job.status != PROCESSING:
            continue
        still_expired = and_(
            job_parts.c.id == part,
            job_parts.c.status == PART_PROCESSING,
            job_parts.c.lease_expires_at < db_now(),
        )
        row = conn.execute(select(job_parts.c.attempts, job_parts.c.seq).where(still_expired)).one_or_none()
        if row is None:
            continue
        if row.attempts >= job.max_attempts:
            message = f"worker lost {row.attempts} times on part {row.seq + 1}"
            lost = state.final_values(JobStatus.ERROR, error_code="worker_lost", error_message=message)
            _end_job(conn, job_id, lost, keep_audio)
            failed.append(job_id)
            continue
        values = {"status": PART_QUEUED, "worker_id": None, "lease_expires_at": None, "progress": 0.0}
        state.change_parts(conn, job_parts.c.id == part, values)
        _update_job_progress(conn, job_id)
        requeued.append(part)
    return requeued, failed
