"""The queue: what a worker takes next, whether anything is waiting, and where a job stands in line.

File work is taken in one order, by one question asked two ways: the first waiting part of the oldest long
job cut into parts (work already started finishes first), else the oldest queued job. Live sessions are taken
apart from it (:func:`claim_live`), by the worker threads kept for them, so a session never waits behind
queued files. :func:`claim` takes it in
one transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: concurrent claimers skip each other's rows);
:func:`work_waiting` only asks whether there is any (the change feed's question on SQLite, which has no
notifications), with the same statements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, and_, bindparam, exists, func, or_, select

from cesar_common.db import state
from cesar_common.db.clock import db_now
from cesar_common.db.records import JobSource, JobStatus, PartStatus, QueueCounts
from cesar_common.db.tables import job_parts, jobs

__all__ = [
    "claim",
    "claim_live",
    "oldest_queued_age",
    "queue_counts",
    "queue_position",
    "queue_positions",
    "work_waiting",
]

QUEUED = JobStatus.QUEUED.value
PROCESSING = JobStatus.PROCESSING.value
LIVE = JobSource.LIVE.value

#: the next part to take: the oldest split job's first waiting part
_NEXT_PART = (
    select(job_parts.c.id)
    .where(job_parts.c.status == PartStatus.QUEUED.value)
    .order_by(job_parts.c.created_at, job_parts.c.id)
    .limit(1)
)
#: the next job to take: the oldest queued file
_NEXT_JOB = (
    select(jobs.c.id)
    .where(jobs.c.status == QUEUED, jobs.c.source != LIVE)
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(1)
)
#: the next live session to take: the oldest queued one
_NEXT_LIVE = (
    select(jobs.c.id)
    .where(jobs.c.status == QUEUED, jobs.c.source == LIVE)
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(1)
)
_WORK_WAITING = select(or_(exists(_NEXT_PART), exists(_NEXT_JOB), exists(_NEXT_LIVE)))


def work_waiting(conn: Connection) -> bool:
    """Whether :func:`claim` or :func:`claim_live` would find something: a part, a job or a session."""
    return bool(conn.execute(_WORK_WAITING).scalar())


def claim(
    conn: Connection, worker_id: str, *, lease_seconds: float
) -> tuple[Row[Any], Row[Any] | None] | None:
    """Take the next work for ``worker_id`` under a lease: ``(job, part)`` (the part's job) or ``(job,
    None)`` (a whole job, now processing, attempts + 1); None when nothing waits."""
    claimed = _claim_part(conn, worker_id, lease_seconds)
    if claimed is not None:
        return claimed
    job = state.change_job(
        conn,
        and_(jobs.c.id == _locked(conn, _NEXT_JOB).scalar_subquery(), jobs.c.status == QUEUED),
        {
            "status": PROCESSING,
            "attempts": jobs.c.attempts + 1,
            "started_at": db_now(),
            "worker_id": worker_id,
            "lease_expires_at": db_now(lease_seconds),
            "progress": 0.0,
            "segment_count": 0,
        },
    )
    return None if job is None else (job, None)


def claim_live(conn: Connection, worker_id: str, *, lease_seconds: float) -> Row[Any] | None:
    """Take the oldest queued live session for ``worker_id`` under a lease (attempts + 1); None when none
    waits. Its confirmed segments stay: a session taken over goes on after them."""
    return state.change_job(
        conn,
        and_(jobs.c.id == _locked(conn, _NEXT_LIVE).scalar_subquery(), jobs.c.status == QUEUED),
        {
            "status": PROCESSING,
            "attempts": jobs.c.attempts + 1,
            "started_at": func.coalesce(jobs.c.started_at, db_now()),
            "worker_id": worker_id,
            "lease_expires_at": db_now(lease_seconds),
        },
    )


def _claim_part(conn: Connection, worker_id: str, lease_seconds: float) -> tuple[Row[Any], Row[Any]] | None:
    taken = state.change_parts(
        conn,
        and_(
            job_parts.c.id == _locked(conn, _NEXT_PART).scalar_subquery(),
            job_parts.c.status == PartStatus.QUEUED.value,
        ),
        {
            "status": PartStatus.PROCESSING.value,
            "attempts": job_parts.c.attempts + 1,
            "worker_id": worker_id,
            "lease_expires_at": db_now(lease_seconds),
            "progress": 0.0,
        },
    )
    if not taken:
        return None
    part = taken[0]
    job = conn.execute(select(jobs).where(jobs.c.id == part.job_id)).one()
    return job, part


def _locked(conn: Connection, stmt: Select[Any]) -> Select[Any]:
    # concurrent claimers skip each other's row instead of queueing behind its lock (PostgreSQL)
    return stmt.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else stmt


# --- places in line ----------------------------------------------------------------------------------
# Files and live sessions wait in lines of their own (different claimers take them): a job's place counts
# the queued jobs of its kind created before it, ties broken by id.
def _same_kind(ahead: Any, source: Any) -> ColumnElement[bool]:
    same: ColumnElement[bool] = (ahead.c.source == LIVE) == (source == LIVE)
    return same


_QUEUE_POSITION = select(func.count()).where(
    jobs.c.status == QUEUED,
    _same_kind(jobs, bindparam("source")),
    or_(
        jobs.c.created_at < bindparam("created_at"),
        and_(jobs.c.created_at == bindparam("created_at"), jobs.c.id <= bindparam("job_id")),
    ),
)


def queue_position(conn: Connection, *, created_at: datetime, job_id: str, source: str) -> int:
    """1 for the job the next claim of its kind takes (the jobs of its kind created before it)."""
    params = {"created_at": created_at, "job_id": job_id, "source": source}
    return int(conn.execute(_QUEUE_POSITION, params).scalar_one())


def queue_positions(conn: Connection, job_ids: list[str]) -> dict[str, int]:
    """The queue positions of those of ``job_ids`` that are queued, in one statement."""
    if not job_ids:
        return {}
    ahead = jobs.alias("ahead")
    rank = (
        select(func.count())
        .where(
            ahead.c.status == QUEUED,
            _same_kind(ahead, jobs.c.source),
            or_(
                ahead.c.created_at < jobs.c.created_at,
                and_(ahead.c.created_at == jobs.c.created_at, ahead.c.id <= jobs.c.id),
            ),
        )
        .scalar_subquery()
    )
    rows = conn.execute(select(jobs.c.id, rank).where(jobs.c.id.in_(job_ids), jobs.c.status == QUEUED))
    return {job_id: int(position) for job_id, position in rows}


def queue_counts(conn: Connection) -> QueueCounts:
    rows = conn.execute(
        select(jobs.c.status, func.count())
        .where(jobs.c.status.in_([QUEUED, PROCESSING]))
        .group_by(jobs.c.status)
    ).all()
    counts = {status: int(count) for status, count in rows}
    return QueueCounts(queued=counts.get(QUEUED, 0), processing=counts.get(PROCESSING, 0))


def oldest_queued_age(conn: Connection) -> float:
    """Seconds the oldest queued job has waited, by the database's clock (0 when none waits)."""
    oldest = func.min(jobs.c.created_at, type_=jobs.c.created_at.type)
    now, first = conn.execute(select(db_now(), oldest).where(jobs.c.status == QUEUED)).one()
    return 0.0 if first is None else max((now - first).total_seconds(), 0.0)
