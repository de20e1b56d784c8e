"""The job store: the one layer through which the API and the workers touch the database.

All SQL lives here. Rows leave as frozen records (``cesar_common.db.records``), never as ORM objects.
SQLAlchemy errors are wrapped in ``DatabaseError`` where they enter (``__cause__`` kept).

CONTRACT (implemented in this module; the API and the worker rely on exactly these signatures):

    store = JobStore(engine)                       # engine from cesar_common.db.engine.make_engine
    store = JobStore.from_url(url)

    create_job(new: NewJob, audio: Iterable[bytes] | BinaryIO | None, *, max_bytes: int | None = None) -> JobRecord
        Inserts the job as `pending`, streams audio into job_audio in ~1 MiB chunks (several commits,
        never the whole file in memory), then flips it to `queued` in one UPDATE. Over max_bytes:
        deletes what was written and raises PayloadTooLargeError. Any failure while reading the
        stream deletes the pending job and re-raises. URL jobs pass audio=None and go straight to queued.
    create_job_idempotent(new, audio, *, max_bytes=None) -> tuple[JobRecord, bool]
        The same, honouring new.idempotency_key: (job, created). A key used within 24 h returns its job
        (created=False) when the request fingerprint matches, else IdempotencyKeyReusedError (422).
        Enforced by the UNIQUE index ux_jobs_idempotency_key; older keys are released on reuse.
    get_job(job_id, *, with_segments=False) -> JobRecord   NotFoundError for unknown ids and `pending` jobs.
        ``segments`` stays None unless asked for: a long transcript's segments are megabytes of JSON.
    list_jobs(*, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None) -> JobPage
        newest first (created_at DESC, id DESC), keyset pagination, opaque cursor (InvalidInputError if bad).
        Records without segments.
    queue_position(job: JobRecord) -> int | None    1-based rank among queued jobs (None unless queued).
    claim_job(worker_id, *, lease_seconds) -> JobRecord | None
        one atomic statement: oldest queued -> processing, attempts+1, started_at, worker_id, lease.
    extend_lease(job_id, worker_id, *, lease_seconds) -> bool     False when the lease was lost.
    report_progress(job_id, worker_id, progress: float) -> bool  fenced; returns cancel_requested
        (raises LeaseLostError(ConflictError) if the job is no longer held by worker_id).
    is_cancel_requested(job_id) -> bool
    complete_job(job_id, worker_id, result: JobResult) -> bool    fenced (status processing + worker_id)
    fail_job(job_id, worker_id, *, code: str, message: str) -> bool fenced
    cancel_running(job_id, worker_id) -> bool                     fenced: processing -> cancelled
    release_job(job_id, worker_id) -> bool       hand back to queued, attempt not counted (attempts-1)
    request_cancel(job_id) -> JobRecord
        queued -> cancelled at once; processing -> cancel_requested=True; final -> ConflictError.
    sweep_expired_leases(*, now: datetime | None = None) -> SweepResult
        processing jobs whose lease expired: back to queued if attempts < max_attempts, else error
        with error_code "worker_lost" and message "worker lost N times".
    purge_stale_uploads(*, older_than_seconds: float) -> int   delete `pending` jobs left by dead uploads.
    delete_job(job_id) -> None                   final jobs only (ConflictError otherwise), with audio.
    purge_finished_jobs(*, older_than_seconds, statuses=None, batch_size=200, max_batches=None) -> int
        retention: final jobs that ended before the cutoff, in small batches (never queued/processing).
    Every path to a final state (complete_job, fail_job, cancel_running, request_cancel of a queued job,
    the lease sweep, release_job of a cancelled job) queues the job's webhook delivery and adds to the
    metric totals in the same transaction.
    claim_delivery(worker_id, *, lease_seconds) -> WebhookDeliveryRecord | None   atomic, leased
    extend_delivery_lease(delivery_id, worker_id, *, lease_seconds) -> bool
    finish_delivery(delivery_id, worker_id, outcome: DeliveryOutcome) -> bool      fenced
    get_delivery(delivery_id) / list_deliveries(job_id)
    redeliver_webhook(job_id) -> JobRecord       NotFoundError; ConflictError without callback or not final
    metrics_snapshot(*, alive_within_seconds) -> MetricsSnapshot
    iter_audio(job_id) -> Iterator[bytes]        streams chunks in order (a fresh session per chunk batch).
    copy_audio_to(job_id, fileobj: BinaryIO) -> int   bytes written.
    audio_size(job_id) -> int
    register_worker(worker_id, *, host, pid) -> None      upsert presence row
    heartbeat_worker(worker_id, *, current_job_id: str | None, models: list[str]) -> None
    unregister_worker(worker_id) -> None
    list_workers(*, alive_within_seconds: float) -> list[WorkerRecord]
    remove_stale_workers(*, older_than_seconds: float) -> int
    queue_counts() -> QueueCounts
    ping() -> None                               DatabaseError when unreachable
    notify_new_job() / listen support: see cesar_common.db.notify (PostgreSQL LISTEN/NOTIFY)
"""  # noqa: E501

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cesar_common.db import outbox, totals
from cesar_common.db.engine import error_reason, make_engine, read_only
from cesar_common.db.idempotency import (
    KEY_WINDOW,
    IdempotencyKeyReusedError,
    check_key,
    request_fingerprint,
)
from cesar_common.db.models import Job, JobAudio, Worker
from cesar_common.db.notify import notify_new_job
from cesar_common.db.records import (
    FINAL_STATUSES,
    PUBLIC_STATUSES,
    Decoding,
    DeliveryOutcome,
    JobPage,
    JobRecord,
    JobResult,
    JobSource,
    JobStatus,
    MetricsSnapshot,
    NewJob,
    QueueCounts,
    SweepResult,
    TranscribeOptions,
    WebhookDeliveryRecord,
    WorkerRecord,
)
from cesar_common.errors import (
    ConflictError,
    DatabaseError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
)

#: bytes per job_audio row
CHUNK_SIZE = 1024 * 1024
#: job_audio rows fetched per read transaction while streaming audio out
READ_BATCH = 4
MAX_LIST_LIMIT = 1000
#: jobs deleted per transaction by purge_finished_jobs
PURGE_BATCH = 200

jobs = cast(Table, Job.__table__)
job_audio = cast(Table, JobAudio.__table__)
workers = cast(Table, Worker.__table__)

QUEUED = JobStatus.QUEUED.value
PENDING = JobStatus.PENDING.value
PROCESSING = JobStatus.PROCESSING.value
FINAL = tuple(status.value for status in FINAL_STATUSES)

AudioSource = Iterable[bytes] | BinaryIO | bytes


class LeaseLostError(ConflictError):
    """The job is no longer ``processing`` under this worker (its lease expired, or it was cancelled)."""

    code = "lease_lost"


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """Every read and write of jobs, their audio and worker presence. Thread-safe: one per process."""

    def __init__(self, engine: Engine, *, keep_audio: bool = False) -> None:
        self._engine = engine
        self._reader = read_only(engine)
        self._keep_audio = keep_audio
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    def from_url(cls, url: str, *, keep_audio: bool = False) -> JobStore:
        return cls(make_engine(url), keep_audio=keep_audio)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def reads_are_local(self) -> bool:
        """True when a short read costs less than handing it to a thread: SQLite, a file on this host.

        A primary-key read there takes about 0.1 ms and never waits for a writer (WAL), nor for a pooled
        connection (see ``create_cesar_engine``); a PostgreSQL read is a network round trip.
        """
        return self._engine.dialect.name == "sqlite"

    def close(self) -> None:
        """Close pooled connections (the engine stays usable)."""
        self._engine.dispose()

    # --- transactions --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed when the block ends."""
        try:
            with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise _database_error(exc) from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._reader.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise _database_error(exc) from exc

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(select(1)).scalar_one()

    # --- creating jobs -------------------------------------------------------------------------
    def create_job(
        self, new: NewJob, audio: AudioSource | None, *, max_bytes: int | None = None
    ) -> JobRecord:
        """The new job (or, for a known ``new.idempotency_key``, the job it created)."""
        return self.create_job_idempotent(new, audio, max_bytes=max_bytes)[0]

    def create_job_idempotent(
        self, new: NewJob, audio: AudioSource | None, *, max_bytes: int | None = None
    ) -> tuple[JobRecord, bool]:
        """Create a job; ``(job, created)``.

        With ``new.idempotency_key``: when a job made within 24 hours holds the key, that job comes back
        with ``created=False`` if this request has the same fingerprint, and IdempotencyKeyReusedError
        (422) if not.
        The UNIQUE index on the key decides between concurrent creates: exactly one inserts, the others find
        its job. An upload's key is set in the UPDATE that queues it, so a key never names a half-stored job;
        concurrent uploads with one key each store their audio, and all but the first discard theirs.
        """
        key = None if new.idempotency_key is None else check_key(new.idempotency_key)
        if audio is None:
            if new.source is JobSource.UPLOAD:
                raise InvalidInputError("an upload job needs its audio")
            fingerprint = None if key is None else request_fingerprint(new, None)
            return self._insert_queued(new, key, fingerprint)

        if key is not None:
            existing = self._job_holding_key(key)
            if existing is not None:
                # a retry: only its fingerprint matters, so hash the bytes without storing them
                digest = _hash_stream(audio, max_bytes)
                return _same_request(existing, request_fingerprint(new, digest), key), False

        job_id = str(uuid.uuid4())
        with self._write() as conn:
            conn.execute(insert(jobs).values(_new_job_values(job_id, new, PENDING)))
        try:
            size, digest = self._store_audio(job_id, audio, max_bytes, hashing=key is not None)
            if key is None:
                return self._publish_upload(job_id, size), True
            return self._publish_upload_once(job_id, size, key, request_fingerprint(new, digest))
        except BaseException:
            self._discard_upload(job_id)
            raise

    def _insert_queued(self, new: NewJob, key: str | None, fingerprint: str | None) -> tuple[JobRecord, bool]:
        values = {
            **_new_job_values(str(uuid.uuid4()), new, QUEUED),
            "idempotency_key": key,
            "request_fingerprint": fingerprint,
        }
        with self._write() as conn:
            if key is not None:
                _release_stale_key(conn, key)
            try:
                with conn.begin_nested():
                    row = conn.execute(insert(jobs).values(values).returning(*jobs.c)).one()
            except IntegrityError as exc:
                existing = conn.execute(_holding_key(key)).one_or_none() if key else None
                if existing is None:
                    raise _database_error(exc) from exc
                found = _record(existing, _webhook_of(conn, existing))
            else:
                notify_new_job(conn)
                return _record(row), True
        assert fingerprint is not None and key is not None
        return _same_request(found, fingerprint, key), False

    def _job_holding_key(self, key: str) -> JobRecord | None:
        cutoff = utcnow() - KEY_WINDOW
        with self._read() as conn:
            row = conn.execute(_holding_key(key).where(jobs.c.created_at >= cutoff)).one_or_none()
            return None if row is None else _record(row, _webhook_of(conn, row))

    def _store_audio(
        self, job_id: str, audio: AudioSource, max_bytes: int | None, *, hashing: bool = False
    ) -> tuple[int, str | None]:
        """Stream ``audio`` into job_audio; (bytes stored, their sha256 when ``hashing``)."""
        # One short transaction per chunk: the write lock is never held while the client's bytes trickle in.
        total = 0
        digest = hashlib.sha256() if hashing else None
        for seq, chunk in enumerate(_rechunk(audio, CHUNK_SIZE)):
            total += len(chunk)
            _check_size(total, max_bytes)
            if digest is not None:
                digest.update(chunk)
            with self._write() as conn:
                # refreshing created_at marks the upload alive for purge_stale_uploads
                alive = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.status == PENDING)
                    .values(created_at=utcnow())
                ).rowcount
                if alive != 1:
                    raise _upload_vanished(job_id)
                conn.execute(insert(job_audio).values(job_id=job_id, seq=seq, data=chunk))
        return total, None if digest is None else digest.hexdigest()

    def _publish_upload(self, job_id: str, size: int) -> JobRecord:
        with self._write() as conn:
            row = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == PENDING)
                .values(status=QUEUED, size_bytes=size, created_at=utcnow())
                .returning(*jobs.c)
            ).one_or_none()
            if row is None:
                raise _upload_vanished(job_id)
            notify_new_job(conn)
        return _record(row)

    def _publish_upload_once(
        self, job_id: str, size: int, key: str, fingerprint: str
    ) -> tuple[JobRecord, bool]:
        """Queue a stored upload under ``key``; if another job took the key first, discard this one."""
        values = {
            "status": QUEUED,
            "size_bytes": size,
            "created_at": utcnow(),
            "idempotency_key": key,
            "request_fingerprint": fingerprint,
        }
        with self._write() as conn:
            _release_stale_key(conn, key)
            try:
                with conn.begin_nested():
                    row = conn.execute(
                        update(jobs)
                        .where(jobs.c.id == job_id, jobs.c.status == PENDING)
                        .values(**values)
                        .returning(*jobs.c)
                    ).one_or_none()
            except IntegrityError as exc:
                existing = conn.execute(_holding_key(key)).one_or_none()
                if existing is None:
                    raise _database_error(exc) from exc
                found = _record(existing, _webhook_of(conn, existing))
                conn.execute(delete(job_audio).where(job_audio.c.job_id == job_id))
                conn.execute(delete(jobs).where(jobs.c.id == job_id, jobs.c.status == PENDING))
            else:
                if row is None:
                    raise _upload_vanished(job_id)
                notify_new_job(conn)
                return _record(row), True
        return _same_request(found, fingerprint, key), False

    def _discard_upload(self, job_id: str) -> None:
        # Best effort: if the database is down too, purge_stale_uploads removes the leftovers later.
        with contextlib.suppress(Exception), self._write() as conn:
            if conn.execute(_status_of(job_id)).scalar_one_or_none() == PENDING:
                conn.execute(delete(job_audio).where(job_audio.c.job_id == job_id))
                conn.execute(delete(jobs).where(jobs.c.id == job_id))

    def purge_stale_uploads(self, *, older_than_seconds: float) -> int:
        """Delete ``pending`` jobs (and their audio) whose upload made no progress for that long."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        with self._write() as conn:
            ids = list(
                conn.execute(
                    select(jobs.c.id).where(jobs.c.status == PENDING, jobs.c.created_at < cutoff)
                ).scalars()
            )
            if ids:
                conn.execute(delete(job_audio).where(job_audio.c.job_id.in_(ids)))
                conn.execute(delete(jobs).where(jobs.c.id.in_(ids), jobs.c.status == PENDING))
        return len(ids)

    # --- reading jobs --------------------------------------------------------------------------
    def get_job(self, job_id: str, *, with_segments: bool = False) -> JobRecord:
        """The job; its ``segments`` only ``with_segments`` (the API's polling path never needs them)."""
        stmt = _GET_VISIBLE_FULL if with_segments else _GET_VISIBLE
        with self._read() as conn:
            row = conn.execute(stmt, {"job_id": job_id}).one_or_none()
            if row is None:
                raise _not_found(job_id)
            return _record(row, _webhook_of(conn, row))

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> JobPage:
        """Newest first; ``next_cursor`` is None on the last page."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInputError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        params: dict[str, Any] = {"limit": limit + 1}
        if status is not None:
            params["status"] = _public_status(status)
        if cursor is not None:
            params["created_at"], params["job_id"] = decode_cursor(cursor)
        stmt = _LIST_PAGE[(status is not None, cursor is not None)]
        with self._read() as conn:
            rows = conn.execute(stmt, params).all()
            webhooks = outbox.latest_for(conn, [row.id for row in rows[:limit] if row.callback_url])
        records = [_record(row, webhooks.get(row.id)) for row in rows[:limit]]
        more = len(rows) > limit
        next_cursor = encode_cursor(records[-1].created_at, records[-1].id) if more else None
        return JobPage(jobs=records, next_cursor=next_cursor)

    def queue_position(self, job: JobRecord) -> int | None:
        """1 for the job the next claim takes; None unless ``job`` is queued."""
        if job.status is not JobStatus.QUEUED:
            return None
        params = {"created_at": job.created_at, "job_id": job.id}
        with self._read() as conn:
            return int(conn.execute(_QUEUE_POSITION, params).scalar_one())

    def queue_counts(self) -> QueueCounts:
        with self._read() as conn:
            rows = conn.execute(
                select(jobs.c.status, func.count())
                .where(jobs.c.status.in_([QUEUED, PROCESSING]))
                .group_by(jobs.c.status)
            ).all()
        counts = {status: int(count) for status, count in rows}
        return QueueCounts(queued=counts.get(QUEUED, 0), processing=counts.get(PROCESSING, 0))

    def is_cancel_requested(self, job_id: str) -> bool:
        """True once a client asked to cancel (or the job is already cancelled)."""
        with self._read() as conn:
            row = conn.execute(
                select(jobs.c.status, jobs.c.cancel_requested).where(
                    jobs.c.id == job_id, jobs.c.status != PENDING
                )
            ).one_or_none()
        if row is None:
            raise _not_found(job_id)
        return bool(row.cancel_requested) or row.status == JobStatus.CANCELLED.value

    # --- workers' side of a job ----------------------------------------------------------------
    def claim_job(self, worker_id: str, *, lease_seconds: float) -> JobRecord | None:
        """Take the oldest queued job, in one atomic statement. None when the queue is empty."""
        now = utcnow()
        oldest = (
            select(jobs.c.id).where(jobs.c.status == QUEUED).order_by(jobs.c.created_at, jobs.c.id).limit(1)
        )
        if self._postgres:
            # concurrent claimers skip each other's row instead of queueing behind its lock
            oldest = oldest.with_for_update(skip_locked=True)
        stmt = (
            update(jobs)
            .where(jobs.c.id == oldest.scalar_subquery(), jobs.c.status == QUEUED)
            .values(
                status=PROCESSING,
                attempts=jobs.c.attempts + 1,
                started_at=now,
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                progress=0.0,
            )
            .returning(*jobs.c)
        )
        with self._write() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else _record(row)

    def extend_lease(self, job_id: str, worker_id: str, *, lease_seconds: float) -> bool:
        """Push the lease forward; False when the job is no longer held by ``worker_id``."""
        lease = utcnow() + timedelta(seconds=lease_seconds)
        with self._write() as conn:
            return _changed(
                conn.execute(update(jobs).where(_held(job_id, worker_id)).values(lease_expires_at=lease))
            )

    def report_progress(self, job_id: str, worker_id: str, progress: float) -> bool:
        """Record progress (clamped to 0..1); returns whether a cancel was requested.

        Raises LeaseLostError when the job is no longer held by ``worker_id``.
        """
        value = min(1.0, max(0.0, float(progress)))
        with self._write() as conn:
            row = conn.execute(
                update(jobs)
                .where(_held(job_id, worker_id))
                .values(progress=value)
                .returning(jobs.c.cancel_requested)
            ).one_or_none()
        if row is None:
            raise LeaseLostError(f"job {job_id} is no longer held by worker {worker_id}")
        return bool(row.cancel_requested)

    def complete_job(self, job_id: str, worker_id: str, result: JobResult) -> bool:
        values = {
            "status": JobStatus.COMPLETED.value,
            "completed_at": utcnow(),
            "progress": 1.0,
            "lease_expires_at": None,
            "result_text": result.text,
            "detected_language": result.language,
            "language_probability": result.language_probability,
            "duration": result.duration,
            "segments": list(result.segments),
            "error_code": None,
            "error_message": None,
            **_decoding_values(result.decoding),
        }
        return self._finish(job_id, worker_id, values)

    def fail_job(self, job_id: str, worker_id: str, *, code: str, message: str) -> bool:
        values = {
            "status": JobStatus.ERROR.value,
            "completed_at": utcnow(),
            "lease_expires_at": None,
            "error_code": code[:64],
            "error_message": message,
        }
        return self._finish(job_id, worker_id, values)

    def cancel_running(self, job_id: str, worker_id: str) -> bool:
        values = {
            "status": JobStatus.CANCELLED.value,
            "completed_at": utcnow(),
            "lease_expires_at": None,
        }
        return self._finish(job_id, worker_id, values)

    def _finish(self, job_id: str, worker_id: str, values: dict[str, Any]) -> bool:
        with self._write() as conn:
            row = conn.execute(
                update(jobs).where(_held(job_id, worker_id)).values(**values).returning(*_FINISHED_COLUMNS)
            ).one_or_none()
            if row is not None:
                self._finished(conn, row)
        return row is not None

    def _finished(self, conn: Connection, row: Row[Any]) -> None:
        """What every path to a final state does in its own transaction: drop the audio, queue the
        webhook delivery (the outbox: never a final job without its delivery) and count the job."""
        self._drop_audio(conn, row.id)
        outbox.enqueue(conn, row.id, row.callback_url, row.completed_at or utcnow())
        wall = None
        if row.started_at is not None and row.completed_at is not None:
            wall = (row.completed_at - row.started_at).total_seconds()
        totals.add(
            conn, totals.job_finished_additions(row.status, wall_seconds=wall, audio_seconds=row.duration)
        )

    def release_job(self, job_id: str, worker_id: str) -> bool:
        """Hand a held job back to the queue without counting the attempt (a worker shutting down).

        A job whose cancel was requested is cancelled instead.
        """
        with self._write() as conn:
            row = conn.execute(
                _lock(select(jobs.c.cancel_requested).where(_held(job_id, worker_id)), self._postgres)
            ).one_or_none()
            if row is None:
                return False
            if row.cancel_requested:
                values: dict[str, Any] = {
                    "status": JobStatus.CANCELLED.value,
                    "completed_at": utcnow(),
                    "lease_expires_at": None,
                }
            else:
                values = {
                    **_REQUEUE_VALUES,
                    "attempts": func.max(jobs.c.attempts - 1, 0)
                    if not self._postgres
                    else func.greatest(jobs.c.attempts - 1, 0),
                }
            changed = conn.execute(
                update(jobs).where(_held(job_id, worker_id)).values(**values).returning(*_FINISHED_COLUMNS)
            ).one()
            if row.cancel_requested:
                self._finished(conn, changed)
            else:
                notify_new_job(conn)
        return True

    def sweep_expired_leases(self, *, now: datetime | None = None) -> SweepResult:
        """Jobs whose worker stopped renewing its lease: requeued, or failed after max_attempts claims.

        A job whose cancel was requested is cancelled instead (and in neither list).
        """
        if now is None:
            now = utcnow()
        elif now.tzinfo is None:
            raise ValueError("sweep_expired_leases needs a timezone-aware `now`")
        requeued: list[str] = []
        failed: list[str] = []
        expired = _lock(
            select(jobs.c.id, jobs.c.attempts, jobs.c.max_attempts, jobs.c.cancel_requested).where(
                jobs.c.status == PROCESSING, jobs.c.lease_expires_at < now
            ),
            self._postgres,
            skip_locked=True,
        )
        with self._write() as conn:
            for row in conn.execute(expired).all():
                still_expired = and_(
                    jobs.c.id == row.id, jobs.c.status == PROCESSING, jobs.c.lease_expires_at < now
                )
                if row.cancel_requested:
                    values: dict[str, Any] = {
                        "status": JobStatus.CANCELLED.value,
                        "completed_at": now,
                        "lease_expires_at": None,
                    }
                elif row.attempts >= row.max_attempts:
                    values = {
                        "status": JobStatus.ERROR.value,
                        "completed_at": now,
                        "lease_expires_at": None,
                        "error_code": "worker_lost",
                        "error_message": f"worker lost {row.attempts} times",
                    }
                else:
                    values = dict(_REQUEUE_VALUES)
                changed = conn.execute(
                    update(jobs).where(still_expired).values(**values).returning(*_FINISHED_COLUMNS)
                ).one_or_none()
                if changed is None:
                    continue
                if values["status"] == QUEUED:
                    requeued.append(row.id)
                else:
                    self._finished(conn, changed)
                    if values["status"] == JobStatus.ERROR.value:
                        failed.append(row.id)
            if requeued:
                notify_new_job(conn)
        return SweepResult(requeued=requeued, failed=failed)

    # --- clients' side of a job ----------------------------------------------------------------
    def request_cancel(self, job_id: str) -> JobRecord:
        """Queued: cancelled at once. Processing: flagged for its worker. Final: ConflictError."""
        with self._write() as conn:
            status = conn.execute(_lock(_status_of(job_id), self._postgres)).scalar_one_or_none()
            if status is None or status == PENDING:
                raise _not_found(job_id)
            if status == QUEUED:
                changed = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(status=JobStatus.CANCELLED.value, completed_at=utcnow())
                    .returning(*_FINISHED_COLUMNS)
                ).one()
                self._finished(conn, changed)
            elif status == PROCESSING:
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
            else:
                raise ConflictError(f"job {job_id} is already {status}", extra={"status": status})
            row = conn.execute(_visible(job_id)).one()
            return _record(row, _webhook_of(conn, row))

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job and its audio; ConflictError while it is queued or processing."""
        with self._write() as conn:
            status = conn.execute(_lock(_status_of(job_id), self._postgres)).scalar_one_or_none()
            if status is None or status == PENDING:
                raise _not_found(job_id)
            if status not in FINAL:
                raise ConflictError(
                    f"job {job_id} is {status}: cancel it before deleting it", extra={"status": status}
                )
            _delete_jobs(conn, [job_id])

    def purge_finished_jobs(
        self,
        *,
        older_than_seconds: float,
        statuses: Iterable[JobStatus | str] | None = None,
        batch_size: int = PURGE_BATCH,
        max_batches: int | None = None,
    ) -> int:
        """Retention: delete finished jobs (with audio, results and deliveries) that ended longer ago than
        that; returns how many. ``statuses`` narrows it to some final statuses (InvalidInputError for any
        other: queued and processing jobs are never purged). One short transaction per ``batch_size``
        jobs, so writers wait for at most one batch; ``max_batches`` bounds one call (a sweeper's tick).
        A job whose webhook is still being delivered waits for the delivery to end.
        """
        if older_than_seconds < 0:
            raise InvalidInputError("the age to purge from must not be negative")
        chosen = FINAL if statuses is None else tuple(_final_status(status) for status in statuses)
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
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
            .where(jobs.c.status.in_(chosen), jobs.c.completed_at < cutoff, ~in_flight)
            .order_by(jobs.c.completed_at)
            .limit(batch_size)
        )
        removed = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            with self._write() as conn:
                ids = list(conn.execute(_lock(old, self._postgres, skip_locked=True)).scalars())
                if ids:
                    _delete_jobs(conn, ids)
            removed += len(ids)
            batches += 1
            if len(ids) < batch_size:
                break
        return removed

    # --- audio ---------------------------------------------------------------------------------
    def iter_audio(self, job_id: str) -> Iterator[bytes]:
        """The job's audio, chunk by chunk; a fresh short read transaction per few chunks.

        NotFoundError for unknown jobs and for audio already deleted (a finished job).
        """
        with self._read() as conn:
            size = conn.execute(
                select(jobs.c.size_bytes).where(jobs.c.id == job_id, jobs.c.status != PENDING)
            ).one_or_none()
            if size is None:
                raise _not_found(job_id)
            first = conn.execute(select(job_audio.c.seq).where(job_audio.c.job_id == job_id).limit(1)).first()
        if first is None and size.size_bytes:
            raise NotFoundError(f"the audio of job {job_id} is no longer stored")
        return self._audio_chunks(job_id, size.size_bytes)

    def _audio_chunks(self, job_id: str, expected: int | None) -> Iterator[bytes]:
        next_seq = 0
        total = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    select(job_audio.c.seq, job_audio.c.data)
                    .where(job_audio.c.job_id == job_id, job_audio.c.seq >= next_seq)
                    .order_by(job_audio.c.seq)
                    .limit(READ_BATCH)
                ).all()
            if not rows:
                break
            for row in rows:
                if row.seq != next_seq:
                    raise ConflictError(f"the audio of job {job_id} changed while it was read")
                next_seq += 1
                total += len(row.data)
                yield bytes(row.data)
            del rows
        if expected is not None and total != expected:
            raise ConflictError(f"the audio of job {job_id} changed while it was read")

    def copy_audio_to(self, job_id: str, fileobj: BinaryIO) -> int:
        written = 0
        for chunk in self.iter_audio(job_id):
            fileobj.write(chunk)
            written += len(chunk)
        return written

    def audio_size(self, job_id: str) -> int:
        """Bytes of audio stored for the job (0 once deleted)."""
        with self._read() as conn:
            if conn.execute(_status_of(job_id)).scalar_one_or_none() in (None, PENDING):
                raise _not_found(job_id)
            total = conn.execute(
                select(func.coalesce(func.sum(func.length(job_audio.c.data)), 0)).where(
                    job_audio.c.job_id == job_id
                )
            ).scalar_one()
        return int(total)

    def _drop_audio(self, conn: Connection, job_id: str) -> None:
        if not self._keep_audio:
            conn.execute(delete(job_audio).where(job_audio.c.job_id == job_id))

    # --- worker presence -----------------------------------------------------------------------
    def register_worker(self, worker_id: str, *, host: str, pid: int) -> None:
        now = utcnow()
        values = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "started_at": now,
            "last_seen_at": now,
            "current_job_id": None,
            "models": [],
        }
        with self._write() as conn:
            conn.execute(self._upsert_worker(values))

    def heartbeat_worker(self, worker_id: str, *, current_job_id: str | None, models: list[str]) -> None:
        """Refresh presence. A row removed meanwhile (the worker was paused too long) is recreated,
        with this process's host and pid: the heartbeat comes from the worker itself."""
        now = utcnow()
        with self._write() as conn:
            changed = conn.execute(
                update(workers)
                .where(workers.c.id == worker_id)
                .values(last_seen_at=now, current_job_id=current_job_id, models=list(models))
            )
            if not _changed(changed):
                values = {
                    "id": worker_id,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "started_at": now,
                    "last_seen_at": now,
                    "current_job_id": current_job_id,
                    "models": list(models),
                }
                conn.execute(self._upsert_worker(values))

    def unregister_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

    def list_workers(self, *, alive_within_seconds: float) -> list[WorkerRecord]:
        cutoff = utcnow() - timedelta(seconds=alive_within_seconds)
        with self._read() as conn:
            rows = conn.execute(
                select(workers)
                .where(workers.c.last_seen_at >= cutoff)
                .order_by(workers.c.started_at, workers.c.id)
            ).all()
        return [_worker_record(row) for row in rows]

    def remove_stale_workers(self, *, older_than_seconds: float) -> int:
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        with self._write() as conn:
            return int(conn.execute(delete(workers).where(workers.c.last_seen_at < cutoff)).rowcount)

    def _upsert_worker(self, values: dict[str, Any]) -> Any:
        # imported here: the PostgreSQL dialect costs start-up time on SQLite-only deployments
        if self._postgres:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = dialect_insert(workers).values(**values)
        refreshed = {name: stmt.excluded[name] for name in values if name != "id"}
        return stmt.on_conflict_do_update(index_elements=[workers.c.id], set_=refreshed)

    # --- webhook deliveries (the outbox: cesar_common.db.outbox) --------------------------------
    def claim_delivery(self, worker_id: str, *, lease_seconds: float) -> WebhookDeliveryRecord | None:
        """Take the delivery due longest (or one whose worker's lease expired); None when none is due."""
        with self._write() as conn:
            return outbox.claim(
                conn, worker_id, now=utcnow(), lease_seconds=lease_seconds, postgres=self._postgres
            )

    def extend_delivery_lease(self, delivery_id: str, worker_id: str, *, lease_seconds: float) -> bool:
        lease = utcnow() + timedelta(seconds=lease_seconds)
        with self._write() as conn:
            return outbox.extend(conn, delivery_id, worker_id, lease)

    def finish_delivery(self, delivery_id: str, worker_id: str, outcome: DeliveryOutcome) -> bool:
        """Record a try's outcome; False when ``worker_id`` no longer holds the delivery (its lease ran
        out and another worker took it: that worker's outcome counts)."""
        with self._write() as conn:
            return outbox.finish(conn, delivery_id, worker_id, outcome, utcnow())

    def get_delivery(self, delivery_id: str) -> WebhookDeliveryRecord:
        with self._read() as conn:
            found = outbox.get(conn, delivery_id)
        if found is None:
            raise NotFoundError(f"no webhook delivery with id {delivery_id}")
        return found

    def list_deliveries(self, job_id: str) -> list[WebhookDeliveryRecord]:
        """Every delivery of a job, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                select(outbox.deliveries)
                .where(outbox.deliveries.c.job_id == job_id)
                .order_by(outbox.deliveries.c.created_at)
            ).all()
        return [outbox.record(row) for row in rows]

    def redeliver_webhook(self, job_id: str) -> JobRecord:
        """Queue one more delivery of a final job's webhook; the job with its ``webhook`` as it now is.

        NotFoundError for an unknown job; ConflictError when it has no callback URL or is not final.
        """
        with self._write() as conn:
            row = conn.execute(_lock(_visible(job_id), self._postgres)).one_or_none()
            if row is None:
                raise _not_found(job_id)
            if not row.callback_url:
                raise ConflictError(f"job {job_id} has no callback_url", extra={"status": row.status})
            if row.status not in FINAL:
                raise ConflictError(
                    f"job {job_id} is {row.status}: its webhook is sent once it ends",
                    extra={"status": row.status},
                )
            outbox.redeliver(conn, job_id, row.callback_url, utcnow())
            return _record(row, _webhook_of(conn, row))

    # --- metrics ---------------------------------------------------------------------------------
    def metrics_snapshot(self, *, alive_within_seconds: float) -> MetricsSnapshot:
        """Everything ``GET /metrics`` reports, read in one transaction at scrape time."""
        now = utcnow()
        with self._read() as conn:
            by_status = dict.fromkeys((str(status) for status in PUBLIC_STATUSES), 0)
            for status, count in conn.execute(
                select(jobs.c.status, func.count()).where(jobs.c.status != PENDING).group_by(jobs.c.status)
            ).all():
                by_status[status] = int(count)
            oldest = conn.execute(
                select(func.min(jobs.c.created_at)).where(jobs.c.status == QUEUED)
            ).scalar_one_or_none()
            alive = conn.execute(
                select(func.count()).where(
                    workers.c.last_seen_at >= now - timedelta(seconds=alive_within_seconds)
                )
            ).scalar_one()
            deliveries = outbox.count_by_state(conn)
            stored = totals.read(conn)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)  # func.min bypasses the column type on SQLite
        age = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
        return MetricsSnapshot(
            jobs_by_status=by_status,
            oldest_queued_seconds=age,
            workers_alive=int(alive),
            deliveries_by_state=deliveries,
            totals=stored,
        )


# --- statements and rows ---------------------------------------------------------------------------
_REQUEUE_VALUES: dict[str, Any] = {
    "status": QUEUED,
    "worker_id": None,
    "lease_expires_at": None,
    "started_at": None,
    "progress": 0.0,
}


def _held(job_id: str, worker_id: str) -> ColumnElement[bool]:
    """The fence: the job is processing and held by ``worker_id``."""
    return and_(jobs.c.id == job_id, jobs.c.status == PROCESSING, jobs.c.worker_id == worker_id)


def _visible(job_id: str) -> Select[Any]:
    return select(jobs).where(jobs.c.id == job_id, jobs.c.status != PENDING)


def _status_of(job_id: str) -> Select[Any]:
    return select(jobs.c.status).where(jobs.c.id == job_id)


def _lock(stmt: Select[Any], postgres: bool, *, skip_locked: bool = False) -> Select[Any]:
    # SQLite needs no row locks: a write transaction there holds the database's write lock from BEGIN.
    return stmt.with_for_update(skip_locked=skip_locked) if postgres else stmt


def _changed(result: Any) -> bool:
    return bool(result.rowcount == 1)


#: what _finished needs from a job that just became final (UPDATE ... RETURNING)
_FINISHED_COLUMNS = (
    jobs.c.id,
    jobs.c.status,
    jobs.c.started_at,
    jobs.c.completed_at,
    jobs.c.duration,
    jobs.c.callback_url,
)


def _delete_jobs(conn: Connection, ids: list[str]) -> None:
    # children first: foreign keys cascade too, but SQLite only with the pragma on
    conn.execute(delete(job_audio).where(job_audio.c.job_id.in_(ids)))
    conn.execute(delete(outbox.deliveries).where(outbox.deliveries.c.job_id.in_(ids)))
    conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))


def _webhook_of(conn: Connection, row: Row[Any]) -> WebhookDeliveryRecord | None:
    if not row.callback_url:
        return None
    return outbox.latest_for(conn, [row.id]).get(row.id)


# --- idempotency -------------------------------------------------------------------------------------
def _holding_key(key: str) -> Select[Any]:
    return select(jobs).where(jobs.c.idempotency_key == key)


def _release_stale_key(conn: Connection, key: str) -> None:
    """A key older than the window names nothing any more: free it for the job about to take it."""
    conn.execute(
        update(jobs)
        .where(jobs.c.idempotency_key == key, jobs.c.created_at < utcnow() - KEY_WINDOW)
        .values(idempotency_key=None)
    )


def _same_request(existing: JobRecord, fingerprint: str, key: str) -> JobRecord:
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReusedError(
            "this Idempotency-Key was already used with a different request (within the last 24 hours): "
            "use a new key for a new request",
            extra={"job_id": existing.id, "idempotency_key": key},
        )
    return existing


def _hash_stream(audio: AudioSource, max_bytes: int | None) -> str:
    digest = hashlib.sha256()
    total = 0
    for chunk in _rechunk(audio, CHUNK_SIZE):
        total += len(chunk)
        _check_size(total, max_bytes)
        digest.update(chunk)
    return digest.hexdigest()


def _new_job_values(job_id: str, new: NewJob, status: str) -> dict[str, Any]:
    options = new.options
    return {
        "id": job_id,
        "status": status,
        "source": JobSource(new.source).value,
        "source_url": new.source_url,
        "filename": new.filename,
        "content_type": new.content_type,
        "size_bytes": None,
        "model": options.model,
        "language": options.language,
        "task": options.task,
        "word_timestamps": options.word_timestamps,
        "vad": options.vad,
        "initial_prompt": options.initial_prompt,
        "created_at": utcnow(),
        "progress": 0.0,
        "attempts": 0,
        "max_attempts": new.max_attempts,
        "cancel_requested": False,
        "callback_url": new.callback_url,
    }


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


#: list_jobs' statement by (status filter given, cursor given)
_LIST_PAGE = {
    (by_status, after): _list_page(by_status, after) for by_status in (False, True) for after in (False, True)
}

#: the jobs table's column names in table order: what ``select(jobs)`` and ``returning(*jobs.c)`` yield
_JOB_FIELDS = tuple(column.name for column in jobs.c)
_STATUSES = {str(status): status for status in JobStatus}
_SOURCES = {str(source): source for source in JobSource}


def _record(row: Row[Any], webhook: WebhookDeliveryRecord | None = None) -> JobRecord:
    if row._fields == _JOB_FIELDS:
        return _fast_record(tuple(row), webhook)
    return _named_record(row, webhook)


def _fast_record(values: tuple[Any, ...], webhook: WebhookDeliveryRecord | None) -> JobRecord:
    """A full jobs row as a record, reading the columns by position (by name costs ~1 us a column)."""
    job = dict(zip(_JOB_FIELDS, values, strict=True))
    return JobRecord(
        id=job["id"],
        status=_STATUSES[job["status"]],
        source=_SOURCES[job["source"]],
        source_url=job["source_url"],
        filename=job["filename"],
        content_type=job["content_type"],
        size_bytes=job["size_bytes"],
        options=TranscribeOptions(
            model=job["model"],
            language=job["language"],
            task=job["task"],
            word_timestamps=bool(job["word_timestamps"]),
            vad=bool(job["vad"]),
            initial_prompt=job["initial_prompt"],
        ),
        created_at=job["created_at"],
        started_at=job["started_at"],
        completed_at=job["completed_at"],
        progress=float(job["progress"]),
        attempts=job["attempts"],
        max_attempts=job["max_attempts"],
        worker_id=job["worker_id"],
        lease_expires_at=job["lease_expires_at"],
        cancel_requested=bool(job["cancel_requested"]),
        result_text=job["result_text"],
        detected_language=job["detected_language"],
        language_probability=job["language_probability"],
        duration=job["duration"],
        segments=job["segments"],
        error_message=job["error_message"],
        error_code=job["error_code"],
        callback_url=job["callback_url"],
        webhook=webhook,
        request_fingerprint=job["request_fingerprint"],
        decoding=_decoding(
            job["decode_device"], job["decode_compute_type"], job["decode_mode"], job["decode_batch_size"]
        ),
    )


def _named_record(row: Row[Any], webhook: WebhookDeliveryRecord | None = None) -> JobRecord:
    return JobRecord(
        id=row.id,
        status=JobStatus(row.status),
        source=JobSource(row.source),
        source_url=row.source_url,
        filename=row.filename,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        options=TranscribeOptions(
            model=row.model,
            language=row.language,
            task=row.task,
            word_timestamps=bool(row.word_timestamps),
            vad=bool(row.vad),
            initial_prompt=row.initial_prompt,
        ),
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        progress=float(row.progress),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        worker_id=row.worker_id,
        lease_expires_at=row.lease_expires_at,
        cancel_requested=bool(row.cancel_requested),
        result_text=row.result_text,
        detected_language=row.detected_language,
        language_probability=row.language_probability,
        duration=row.duration,
        segments=row.segments,
        error_message=row.error_message,
        error_code=row.error_code,
        callback_url=row.callback_url,
        webhook=webhook,
        request_fingerprint=row.request_fingerprint,
        decoding=_decoding(
            row.decode_device, row.decode_compute_type, row.decode_mode, row.decode_batch_size
        ),
    )


def _decoding(
    device: str | None, compute_type: str | None, mode: str | None, batch: int | None
) -> Decoding | None:
    if mode is None:
        return None
    return Decoding(device=device or "", compute_type=compute_type or "", mode=mode, batch_size=batch or 1)


def _decoding_values(decoding: Decoding | None) -> dict[str, Any]:
    if decoding is None:
        return {}
    return {
        "decode_device": decoding.device,
        "decode_compute_type": decoding.compute_type,
        "decode_mode": decoding.mode,
        "decode_batch_size": decoding.batch_size,
    }


def _worker_record(row: Row[Any]) -> WorkerRecord:
    return WorkerRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        current_job_id=row.current_job_id,
        models=list(row.models or []),
    )


# --- cursors -----------------------------------------------------------------------------------------
def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; InvalidInputError for anything we did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        stamp, job_id = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidInputError("invalid cursor") from exc
    if created_at.tzinfo is None or not job_id or len(job_id) > 36:
        raise InvalidInputError("invalid cursor")
    return created_at.astimezone(UTC), job_id


# --- audio and errors ------------------------------------------------------------------------------
def _rechunk(audio: AudioSource, size: int) -> Iterator[bytes]:
    """Cut a byte stream (file object, iterable of bytes, or bytes) into ``size``-byte pieces."""
    pieces: Iterable[bytes]
    if isinstance(audio, bytes | bytearray | memoryview):
        pieces = [bytes(audio)]
    elif hasattr(audio, "read"):
        reader = cast(BinaryIO, audio)
        pieces = iter(lambda: reader.read(size), b"")
    else:
        pieces = cast(Iterable[bytes], audio)
    buffer = bytearray()
    for piece in pieces:
        view = memoryview(piece)
        offset = 0
        if buffer:
            offset = min(size - len(buffer), len(view))
            buffer += view[:offset]
            if len(buffer) == size:
                yield bytes(buffer)
                buffer.clear()
        while len(view) - offset >= size:
            yield bytes(view[offset : offset + size])
            offset += size
        buffer += view[offset:]
    if buffer:
        yield bytes(buffer)


def _final_status(status: JobStatus | str) -> str:
    try:
        value = JobStatus(status)
    except ValueError:
        value = None
    if value is None or not value.is_final:
        raise InvalidInputError(
            f"only finished jobs can be purged: {status!r} is not one of completed, error, cancelled"
        )
    return str(value)


def _check_size(total: int, max_bytes: int | None) -> None:
    if max_bytes is not None and total > max_bytes:
        raise PayloadTooLargeError(
            f"the audio is larger than the limit of {_describe_size(max_bytes)}",
            extra={"max_bytes": max_bytes},
        )


def _public_status(status: JobStatus | str) -> str:
    try:
        value = JobStatus(status)
    except ValueError:
        value = None
    if value not in PUBLIC_STATUSES:
        raise InvalidInputError(f"unknown job status {status!r}")
    return str(value)


def _describe_size(size: int) -> str:
    mib = 1024 * 1024
    return f"{size // mib} MiB" if size % mib == 0 else f"{size} bytes"


def _not_found(job_id: str) -> NotFoundError:
    return NotFoundError(f"no job with id {job_id}", extra={"job_id": job_id})


def _upload_vanished(job_id: str) -> DatabaseError:
    return DatabaseError(f"the upload of job {job_id} was discarded as stale while it was still arriving")


def _database_error(exc: SQLAlchemyError) -> DatabaseError:
    return DatabaseError(f"job database error: {error_reason(exc)}")
