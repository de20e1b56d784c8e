"""The SQL of the ``jobs`` table: create, claim, lease, finish, cancel, sweep, purge, read.

Each function runs inside a transaction the job store opened (:class:`cesar_common.db.store.JobStore`) and
returns rows or plain values. Every path to a final state ends in :func:`on_final` in the same transaction,
which drops the audio, queues the webhook delivery (the outbox) and adds to the metric totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    update,
)

from cesar_common.db import audio, outbox, totals
from cesar_common.db.clock import db_now
from cesar_common.db.idempotency import KEY_WINDOW_SECONDS, IdempotencyKeyReusedError
from cesar_common.db.models import Job, JobPart, JobPartAudio, JobSegment
from cesar_common.db.notify import notify_job_changed, notify_new_job
from cesar_common.db.records import (
    FINAL_STATUSES,
    PUBLIC_STATUSES,
    JobRecord,
    JobResult,
    JobSource,
    JobStatus,
    NewJob,
    QueueCounts,
    SweepResult,
    WebhookDeliveryRecord,
)
from cesar_common.db.rows import decoding_values, job_record
from cesar_common.errors import ConflictError, InvalidInputError, NotFoundError
from cesar_common.options import options_dict
from cesar_common.text import is_plain_token

jobs = cast(Table, Job.__table__)
job_segments = cast(Table, JobSegment.__table__)
job_parts = cast(Table, JobPart.__table__)
job_part_audio = cast(Table, JobPartAudio.__table__)

QUEUED = JobStatus.QUEUED.value
PENDING = JobStatus.PENDING.value
PROCESSING = JobStatus.PROCESSING.value
FINAL = tuple(status.value for status in FINAL_STATUSES)
MAX_LIST_LIMIT = 1000


class LeaseLostError(ConflictError):
    """The job is no longer ``processing`` under this worker (its lease expired, or it was cancelled)."""

    code = "lease_lost"


def plausible_id(job_id: str) -> bool:
    """Whether ``job_id`` could name a job at all: anything else (too long, control characters, a NUL
    PostgreSQL would refuse) is unknown without asking the database."""
    return is_plain_token(job_id, max_length=36)


def not_found(job_id: str) -> NotFoundError:
    shown = job_id if plausible_id(job_id) else repr(job_id[:40])
    return NotFoundError(f"no job with id {shown}", extra={"job_id": job_id[:64]})


# --- creating ----------------------------------------------------------------------------------------
def new_job_values(job_id: str, new: NewJob, status: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": status,
        "source": JobSource(new.source).value,
        "source_url": new.source_url,
        "filename": new.filename,
        "content_type": new.content_type,
        "size_bytes": None,
        **options_dict(new.options),
        "created_at": db_now(),
        "progress": 0.0,
        "attempts": 0,
        "max_attempts": new.max_attempts,
        "cancel_requested": False,
        "callback_url": new.callback_url,
    }


def insert_job(conn: Connection, values: dict[str, Any]) -> Row[Any]:
    return conn.execute(insert(jobs).values(values).returning(*jobs.c)).one()


def keep_pending_alive(conn: Connection, job_id: str) -> bool:
    """Refresh a ``pending`` upload's ``created_at`` (:func:`stale_pending` spares it); False once the
    upload was discarded."""
    alive = conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status == PENDING).values(created_at=db_now())
    ).rowcount
    return bool(alive == 1)


def publish_pending(conn: Connection, job_id: str, values: dict[str, Any]) -> Row[Any] | None:
    """Turn a stored upload ``queued`` (None when it was discarded meanwhile)."""
    row = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == PENDING)
        .values(status=QUEUED, created_at=db_now(), **values)
        .returning(*jobs.c)
    ).one_or_none()
    if row is not None:
        notify_new_job(conn)
    return row


def delete_pending(conn: Connection, job_ids: Sequence[str]) -> None:
    audio.delete_audio(conn, job_ids)
    conn.execute(delete(jobs).where(jobs.c.id.in_(job_ids), jobs.c.status == PENDING))


def stale_pending(conn: Connection, *, older_than_seconds: float) -> list[str]:
    cutoff = db_now(-older_than_seconds)
    return list(
        conn.execute(select(jobs.c.id).where(jobs.c.status == PENDING, jobs.c.created_at < cutoff)).scalars()
    )


# --- idempotency -------------------------------------------------------------------------------------
def holding_key(key: str) -> Select[Any]:
    return select(jobs).where(jobs.c.idempotency_key == key)


def job_holding_key(conn: Connection, key: str, *, within_window: bool = False) -> Row[Any] | None:
    stmt = holding_key(key)
    if within_window:
        stmt = stmt.where(jobs.c.created_at >= db_now(-KEY_WINDOW_SECONDS))
    return conn.execute(stmt).one_or_none()


def release_stale_key(conn: Connection, key: str) -> None:
    """A key older than the window names nothing any more: free it for the job about to take it."""
    conn.execute(
        update(jobs)
        .where(jobs.c.idempotency_key == key, jobs.c.created_at < db_now(-KEY_WINDOW_SECONDS))
        .values(idempotency_key=None)
    )


def same_request(existing: JobRecord, fingerprint: str, key: str) -> JobRecord:
    """``existing`` if it was made by the same request, else IdempotencyKeyReusedError (422)."""
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReusedError(
            "this Idempotency-Key was already used with a different request (within the last 24 hours): "
            "use a new key for a new request",
            extra={"job_id": existing.id, "idempotency_key": key},
        )
    return existing


# --- reading -----------------------------------------------------------------------------------------
# Reads run these prebuilt statements with bound parameters: building and cache-keying a fresh Select
# per call cost more than running it (GET /jobs/{id} is the API's hottest path).
#: every column of jobs, in table order, but ``segments`` read as NULL: a long transcript's segments are
#: megabytes of JSON that only the transcript route renders
_WITHOUT_SEGMENTS = [null().label(column.name) if column.name == "segments" else column for column in jobs.c]
_VISIBLE_BY_ID = and_(jobs.c.id == bindparam("job_id"), jobs.c.status != PENDING)
_GET_VISIBLE_FULL = select(jobs).where(_VISIBLE_BY_ID)
_GET_VISIBLE = select(*_WITHOUT_SEGMENTS).where(_VISIBLE_BY_ID)
_QUEUE_POSITION = select(func.count()).where(
    jobs.c.status == QUEUED,
    or_(
        jobs.c.created_at < bindparam("created_at"),
        and_(jobs.c.created_at == bindparam("created_at"), jobs.c.id <= bindparam("job_id")),
    ),
)


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


def _list_page(by_status: bool, after_cursor: bool) -> Select[Any]:
    stmt = select(*_WITHOUT_SEGMENTS).where(
        jobs.c.status == bindparam("status") if by_status else jobs.c.status != PENDING
    )
    if after_cursor:
        stmt = stmt.where(
            or_(
                jobs.c.created_at < bindparam("created_at"),
                and_(jobs.c.created_at == bindparam("created_at"), jobs.c.id < bindparam("job_id")),
            )
        )
    return stmt.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(bindparam("limit"))


#: list_page's statement by (status filter given, cursor given)
_LIST_PAGE = {
    (by_status, after): _list_page(by_status, after) for by_status in (False, True) for after in (False, True)
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
) -> list[Row[Any]]:
    """Up to ``limit`` jobs newest first, after the ``(created_at, id)`` of ``after``."""
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status
    if after is not None:
        params["created_at"], params["job_id"] = after
    return list(conn.execute(_LIST_PAGE[(status is not None, after is not None)], params).all())


def get_many(conn: Connection, job_ids: Sequence[str]) -> list[Row[Any]]:
    """The rows of the (visible) jobs among ``job_ids``, without their segments."""
    wanted = [job_id for job_id in job_ids if plausible_id(job_id)]
    if not wanted:
        return []
    stmt = select(*_WITHOUT_SEGMENTS).where(jobs.c.id.in_(wanted), jobs.c.status != PENDING)
    return list(conn.execute(stmt).all())


def queue_positions(conn: Connection, job_ids: Sequence[str]) -> dict[str, int]:
    """The queue positions of those of ``job_ids`` that are queued, in one statement."""
    if not job_ids:
        return {}
    ahead = jobs.alias("ahead")
    rank = (
        select(func.count())
        .where(
            ahead.c.status == QUEUED,
            or_(
                ahead.c.created_at < jobs.c.created_at,
                and_(ahead.c.created_at == jobs.c.created_at, ahead.c.id <= jobs.c.id),
            ),
        )
        .scalar_subquery()
    )
    rows = conn.execute(select(jobs.c.id, rank).where(jobs.c.id.in_(job_ids), jobs.c.status == QUEUED))
    return {job_id: int(position) for job_id, position in rows}


def queue_position(conn: Connection, *, created_at: datetime, job_id: str) -> int:
    params = {"created_at": created_at, "job_id": job_id}
    return int(conn.execute(_QUEUE_POSITION, params).scalar_one())


def queue_counts(conn: Connection) -> QueueCounts:
    rows = conn.execute(
        select(jobs.c.status, func.count())
        .where(jobs.c.status.in_([QUEUED, PROCESSING]))
        .group_by(jobs.c.status)
    ).all()
    counts = {status: int(count) for status, count in rows}
    return QueueCounts(queued=counts.get(QUEUED, 0), processing=counts.get(PROCESSING, 0))


def counts_by_status(conn: Connection) -> dict[str, int]:
    """Jobs by public status (every status present, 0 when none)."""
    found = dict.fromkeys((str(status) for status in PUBLIC_STATUSES), 0)
    for status, count in conn.execute(
        select(jobs.c.status, func.count()).where(jobs.c.status != PENDING).group_by(jobs.c.status)
    ).all():
        found[status] = int(count)
    return found


def oldest_queued_age(conn: Connection) -> float:
    """Seconds the oldest queued job has waited, by the database's clock (0 when none waits)."""
    oldest = func.min(jobs.c.created_at, type_=jobs.c.created_at.type)
    now, first = conn.execute(select(db_now(), oldest).where(jobs.c.status == QUEUED)).one()
    return 0.0 if first is None else max((now - first).total_seconds(), 0.0)


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


def uploaded_size(conn: Connection, job_id: str) -> int | None:
    """The size of the job's upload (None for a URL job); NotFoundError for an unknown job."""
    row = conn.execute(
        select(jobs.c.size_bytes).where(jobs.c.id == job_id, jobs.c.status != PENDING)
    ).one_or_none()
    if row is None:
        raise not_found(job_id)
    return cast(int | None, row.size_bytes)


# --- workers' side -----------------------------------------------------------------------------------
def held(job_id: str, worker_id: str) -> ColumnElement[bool]:
    """The fence: the job is processing and held by ``worker_id``."""
    return and_(jobs.c.id == job_id, jobs.c.status == PROCESSING, jobs.c.worker_id == worker_id)


def claim(conn: Connection, worker_id: str, *, lease_seconds: float) -> Row[Any] | None:
    """The oldest queued job, taken in one atomic statement; None when the queue is empty."""
    oldest = select(jobs.c.id).where(jobs.c.status == QUEUED).order_by(jobs.c.created_at, jobs.c.id).limit(1)
    if conn.dialect.name == "postgresql":
        # concurrent claimers skip each other's row instead of queueing behind its lock
        oldest = oldest.with_for_update(skip_locked=True)
    row = conn.execute(
        update(jobs)
        .where(jobs.c.id == oldest.scalar_subquery(), jobs.c.status == QUEUED)
        .values(
            status=PROCESSING,
            attempts=jobs.c.attempts + 1,
            started_at=db_now(),
            worker_id=worker_id,
            lease_expires_at=db_now(lease_seconds),
            progress=0.0,
            segment_count=0,
        )
        .returning(*jobs.c)
    ).one_or_none()
    if row is not None:
        notify_job_changed(conn, row.id)
    return row


def extend_lease(conn: Connection, job_id: str, worker_id: str, *, lease_seconds: float) -> bool:
    changed = conn.execute(
        update(jobs).where(held(job_id, worker_id)).values(lease_expires_at=db_now(lease_seconds))
    )
    return bool(changed.rowcount == 1)


def set_progress(
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
    values: dict[str, Any] = {"progress": progress, "segment_count": jobs.c.segment_count + len(segments)}
    if lease_seconds is not None:
        values["lease_expires_at"] = db_now(lease_seconds)
    row = conn.execute(
        update(jobs)
        .where(held(job_id, worker_id))
        .values(**values)
        .returning(jobs.c.cancel_requested, jobs.c.segment_count)
    ).one_or_none()
    if row is None:
        raise LeaseLostError(f"job {job_id} is no longer held by worker {worker_id}")
    _insert_live_segments(conn, job_id, row.segment_count - len(segments), segments)
    notify_job_changed(conn, job_id)
    return bool(row.cancel_requested)


def append_live_segments(conn: Connection, job_id: str, segments: Sequence[dict[str, Any]]) -> None:
    """Add ``segments`` to a running job's live segments (renumbered on from the ones before)."""
    if not segments:
        return
    count = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(segment_count=jobs.c.segment_count + len(segments))
        .returning(jobs.c.segment_count)
    ).scalar_one()
    first = count - len(segments)
    numbered = [{**segment, "id": first + n} for n, segment in enumerate(segments)]
    _insert_live_segments(conn, job_id, first, numbered)


def _insert_live_segments(
    conn: Connection, job_id: str, first: int, segments: Sequence[dict[str, Any]]
) -> None:
    if segments:
        conn.execute(
            insert(job_segments),
            [{"job_id": job_id, "seq": first + n, "data": dict(data)} for n, data in enumerate(segments)],
        )


def drop_parts(conn: Connection, job_ids: Sequence[str]) -> None:
    """The parts of these jobs and their audio (a job that ended, or went back to the queue)."""
    conn.execute(delete(job_part_audio).where(job_part_audio.c.job_id.in_(job_ids)))
    conn.execute(delete(job_parts).where(job_parts.c.job_id.in_(job_ids)))


def segments_from(conn: Connection, job_id: str, first: int) -> list[dict[str, Any]]:
    """A running job's live segments from index ``first`` on, in order."""
    rows = conn.execute(
        select(job_segments.c.data)
        .where(job_segments.c.job_id == job_id, job_segments.c.seq >= first)
        .order_by(job_segments.c.seq)
    ).scalars()
    return [dict(data) for data in rows]


def segments_from_many(conn: Connection, firsts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """For each job in ``firsts``, its live segments from that index on, in order: one statement."""
    if not firsts:
        return {}
    wanted = or_(
        *(
            and_(job_segments.c.job_id == job_id, job_segments.c.seq >= first)
            for job_id, first in firsts.items()
        )
    )
    rows = conn.execute(
        select(job_segments.c.job_id, job_segments.c.data)
        .where(wanted)
        .order_by(job_segments.c.job_id, job_segments.c.seq)
    )
    found: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in firsts}
    for job_id, data in rows:
        found[job_id].append(dict(data))
    return found


def drop_live_segments(conn: Connection, job_ids: Sequence[str]) -> None:
    conn.execute(delete(job_segments).where(job_segments.c.job_id.in_(job_ids)))


#: what on_final needs from a job that just became final (UPDATE ... RETURNING)
FINISHED_COLUMNS = (
    jobs.c.id,
    jobs.c.status,
    jobs.c.started_at,
    jobs.c.completed_at,
    jobs.c.duration,
    jobs.c.callback_url,
)
_REQUEUE_VALUES: dict[str, Any] = {
    "status": QUEUED,
    "worker_id": None,
    "lease_expires_at": None,
    "started_at": None,
    "progress": 0.0,
    "segment_count": 0,  # the next attempt decodes again from the start
    "parts": None,  # and cuts again (a worker lost while cutting leaves parts of no use)
}


def final_values(status: JobStatus, **values: Any) -> dict[str, Any]:
    """The columns a job reaching final ``status`` gets."""
    return {"status": status.value, "completed_at": db_now(), "lease_expires_at": None, **values}


def completed_values(result: JobResult) -> dict[str, Any]:
    """The columns a job completed with ``result`` gets."""
    return final_values(
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
    """Make a held job final with ``values`` (:func:`final_values`); False when it is not held any more."""
    row = conn.execute(
        update(jobs).where(held(job_id, worker_id)).values(**values).returning(*FINISHED_COLUMNS)
    ).one_or_none()
    if row is not None:
        on_final(conn, row, keep_audio=keep_audio)
    return row is not None


def on_final(conn: Connection, row: Row[Any], *, keep_audio: bool) -> None:
    """What every path to a final state does in its transaction: drop the audio, queue the webhook
    delivery (the outbox: never a final job without its delivery) and count the job."""
    if not keep_audio:
        audio.delete_audio(conn, [row.id])
    drop_live_segments(conn, [row.id])  # the transcript, if any, is jobs.segments now
    drop_parts(conn, [row.id])
    notify_job_changed(conn, row.id)
    outbox.enqueue(conn, row.id, row.callback_url)
    wall = None
    if row.started_at is not None and row.completed_at is not None:
        wall = (row.completed_at - row.started_at).total_seconds()
    totals.add(conn, totals.job_finished_additions(row.status, wall_seconds=wall, audio_seconds=row.duration))


def select_cancel_requested(job_id: str, worker_id: str) -> Select[Any]:
    """A held job's cancel_requested (no row when ``worker_id`` does not hold it)."""
    return select(jobs.c.cancel_requested).where(held(job_id, worker_id))


def release(conn: Connection, job_id: str, worker_id: str, *, keep_audio: bool) -> bool:
    """Hand a held job back to the queue without counting the attempt; a job whose cancel was requested
    is cancelled instead. False when the job is not held by ``worker_id``."""
    row = conn.execute(for_update(select_cancel_requested(job_id, worker_id))).one_or_none()
    if row is None:
        return False
    if row.cancel_requested:
        return finish(conn, job_id, worker_id, final_values(JobStatus.CANCELLED), keep_audio=keep_audio)
    greatest = func.greatest if conn.dialect.name == "postgresql" else func.max
    conn.execute(
        update(jobs)
        .where(held(job_id, worker_id))
        .values(**_REQUEUE_VALUES, attempts=greatest(jobs.c.attempts - 1, 0))
    )
    drop_live_segments(conn, [job_id])
    drop_parts(conn, [job_id])
    notify_job_changed(conn, job_id)
    notify_new_job(conn)
    return True


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
            values: dict[str, Any] = {
                "status": JobStatus.CANCELLED.value,
                "completed_at": db_now(),
                "lease_expires_at": None,
            }
        elif row.attempts >= row.max_attempts:
            values = {
                "status": JobStatus.ERROR.value,
                "completed_at": db_now(),
                "lease_expires_at": None,
                "error_code": "worker_lost",
                "error_message": f"worker lost {row.attempts} times",
            }
        else:
            values = dict(_REQUEUE_VALUES)
        changed = conn.execute(
            update(jobs).where(still_expired).values(**values).returning(*FINISHED_COLUMNS)
        ).one_or_none()
        if changed is None:
            continue
        if values["status"] == QUEUED:
            requeued.append(row.id)
            drop_live_segments(conn, [row.id])
            drop_parts(conn, [row.id])
            notify_job_changed(conn, row.id)
            continue
        on_final(conn, changed, keep_audio=keep_audio)
        if values["status"] == JobStatus.ERROR.value:
            failed.append(row.id)
    if requeued:
        notify_new_job(conn)
    return SweepResult(requeued=requeued, failed=failed)


# --- clients' side -----------------------------------------------------------------------------------
def request_cancel(conn: Connection, job_id: str, *, keep_audio: bool) -> Row[Any]:
    """Queued: cancelled at once. Processing: flagged for its worker. Final: ConflictError."""
    status = status_of(conn, job_id, lock=True)
    if status is None or status == PENDING:
        raise not_found(job_id)
    if status == QUEUED or (status == PROCESSING and is_split(conn, job_id)):
        # a split job's parts run under no lease of the job's: it ends now, and each part's worker stops
        # at its next report (it finds its job cancelled)
        changed = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                status=JobStatus.CANCELLED.value,
                completed_at=db_now(),
                cancel_requested=status == PROCESSING,
                lease_expires_at=None,
            )
            .returning(*FINISHED_COLUMNS)
        ).one()
        on_final(conn, changed, keep_audio=keep_audio)
    elif status == PROCESSING:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
        notify_job_changed(conn, job_id)
    else:
        raise ConflictError(f"job {job_id} is already {status}", extra={"status": status})
    row = get_visible(conn, job_id, with_segments=True)
    assert row is not None
    return row


def delete_finished(conn: Connection, job_id: str) -> None:
    """Delete a finished job and its audio; ConflictError while it is queued or processing."""
    status = status_of(conn, job_id, lock=True)
    if status is None or status == PENDING:
        raise not_found(job_id)
    if status not in FINAL:
        raise ConflictError(
            f"job {job_id} is {status}: cancel it before deleting it", extra={"status": status}
        )
    delete_jobs(conn, [job_id])


def purge_batch(
    conn: Connection, *, older_than_seconds: float, statuses: Sequence[str], batch_size: int
) -> int:
    """Delete up to ``batch_size`` jobs in ``statuses`` (final ones) that ended longer ago than that; a job
    whose webhook is still being delivered waits for the delivery to end."""
    cutoff = db_now(-older_than_seconds)
    in_flight = (
        select(outbox.deliveries.c.id)
        .where(
            outbox.deliveries.c.job_id == jobs.c.id,
            outbox.deliveries.c.state.in_([outbox.PENDING, outbox.DELIVERING]),
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
    if ids:
        delete_jobs(conn, ids)
    return len(ids)


def delete_jobs(conn: Connection, ids: Sequence[str]) -> None:
    # children first: foreign keys cascade too, but SQLite only with the pragma on
    audio.delete_audio(conn, ids)
    drop_live_segments(conn, ids)
    drop_parts(conn, ids)
    conn.execute(delete(outbox.deliveries).where(outbox.deliveries.c.job_id.in_(ids)))
    conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))


def webhook_of(conn: Connection, row: Row[Any]) -> WebhookDeliveryRecord | None:
    """The latest webhook delivery of the job in ``row`` (None without a callback URL)."""
    if not row.callback_url:
        return None
    return outbox.latest_for(conn, [row.id]).get(row.id)


def record_with_webhook(conn: Connection, row: Row[Any]) -> JobRecord:
    return job_record(row, webhook_of(conn, row))


# --- statuses ----------------------------------------------------------------------------------------
def final_status(status: JobStatus | str) -> str:
    """``status`` if it is a final one, else InvalidInputError (purges never touch live jobs)."""
    value = _status(status)
    if value is None or not value.is_final:
        raise InvalidInputError(
            f"only finished jobs can be purged: {status!r} is not one of completed, error, cancelled"
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


def for_update(stmt: Select[Any], *, skip_locked: bool = False) -> Select[Any]:
    """Lock the selected rows on PostgreSQL. SQLite renders no row locks, and needs none: a write
    transaction there holds the database's write lock from its BEGIN IMMEDIATE."""
    return stmt.with_for_update(skip_locked=skip_locked)
