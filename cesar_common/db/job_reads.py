"""Reading jobs: one job, a page of jobs, several jobs, their counts; statuses as clients name them.

Reads run prebuilt statements with bound parameters: building and cache-keying a fresh Select per call
cost more than running it (``GET /jobs/{id}`` is the API's hottest path). A ``pending`` upload is never
shown: for a reader it does not exist yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Select, and_, bindparam, case, func, null, or_, select

from cesar_common.db import outbox
from cesar_common.db.records import PUBLIC_STATUSES, JobRecord, JobStatus
from cesar_common.db.rows import job_record
from cesar_common.db.tables import jobs
from cesar_common.errors import InvalidInputError, NotFoundError
from cesar_common.text import is_plain_token

__all__ = [
    "FINAL",
    "JOB_VIEW",
    "MAX_LIST_LIMIT",
    "cancel_state",
    "counts_by_status",
    "final_status",
    "for_update",
    "get_many",
    "get_view",
    "get_visible",
    "is_split",
    "list_page",
    "not_found",
    "owner_of",
    "pending_among",
    "plausible_id",
    "public_status",
    "record_with_webhook",
    "status_of",
    "uploaded_size",
]

PENDING = JobStatus.PENDING.value
QUEUED = JobStatus.QUEUED.value
PROCESSING = JobStatus.PROCESSING.value
FINAL = tuple(status.value for status in JobStatus if status.is_final)
MAX_LIST_LIMIT = 1000


def plausible_id(job_id: str) -> bool:
    """Whether ``job_id`` could name a job at all: anything else (too long, control characters, a NUL
    PostgreSQL would refuse) is unknown without asking the database."""
    return is_plain_token(job_id, max_length=36)


def owner_of(conn: Connection, job_id: str) -> str | None:
    """The key that made the job (None: no such job, or a ``pending`` upload)."""
    if not plausible_id(job_id):
        return None
    found = conn.execute(
        select(jobs.c.owner).where(jobs.c.id == job_id, jobs.c.status != PENDING)
    ).scalar_one_or_none()
    return None if found is None else str(found)


def not_found(job_id: str) -> NotFoundError:
    shown = job_id if plausible_id(job_id) else repr(job_id[:40])
    return NotFoundError(f"no job with id {shown}", extra={"job_id": job_id[:64]})


def for_update(stmt: Select[Any], *, skip_locked: bool = False) -> Select[Any]:
    """Lock the selected rows on PostgreSQL. SQLite renders no row locks, and needs none: a write
    transaction there holds the database's write lock from its BEGIN IMMEDIATE."""
    return stmt.with_for_update(skip_locked=skip_locked)


#: every column of jobs, in table order, but ``segments`` read as NULL: a long transcript's segments are
#: megabytes of JSON that only the transcript route renders
_WITHOUT_SEGMENTS = [null().label(column.name) if column.name == "segments" else column for column in jobs.c]
_VISIBLE_BY_ID = and_(jobs.c.id == bindparam("job_id"), jobs.c.status != PENDING)
_GET_VISIBLE_FULL = select(jobs).where(_VISIBLE_BY_ID)
_GET_VISIBLE = select(*_WITHOUT_SEGMENTS).where(_VISIBLE_BY_ID)

_AHEAD = jobs.alias("ahead")
#: GET /jobs/{id}: the job without segments and, while it is queued, its 1-based place in the queue (the jobs
#: created before it, ties broken by id: the order claims take), in one statement
JOB_VIEW: Select[Any] = select(
    *_WITHOUT_SEGMENTS,
    case(
        (
            jobs.c.status == QUEUED,
            select(func.count())
            .where(
                _AHEAD.c.status == QUEUED,
                or_(
                    _AHEAD.c.created_at < jobs.c.created_at,
                    and_(_AHEAD.c.created_at == jobs.c.created_at, _AHEAD.c.id <= jobs.c.id),
                ),
            )
            .scalar_subquery(),
        ),
        else_=null(),
    ).label("queue_position"),
).where(_VISIBLE_BY_ID)


def _list_page(by_status: bool, after_cursor: bool, by_owner: bool) -> Select[Any]:
    stmt = select(*_WITHOUT_SEGMENTS).where(
        jobs.c.status == bindparam("status") if by_status else jobs.c.status != PENDING
    )
    if by_owner:
        stmt = stmt.where(jobs.c.owner == bindparam("owner"))
    if after_cursor:
        stmt = stmt.where(
            or_(
                jobs.c.created_at < bindparam("created_at"),
                and_(jobs.c.created_at == bindparam("created_at"), jobs.c.id < bindparam("job_id")),
            )
        )
    return stmt.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(bindparam("limit"))


#: list_page's statement by (status filter given, cursor given, owner given)
_LIST_PAGE = {
    (by_status, after, by_owner): _list_page(by_status, after, by_owner)
    for by_status in (False, True)
    for after in (False, True)
    for by_owner in (False, True)
}


def get_visible(conn: Connection, job_id: str, *, with_segments: bool = False) -> Row[Any] | None:
    """The job's row (never a ``pending`` upload); ``segments`` read as NULL unless ``with_segments``."""
    if not plausible_id(job_id):
        return None
    stmt = _GET_VISIBLE_FULL if with_segments else _GET_VISIBLE
    return conn.execute(stmt, {"job_id": job_id}).one_or_none()


def get_view(conn: Connection, job_id: str) -> Row[Any] | None:
    """:data:`JOB_VIEW`'s row for ``job_id``: the job's columns in table order, then its queue position."""
    if not plausible_id(job_id):
        return None
    return conn.execute(JOB_VIEW, {"job_id": job_id}).one_or_none()


def list_page(
    conn: Connection,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
    owner: str | None = None,
) -> list[Row[Any]]:
    """Up to ``limit`` jobs newest first, after the ``(created_at, id)`` of ``after``, of ``owner`` only
    when given."""
    params: dict[str, Any] = {"limit": limit, "owner": owner}
    if status is not None:
        params["status"] = status
    if after is not None:
        params["created_at"], params["job_id"] = after
    statement = _LIST_PAGE[(status is not None, after is not None, owner is not None)]
    return list(conn.execute(statement, params).all())


def get_many(conn: Connection, job_ids: Sequence[str]) -> list[Row[Any]]:
    """The rows of the (visible) jobs among ``job_ids``, without their segments."""
    wanted = [job_id for job_id in job_ids if plausible_id(job_id)]
    if not wanted:
        return []
    stmt = select(*_WITHOUT_SEGMENTS).where(jobs.c.id.in_(wanted), jobs.c.status != PENDING)
    return list(conn.execute(stmt).all())


def counts_by_status(conn: Connection) -> dict[str, int]:
    """Jobs by public status (every status present, 0 when none)."""
    found = dict.fromkeys((str(status) for status in PUBLIC_STATUSES), 0)
    for status, count in conn.execute(
        select(jobs.c.status, func.count()).where(jobs.c.status != PENDING).group_by(jobs.c.status)
    ).all():
        found[status] = int(count)
    return found


def cancel_state(conn: Connection, job_id: str) -> tuple[str, bool] | None:
    """The job's (status, cancel_requested); None for an unknown job."""
    if not plausible_id(job_id):
        return None
    row = conn.execute(
        select(jobs.c.status, jobs.c.cancel_requested).where(jobs.c.id == job_id, jobs.c.status != PENDING)
    ).one_or_none()
    return None if row is None else (row.status, bool(row.cancel_requested))


def status_of(conn: Connection, job_id: str, *, lock: bool = False) -> str | None:
    if not plausible_id(job_id):
        return None
    stmt = select(jobs.c.status).where(jobs.c.id == job_id)
    return conn.execute(for_update(stmt) if lock else stmt).scalar_one_or_none()


def is_split(conn: Connection, job_id: str) -> bool:
    """Whether the job runs as parts (cut, and no longer held by the worker that cut it)."""
    row = conn.execute(select(jobs.c.parts, jobs.c.worker_id).where(jobs.c.id == job_id)).one_or_none()
    return row is not None and row.parts is not None and row.worker_id is None


def pending_among(conn: Connection, job_ids: set[str]) -> set[str]:
    """Which of ``job_ids`` are uploads still arriving."""
    if not job_ids:
        return set()
    return set(
        conn.execute(select(jobs.c.id).where(jobs.c.id.in_(job_ids), jobs.c.status == PENDING)).scalars()
    )


def uploaded_size(conn: Connection, job_id: str) -> int | None:
    """The size of the job's upload (None for a URL job); NotFoundError for an unknown job."""
    row = conn.execute(
        select(jobs.c.size_bytes).where(jobs.c.id == job_id, jobs.c.status != PENDING)
    ).one_or_none()
    if row is None:
        raise not_found(job_id)
    return cast(int | None, row.size_bytes)


def record_with_webhook(conn: Connection, row: Row[Any]) -> JobRecord:
    """The job in ``row`` as a record, with its latest webhook delivery (none without a callback URL)."""
    webhook = outbox.latest_for(conn, [row.id]).get(row.id) if row.callback_url else None
    return job_record(row, webhook)


# --- statuses as clients name them -------------------------------------------------------------------
def final_status(status: JobStatus | str) -> str:
    """``status`` if it is a final one, else InvalidInputError (purges never touch live jobs)."""
    value = _status(status)
    if value is None or not value.is_final:
        raise InvalidInputError(
            f"only finished jobs can be purged: {status!r} is not one of {', '.join(FINAL)}"
        )
    return str(value)


def public_status(status: JobStatus | str) -> str:
    value = _status(status)
    if value not in PUBLIC_STATUSES:
        raise InvalidInputError(f"unknown job status {status!r}")
    return str(value)


def _status(status: JobStatus | str) -> JobStatus | None:
    try:
        return JobStatus(status)
    except ValueError:
        return None
