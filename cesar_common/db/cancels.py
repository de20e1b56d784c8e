"""A client's cancel: a queued job ends at once, a running job is flagged for its worker (which stops at
its next progress report and records the end), a long job running as parts ends at once (each part's
worker stops at its next report, finding its job ended)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from cesar_common.db import state
from cesar_common.db.job_reads import get_visible, is_split, not_found, status_of
from cesar_common.db.records import JobStatus
from cesar_common.db.tables import jobs
from cesar_common.errors import ConflictError

__all__ = ["request_cancel"]

PENDING, QUEUED, PROCESSING = JobStatus.PENDING.value, JobStatus.QUEUED.value, JobStatus.PROCESSING.value


def request_cancel(conn: Connection, job_id: str, *, keep_audio: bool) -> Row[Any]:
    """Queued: cancelled at once. Processing: flagged for its worker. Final: ConflictError. The job's row
    after, with its segments."""
    status = status_of(conn, job_id, lock=True)
    if status is None or status == PENDING:
        raise not_found(job_id)
    this_job = jobs.c.id == job_id
    if status == QUEUED or (status == PROCESSING and is_split(conn, job_id)):
        # a split job's parts run under no lease of the job's: it ends now
        values = state.final_values(JobStatus.CANCELLED, cancel_requested=status == PROCESSING)
        state.end_jobs(conn, this_job, values, keep_audio=keep_audio)
    elif status == PROCESSING:
        state.change_job(conn, this_job, {"cancel_requested": True})
    else:
        raise ConflictError(f"job {job_id} is already {status}", extra={"status": status})
    row = get_visible(conn, job_id, with_segments=True)
    assert row is not None
    return row
