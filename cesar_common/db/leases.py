"""A worker's hold on a job: the lease it renews, the progress it reports, and how the hold ends (the job
completes, fails or is cancelled; the worker lets go; or the lease runs out and the sweep requeues it).

Every write here is fenced by :func:`held`: it changes nothing unless the job is still ``processing`` under
this worker, so a worker that lost its lease (or whose job was cancelled) can never overwrite the work of
the one that took over. Times come from the database's clock (:mod:`cesar_common.db.clock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, func, select, update

from cesar_common.db import state
from cesar_common.db.clock import db_now
from cesar_common.db.job_reads import for_update
from cesar_common.db.records import JobResult, JobStatus, SweepResult
from cesar_common.db.rows import decoding_values
from cesar_common.db.tables import jobs
from cesar_common.errors import ConflictError

__all__ = [
    "LeaseLostError",
    "completed_values",
    "extend",
    "finish",
    "held",
    "release",
    "report_progress",
    "sweep_expired",
]

PROCESSING = JobStatus.PROCESSING.value


class LeaseLostError(ConflictError):
    """The job is no longer ``processing`` under this worker (its lease expired, or it was cancelled)."""

    code = "lease_lost"


def held(job_id: str, worker_id: str) -> ColumnElement[bool]:
    """The fence: the job is processing and held by ``worker_id``."""
    return and_(jobs.c.id == job_id, jobs.c.status == PROCESSING, jobs.c.worker_id == worker_id)


def extend(conn: Connection, job_id: str, worker_id: str, *, lease_seconds: float) -> bool:
    """Push the lease forward (not a change anyone is told of); False when the job is not held any more."""
    changed = conn.execute(
        update(jobs).where(held(job_id, worker_id)).values(lease_expires_at=db_now(lease_seconds))
    )
    return bool(changed.rowcount == 1)


def report_progress(
    conn: Connection,
    job_id: str,
    worker_id: str,
    progress: float,
    *,
    segments: Sequence[dict[str, Any]] = (),
    lease_seconds: float | None = None,
) -> bool:
    """Write the progress of a held job and the ``segments`` decoded since the last write (and extend its
    lease, when ``lease_seconds`` is given: one write instead of two). Returns whether a cancel was
    requested; LeaseLostError if the job is not held by ``worker_id`` any more (then nothing is written)."""
    values: dict[str, Any] = {"progress": progress}
    if lease_seconds is not None:
        values["lease_expires_at"] = db_now(lease_seconds)
    row = state.report(conn, held(job_id, worker_id), values, segments)
    if row is None:
        raise LeaseLostError(f"job {job_id} is no longer held by worker {worker_id}")
    return bool(row.cancel_requested)


def completed_values(result: JobResult) -> dict[str, Any]:
    """The columns a job completed with ``result`` gets."""
    return state.final_values(
        JobStatus.COMPLETED,
        progress=1.0,
        result_text=result.text,
        detected_language=result.language,
        language_probability=result.language_probability,
        duration=result.duration,
        segments=list(result.segments),
        segment_count=len(result.segments),
        speakers=result.speakers,
        error_code=None,
        error_message=None,
        **decoding_values(result.decoding),
    )


def finish(
    conn: Connection, job_id: str, worker_id: str, values: dict[str, Any], *, keep_audio: bool
) -> bool:
    """End a held job with ``values`` (:func:`state.final_values`); False when it is not held any more."""
    return bool(state.end_jobs(conn, held(job_id, worker_id), values, keep_audio=keep_audio))


def cancel_requested(job_id: str, worker_id: str) -> Select[Any]:
    """A held job's cancel_requested (no row when ``worker_id`` does not hold it), locked."""
    return for_update(select(jobs.c.cancel_requested).where(held(job_id, worker_id)))


def release(conn: Connection, job_id: str, worker_id: str, *, keep_audio: bool) -> bool:
    """Hand a held job back to the queue without counting the attempt; a job whose cancel was requested
    is cancelled instead. False when the job is not held by ``worker_id``."""
    requested = conn.execute(cancel_requested(job_id, worker_id)).scalar_one_or_none()
    if requested is None:
        return False
    if requested:
        return finish(conn, job_id, worker_id, state.final_values(JobStatus.CANCELLED), keep_audio=keep_audio)
    greatest = func.greatest if conn.dialect.name == "postgresql" else func.max
    return bool(
        state.requeue_jobs(conn, held(job_id, worker_id), {"attempts": greatest(jobs.c.attempts - 1, 0)})
    )


def sweep_expired(conn: Connection, *, keep_audio: bool) -> SweepResult:
    """Jobs whose worker stopped renewing its lease: requeued, or failed after max_attempts claims; a job
    whose cancel was requested is cancelled instead (and in neither list)."""
    requeued: list[str] = []
    failed: list[str] = []
    expired = for_update(
        select(jobs.c.id, jobs.c.attempts, jobs.c.max_attempts, jobs.c.cancel_requested).where(
            jobs.c.status == PROCESSING, jobs.c.lease_expires_at < db_now()
        ),
        skip_locked=True,
    )
    for row in conn.execute(expired).all():
        still_expired = and_(
            jobs.c.id == row.id, jobs.c.status == PROCESSING, jobs.c.lease_expires_at < db_now()
        )
        if row.cancel_requested:
            state.end_jobs(
                conn, still_expired, state.final_values(JobStatus.CANCELLED), keep_audio=keep_audio
            )
        elif row.attempts >= row.max_attempts:
            lost = state.final_values(
                JobStatus.ERROR, error_code="worker_lost", error_message=f"worker lost {row.attempts} times"
            )
            failed += state.end_jobs(conn, still_expired, lost, keep_audio=keep_audio)
        else:
            requeued += state.requeue_jobs(conn, still_expired, {})
    return SweepResult(requeued=requeued, failed=failed)
