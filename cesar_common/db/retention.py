"""Removing finished jobs: one by hand (``DELETE /jobs/{id}``), or in batches by age (``cesar jobs
purge``, and the workers' sweep when ``CESAR_RETENTION_DAYS`` is set)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from cesar_common.db import outbox, state
from cesar_common.db.clock import db_now
from cesar_common.db.job_reads import FINAL, for_update, not_found, status_of
from cesar_common.db.records import JobStatus
from cesar_common.db.tables import jobs, webhook_deliveries
from cesar_common.errors import ConflictError

__all__ = ["delete_finished", "purge_batch"]


def delete_finished(conn: Connection, job_id: str) -> None:
    """Delete a finished job and its audio; ConflictError while it is queued or processing."""
    status = status_of(conn, job_id, lock=True)
    if status is None or status == JobStatus.PENDING.value:
        raise not_found(job_id)
    if status not in FINAL:
        raise ConflictError(
            f"job {job_id} is {status}: cancel it before deleting it", extra={"status": status}
        )
    state.delete_jobs(conn, [job_id])


def purge_batch(
    conn: Connection, *, older_than_seconds: float, statuses: Sequence[str], batch_size: int
) -> int:
    """Delete up to ``batch_size`` jobs in ``statuses`` (final ones) that ended longer ago than that; a job
    whose webhook is still being delivered waits for the delivery to end."""
    cutoff = db_now(-older_than_seconds)
    in_flight = (
        select(webhook_deliveries.c.id)
        .where(
            webhook_deliveries.c.job_id == jobs.c.id,
            webhook_deliveries.c.state.in_([outbox.PENDING, outbox.DELIVERING]),
        )
        .exists()
    )
    old = (
        select(jobs.c.id)
        .where(jobs.c.status.in_(statuses), jobs.c.completed_at < cutoff, ~in_flight)
        .order_by(jobs.c.completed_at)
        .limit(batch_size)
    )
    ids = list(conn.execute(for_update(old, skip_locked=True)).scalars())
    state.delete_jobs(conn, ids)
    return len(ids)
