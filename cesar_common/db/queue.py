"""The queue: what a worker takes next, whether anything is waiting, and where a job stands in line.

Files are shared fairly between owners (the key that made a job, ``jobs.owner``; ``""`` for the server's own
key, an owner like any other). The next claim goes to the owner with the highest key priority
(``api_keys.priority``; 0 for an owner without a row), then to the one with the least work running, then to
the one whose work was claimed longest ago (``owner_turns``, written by each claim; never: first), then to
the oldest job (``created_at``, ``id``): a user with one job waits for one job of each other user, not for
another user's five hundred, and owners level on the rest take turns (by age alone, the owners who queued
first would win every tie, and one who queued last would wait for them all). An owner's running work is the
workers busy for it: its files held by a worker, and the parts of its split jobs being decoded. A split job
counts by its parts because each part holds a worker: counted as one job, a long file on ten workers would
still rank as light as a single short one.

A long job cut into parts (``job_parts``) takes its turn by the same rule: its first waiting part goes
unless an owner with a queued file ranks strictly ahead of the part's owner (higher priority, or the same
and less running work). Ties go to the part, so work already started still finishes first, but a long file
no longer takes every worker while other owners wait. Live sessions are claimed apart (:func:`claim_live`,
oldest first) by worker threads kept for them, so they never wait behind files, and are no one's running
work here.

:func:`claim` is one statement per table (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: concurrent claimers skip
each other's rows; SQLite has one writer at a time). Rather than sort the whole queue, it ranks the owners:
every key, the server's own, and the owner of the oldest queued file (so a job whose key row is gone still
gets its turn at the head of the line), each with its oldest queued file found through
``ix_jobs_owner_status_created_at_id``. A claim costs about two index lookups per key, however long the queue
(bench/claim_fairness.py). Only each owner's first file is a candidate: when concurrent claimers hold all of
them, the oldest file nobody holds is taken, so a claimer never comes back empty while a file waits.
:func:`work_waiting` asks only whether there is any work (the change feed's question on SQLite, which has
no notifications).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union,
    union_all,
    update,
)

from cesar_common.db import state
from cesar_common.db.clock import db_now
from cesar_common.db.records import JobSource, JobStatus, PartStatus, QueueCounts
from cesar_common.db.tables import api_keys, job_parts, jobs, owner_turns

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
PART_QUEUED = PartStatus.QUEUED.value


# --- the owners' standing ----------------------------------------------------------------------------
def _sql(value: str | int) -> Any:
    # a constant written into the statement, not bound: given these as parameters, PostgreSQL found the
    # claim's cached plan dearer than a fresh one and planned it anew at every claim (about 1 ms)
    return literal_column(str(value) if isinstance(value, int) else f"'{value}'")


_ONE = _sql(1)
#: the oldest queued file: whether any waits, and the claim's fallback when others hold every owner's first
_NEXT_JOB = (
    select(jobs.c.id)
    .where(jobs.c.status == _sql(QUEUED), jobs.c.source != _sql(LIVE))
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(_ONE)
)
_oldest = jobs.alias("oldest")
#: the owners who may have a queued file: every key, the server's own (""), and the owner of the oldest
#: queued file (a job whose key row is gone is no one's here, but still has its turn at the queue's head)
_owners = union(
    select(api_keys.c.id.label("owner")),
    select(_sql("").label("owner")),
    select(
        select(_oldest.c.owner)
        .where(_oldest.c.status == _sql(QUEUED), _oldest.c.source != _sql(LIVE))
        .order_by(_oldest.c.created_at, _oldest.c.id)
        .limit(_ONE)
        .scalar_subquery()
        .label("owner")
    ),
).cte("owners")
_busy = jobs.alias("busy")
_split = jobs.alias("split")
#: each owner's workers at work, one row each: its file jobs held by a worker, its split jobs' parts being
#: decoded (a split job itself is held by no worker)
_at_work = union_all(
    select(_busy.c.owner).where(
        _busy.c.status == _sql(PROCESSING), _busy.c.worker_id.is_not(None), _busy.c.source != _sql(LIVE)
    ),
    select(_split.c.owner)
    .join(job_parts, job_parts.c.job_id == _split.c.id)
    .where(job_parts.c.status == _sql(PartStatus.PROCESSING.value)),
).subquery("at_work")
_running = select(_at_work.c.owner, func.count().label("running")).group_by(_at_work.c.owner).cte("running")
_PRIORITY = func.coalesce(api_keys.c.priority, _sql(0))
_RUNNING = func.coalesce(_running.c.running, _sql(0))
_head = jobs.alias("head")
#: each owner's priority, running work and oldest queued file (null: none), by the owner index
_standing = (
    select(
        _owners.c.owner,
        _PRIORITY.label("priority"),
        _RUNNING.label("running"),
        owner_turns.c.claimed_at.label("last_turn"),
        select(_head.c.id)
        .where(_head.c.owner == _owners.c.owner, _head.c.status == _sql(QUEUED), _head.c.source != _sql(LIVE))
        # the index's order: jobs of one millisecond (SQLite's clock) in the order they were made (their ids)
        .order_by(_head.c.created_at, _head.c.id)
        .limit(_ONE)
        .scalar_subquery()
        .label("next_job"),
    )
    .select_from(
        _owners.outerjoin(api_keys, api_keys.c.id == _owners.c.owner)
        .outerjoin(_running, _running.c.owner == _owners.c.owner)
        .outerjoin(owner_turns, owner_turns.c.owner == _owners.c.owner)
    )
    .where(_owners.c.owner.is_not(None))
    .cte("standing")
    # computed once: PostgreSQL would otherwise fold it into the claim and hash the whole jobs table
    .prefix_with("MATERIALIZED", dialect="postgresql")
)

# --- what the next claim takes -----------------------------------------------------------------------
_candidate = jobs.alias("candidate")
#: the next job: the first owner's oldest queued file
_FAIR_JOB = (
    select(_candidate.c.id)
    .join(_standing, _candidate.c.id == _standing.c.next_job)
    .order_by(
        _standing.c.priority.desc(),
        _standing.c.running,
        _standing.c.last_turn.nulls_first(),
        _candidate.c.created_at,
        _candidate.c.id,
    )
    .limit(_ONE)
)
#: (priority, -running) of the first owner with a queued file (null: none)
_BEST_JOB_OWNER = (
    select(_standing.c.priority, -_standing.c.running)
    .where(_standing.c.next_job.is_not(None))
    .order_by(_standing.c.priority.desc(), _standing.c.running)
    .limit(_ONE)
    .scalar_subquery()
)
_ANY_PART = select(job_parts.c.id).where(job_parts.c.status == _sql(PART_QUEUED))
_part_job = jobs.alias("part_job")
#: the next part: the first waiting part (in order) of the highest standing owner's oldest split job,
#: unless an owner with a queued file stands strictly higher
_FAIR_PART = (
    select(job_parts.c.id)
    .join(_part_job, _part_job.c.id == job_parts.c.job_id)
    .outerjoin(api_keys, api_keys.c.id == _part_job.c.owner)
    .outerjoin(_running, _running.c.owner == _part_job.c.owner)
    .where(
        exists(_ANY_PART),  # first: without a waiting part, no owner is read
        job_parts.c.status == _sql(PART_QUEUED),
        func.coalesce(tuple_(_PRIORITY, -_RUNNING) >= _BEST_JOB_OWNER, true()),
    )
    .order_by(_PRIORITY.desc(), _RUNNING, job_parts.c.created_at, job_parts.c.job_id, job_parts.c.seq)
    .limit(_ONE)
)
#: the next live session to take: the oldest queued one
_NEXT_LIVE = (
    select(jobs.c.id)
    .where(jobs.c.status == QUEUED, jobs.c.source == LIVE)
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(1)
)
_WORK_WAITING = select(or_(exists(_ANY_PART), exists(_NEXT_JOB), exists(_NEXT_LIVE)))


def work_waiting(conn: Connection) -> bool:
    """Whether :func:`claim` or :func:`claim_live` would find something: a part, a job or a session."""
    return bool(conn.execute(_WORK_WAITING).scalar())


def _skipping(stmt: Select[Any], locks: bool, of: Any = None) -> Select[Any]:
    # concurrent claimers skip each other's row instead of queueing behind its lock (PostgreSQL); ``of``:
    # the one table whose row is taken, where the statement reads others too
    return stmt.with_for_update(skip_locked=True, of=of) if locks else stmt


def _claims(locks: bool) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Which part, and which job, a claim takes."""
    part = _skipping(_FAIR_PART, locks, of=job_parts).scalar_subquery()
    fair = _skipping(_FAIR_JOB, locks, of=_candidate).scalar_subquery()
    oldest = _skipping(_NEXT_JOB, locks).scalar_subquery()
    return (
        and_(job_parts.c.id == part, job_parts.c.status == PART_QUEUED),
        # COALESCE reads the oldest only when every owner's first job is someone else's claim
        and_(jobs.c.id == func.coalesce(fair, oldest), jobs.c.status == QUEUED),
    )


#: :func:`_claims` without and with row locks, built once rather than at every claim (they are large)
_CLAIMS = {locks: _claims(locks) for locks in (False, True)}


def claim(
    conn: Connection, worker_id: str, *, lease_seconds: float
) -> tuple[Row[Any], Row[Any] | None] | None:
    """Take the next work for ``worker_id`` under a lease (the module's order): ``(job, part)`` (the part's
    job) or ``(job, None)`` (a whole job, now processing, attempts + 1); None when nothing waits."""
    which_part, which_job = _CLAIMS[_locks(conn)]
    taken = state.change_parts(
        conn,
        which_part,
        {
            "status": PartStatus.PROCESSING.value,
            "attempts": job_parts.c.attempts + 1,
            "worker_id": worker_id,
            "lease_expires_at": db_now(lease_seconds),
            "progress": 0.0,
        },
    )
    if taken:
        part = taken[0]
        parts_job = conn.execute(select(jobs).where(jobs.c.id == part.job_id)).one()
        _took_turn(conn, parts_job.owner)
        return parts_job, part
    job = state.change_job(
        conn,
        which_job,
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
    if job is None:
        return None
    _took_turn(conn, job.owner)
    return job, None


def _took_turn(conn: Connection, owner: str) -> None:
    """Note that ``owner``'s work was claimed now (the tie-break of the next claims). Its row is made with
    its key (the server's own by the migration); one another claimer is writing is left to it, since it
    writes the same moment: claims never wait on each other here."""
    held = select(owner_turns.c.owner).where(owner_turns.c.owner == owner)
    conn.execute(
        update(owner_turns)
        .where(owner_turns.c.owner == _skipping(held, _locks(conn)).scalar_subquery())
        .values(claimed_at=db_now())
    )


def claim_live(conn: Connection, worker_id: str, *, lease_seconds: float) -> Row[Any] | None:
    """Take the oldest queued live session for ``worker_id`` under a lease (attempts + 1); None when none
    waits. Its confirmed segments stay: a session taken over goes on after them."""
    return state.change_job(
        conn,
        and_(jobs.c.id == _skipping(_NEXT_LIVE, _locks(conn)).scalar_subquery(), jobs.c.status == QUEUED),
        {
            "status": PROCESSING,
            "attempts": jobs.c.attempts + 1,
            "started_at": func.coalesce(jobs.c.started_at, db_now()),
            "worker_id": worker_id,
            "lease_expires_at": db_now(lease_seconds),
        },
    )


def _locks(conn: Connection) -> bool:
    """Whether rows are locked: PostgreSQL's are; SQLite has one writer at a time."""
    return conn.dialect.name == "postgresql"


# --- places in line ----------------------------------------------------------------------------------
# Files and live sessions wait in lines of their own (different claimers take them): a job's place counts
# the queued jobs of its kind created before it, ties broken by id. For files that is a hint: the fair claim
# may take another owner's later job first, or this owner's before older ones of a busier owner. The exact
# place would rank every owner's jobs for every job shown.
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
    """The jobs of its kind created before it, and itself: 1 for the next live session, and for a file a
    hint (the fair claim's order is by owner, see above)."""
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
