"""The SQL of long jobs cut into parts (``job_parts``, ``job_part_audio``): split, claim, lease, report,
complete and merge, sweep, drop.

A split job stays ``processing`` with no worker and no lease of its own while its parts run: each part has
the claim, lease, attempts and sweep a job has. Every transaction that touches a part locks its job's row
first (PostgreSQL), so completions of one job's parts run one after the other and the last one, and only
it, merges the transcript and makes the job final (:func:`complete`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Row, Table, and_, delete, func, insert, select, update

from cesar_common.db import jobs
from cesar_common.db.clock import db_now
from cesar_common.db.models import JobPart, JobPartAudio
from cesar_common.db.notify import notify_job_changed, notify_new_job
from cesar_common.db.records import FinishedPart, JobResult, JobStatus, PartPlan, PartRecord

job_parts = cast(Table, JobPart.__table__)
part_audio = cast(Table, JobPartAudio.__table__)
table = jobs.jobs

QUEUED, PROCESSING, COMPLETED = "queued", "processing", "completed"
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
        jobs.for_update(
            select(table.c.status, table.c.cancel_requested, table.c.parts).where(table.c.id == job_id)
        )
    ).one_or_none()


def _held(part: str, worker_id: str) -> ColumnElement[bool]:
    return and_(job_parts.c.id == part, job_parts.c.status == PROCESSING, job_parts.c.worker_id == worker_id)


# --- cutting a job -----------------------------------------------------------------------------------
def insert_audio_chunk(conn: Connection, job_id: str, seq: int, chunk_seq: int, data: bytes) -> None:
    conn.execute(
        insert(part_audio).values(part_id=part_id(job_id, seq), seq=chunk_seq, job_id=job_id, data=data)
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
    row = conn.execute(
        update(table)
        .where(jobs.held(job_id, worker_id))
        .values(
            worker_id=None,
            lease_expires_at=None,
            parts=len(plans),
            duration=round(plans[-1].end, 3),
            detected_language=language,
            language_probability=language_probability,
            progress=0.0,
        )
        .returning(table.c.created_at)
    ).one_or_none()
    if row is None:
        return False
    conn.execute(
        insert(job_parts),
        [
            {
                "id": part_id(job_id, seq),
                "job_id": job_id,
                "seq": seq,
                "status": QUEUED,
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
    notify_job_changed(conn, job_id)
    notify_new_job(conn)
    return True


# --- workers' side -----------------------------------------------------------------------------------
def claim(conn: Connection, worker_id: str, *, lease_seconds: float) -> tuple[Row[Any], Row[Any]] | None:
    """The first queued part of the oldest split job, taken in one atomic statement, and its job's row;
    None when no part waits."""
    first = (
        select(job_parts.c.id)
        .where(job_parts.c.status == QUEUED)
        .order_by(job_parts.c.created_at, job_parts.c.id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        first = first.with_for_update(skip_locked=True)
    part = conn.execute(
        update(job_parts)
        .where(job_parts.c.id == first.scalar_subquery(), job_parts.c.status == QUEUED)
        .values(
            status=PROCESSING,
            attempts=job_parts.c.attempts + 1,
            worker_id=worker_id,
            lease_expires_at=db_now(lease_seconds),
            progress=0.0,
        )
        .returning(*job_parts.c)
    ).one_or_none()
    if part is None:
        return None
    job = conn.execute(select(table).where(table.c.id == part.job_id)).one()
    return part, job


def read_audio(conn: Connection, part: str, *, from_seq: int, limit: int) -> Sequence[Row[Any, Any]]:
    return conn.execute(
        select(part_audio.c.seq, part_audio.c.data)
        .where(part_audio.c.part_id == part, part_audio.c.seq >= from_seq)
        .order_by(part_audio.c.seq)
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
    changed = conn.execute(update(job_parts).where(_held(part, worker_id)).values(**values)).rowcount
    if changed != 1:
        raise jobs.LeaseLostError(f"part {part} is no longer held by worker {worker_id}")
    if progress is not None:
        _update_job_progress(conn, job_id)
    return bool(job.cancel_requested)


def _update_job_progress(conn: Connection, job_id: str) -> None:
    length = job_parts.c.end - job_parts.c.start
    average = (
        select(func.sum(job_parts.c.progress * length) / func.sum(length))
        .where(job_parts.c.job_id == job_id)
        .scalar_subquery()
    )
    conn.execute(update(table).where(table.c.id == job_id).values(progress=func.coalesce(average, 0.0)))
    notify_job_changed(conn, job_id)


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
    done = conn.execute(
        update(job_parts)
        .where(_held(part, worker_id))
        .values(status=COMPLETED, progress=1.0, lease_expires_at=None, result=result)
    ).rowcount
    if done != 1:
        return None
    conn.execute(delete(part_audio).where(part_audio.c.part_id == part))
    rows = conn.execute(select(job_parts).where(job_parts.c.job_id == job_id).order_by(job_parts.c.seq)).all()
    if all(row.status == COMPLETED for row in rows):
        finished = [
            FinishedPart(row.seq, row.start, row.end, row.worker_id or "", row.result) for row in rows
        ]
        _end_job(conn, job_id, jobs.completed_values(merge(finished)), keep_audio)
        return "job"
    _publish_in_order(conn, job_id, rows)
    _update_job_progress(conn, job_id)
    return "part"


def _publish_in_order(conn: Connection, job_id: str, rows: Sequence[Row[Any]]) -> None:
    """Append the segments of the completed parts that follow the published ones, without a gap, to the
    job's live segments: a client following the job sees the transcript in the file's order."""
    newly: list[str] = []
    segments: list[dict[str, Any]] = []
    for row in rows:
        if row.published:
            continue
        if row.status != COMPLETED:
            break
        newly.append(row.id)
        segments.extend(live_copy(segment) for segment in (row.result or {}).get("segments", ()))
    if not newly:
        return
    conn.execute(update(job_parts).where(job_parts.c.id.in_(newly)).values(published=True))
    jobs.append_live_segments(conn, job_id, segments)


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
    held = conn.execute(select(job_parts.c.id).where(_held(part, worker_id))).one_or_none()
    if held is None:
        return False
    _end_job(
        conn, job_id, jobs.final_values(JobStatus.ERROR, error_code=code, error_message=message), keep_audio
    )
    return True


def _end_job(conn: Connection, job_id: str, values: dict[str, Any], keep_audio: bool) -> None:
    """Make a split job final with ``values`` (it is processing, held by no one: its parts' transactions
    lock its row first)."""
    row = conn.execute(
        update(table)
        .where(table.c.id == job_id, table.c.status == PROCESSING)
        .values(**values)
        .returning(*jobs.FINISHED_COLUMNS)
    ).one()
    jobs.on_final(conn, row, keep_audio=keep_audio)


def release(conn: Connection, job_id: str, part: str, worker_id: str) -> bool:
    """Hand a held part back to the queue without counting the attempt (a worker shutting down)."""
    job = _lock_job(conn, job_id)
    if job is None or job.status != PROCESSING:
        return False
    greatest = func.greatest if conn.dialect.name == "postgresql" else func.max
    changed = conn.execute(
        update(job_parts)
        .where(_held(part, worker_id))
        .values(
            status=QUEUED,
            worker_id=None,
            lease_expires_at=None,
            progress=0.0,
            attempts=greatest(job_parts.c.attempts - 1, 0),
        )
    ).rowcount
    if changed == 1:
        _update_job_progress(conn, job_id)
        notify_new_job(conn)
    return bool(changed == 1)


def sweep_expired(conn: Connection, *, keep_audio: bool) -> tuple[list[str], list[str]]:
    """Parts whose worker stopped renewing their lease: requeued, or, after the job's max_attempts claims
    of one part, the job fails (``worker_lost``). Returns (parts requeued, jobs failed)."""
    expired = conn.execute(
        select(job_parts.c.id, job_parts.c.job_id).where(
            job_parts.c.status == PROCESSING, job_parts.c.lease_expires_at < db_now()
        )
    ).all()
    requeued: list[str] = []
    failed: list[str] = []
    for part, job_id in expired:
        job = conn.execute(
            jobs.for_update(
                select(table.c.status, table.c.max_attempts).where(table.c.id == job_id), skip_locked=True
            )
        ).one_or_none()
        if job is None or job.status != PROCESSING:
            continue
        row = conn.execute(
            select(job_parts.c.attempts, job_parts.c.seq).where(
                job_parts.c.id == part,
                job_parts.c.status == PROCESSING,
                job_parts.c.lease_expires_at < db_now(),
            )
        ).one_or_none()
        if row is None:
            continue
        if row.attempts >= job.max_attempts:
            message = f"worker lost {row.attempts} times on part {row.seq + 1}"
            _end_job(
                conn,
                job_id,
                jobs.final_values(JobStatus.ERROR, error_code="worker_lost", error_message=message),
                keep_audio,
            )
            failed.append(job_id)
            continue
        conn.execute(
            update(job_parts)
            .where(job_parts.c.id == part)
            .values(status=QUEUED, worker_id=None, lease_expires_at=None, progress=0.0)
        )
        _update_job_progress(conn, job_id)
        requeued.append(part)
    if requeued:
        notify_new_job(conn)
    return requeued, failed
