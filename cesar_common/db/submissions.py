"""Creating jobs: a URL job is queued at once; an upload is ``pending`` while its audio streams into
``job_audio`` (several short transactions, never the whole file in memory), then turns ``queued`` in one
UPDATE. Either may come with an ``Idempotency-Key`` (:mod:`cesar_common.db.idempotency`).

An upload over ``max_bytes`` (PayloadTooLargeError), or one whose client fails while sending, is deleted
with what was written of it; one whose client vanishes without a word is deleted by
:func:`purge_stale_uploads` once it made no progress for a while.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import IntegrityError

from cesar_common.blob_store import BlobStore, StoredObject
from cesar_common.db import api_keys, audio_chunks, idempotency, state
from cesar_common.db.audio_chunks import CHUNK_SIZE, AudioSource
from cesar_common.db.clock import db_now
from cesar_common.db.job_reads import record_with_webhook
from cesar_common.db.records import JobRecord, JobSource, JobStatus, NewJob
from cesar_common.db.rows import job_record
from cesar_common.db.tables import jobs
from cesar_common.db.transactions import Transactions, database_error
from cesar_common.errors import DatabaseError, InvalidInputError
from cesar_common.job_options import option_columns

__all__ = ["create_job", "insert_queued", "new_job_id", "purge_stale_uploads"]

#: how often a pending upload into an object store says it is alive while no part goes out
KEEP_ALIVE_SECONDS = 60.0
PENDING = JobStatus.PENDING.value
QUEUED = JobStatus.QUEUED.value


def create_job(
    tx: Transactions,
    new: NewJob,
    audio_source: AudioSource | None,
    *,
    max_bytes: int | None = None,
    with_job: Callable[[Connection, str], None] | None = None,
    blobs: BlobStore | None = None,
) -> tuple[JobRecord, bool]:
    """Create a job; ``(job, created)``. ``with_job`` writes what belongs to the new upload (a voice
    sample's pending print) in the transaction that queues it. ``blobs``: the object store that takes
    the audio (None: the database); the object is written whole before the job is queued.

    With ``new.idempotency_key``: when a job made within 24 hours holds the key, that job comes back
    with ``created=False`` if this request has the same fingerprint, and IdempotencyKeyReusedError
    (422) if not. The UNIQUE index on the key decides between concurrent creates: exactly one inserts,
    the others find its job. An upload's key is set in the UPDATE that queues it, so a key never
    names a half-stored job; concurrent uploads with one key each store their audio, and all but the
    first discard theirs.
    """
    key = None if new.idempotency_key is None else idempotency.check_key(new.idempotency_key)
    if audio_source is None:
        if new.source is JobSource.UPLOAD:
            raise InvalidInputError("an upload job needs its audio")
        fingerprint = None if key is None else idempotency.request_fingerprint(new, None)
        return insert_queued(tx, new, key, fingerprint)

    if key is not None:
        with tx.read() as conn:
            row = idempotency.job_holding_key(conn, key, new.owner, within_window=True)
            existing = None if row is None else record_with_webhook(conn, row)
        if existing is not None:
            # a retry: only its fingerprint matters, so hash the bytes without storing them
            digest = audio_chunks.hash_stream(audio_source, max_bytes)
            fingerprint = idempotency.request_fingerprint(new, digest)
            return idempotency.same_request(existing, fingerprint, key), False

    job_id = new_job_id()
    with tx.write() as conn:
        state.insert_job(conn, _job_values(job_id, new, PENDING))
    try:
        if blobs is None:
            size, sha256 = _store_audio(tx, job_id, audio_source, max_bytes, hashing=key is not None)
            stored = None
        else:
            stored = _store_object(tx, blobs, job_id, audio_source, max_bytes)
            size, sha256 = stored.size, stored.sha256
        if key is None:
            return _queue_upload(tx, new, job_id, {"size_bytes": size}, with_job, stored), True
        fingerprint = idempotency.request_fingerprint(new, sha256)
        return _queue_upload_once(tx, new, job_id, size, key, fingerprint, stored)
    except BaseException:
        _discard_upload(tx, job_id)
        raise


def new_job_id() -> str:
    """A UUID whose order is the order jobs were made in (version 7, RFC 9562): 48 bits of milliseconds, a
    12-bit count within the millisecond (this process's, so it never repeats or goes back), 62 random bits.
    Claims take jobs by ``created_at`` and then id: jobs made in one millisecond of the database's clock
    (SQLite's resolution) are claimed and listed in the order they were made, not by chance."""
    global _last_stamp
    with _stamp_lock:
        stamp = _last_stamp = max(time.time_ns() // 1_000_000 << 12, _last_stamp + 1)
    random_bits = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (stamp >> 12) << 80 | 0x7 << 76 | (stamp & 0xFFF) << 64 | 0b10 << 62 | random_bits
    return str(uuid.UUID(int=value))


_stamp_lock = threading.Lock()
_last_stamp = 0


def _job_values(job_id: str, new: NewJob, status: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": status,
        "source": JobSource(new.source).value,
        "source_url": new.source_url,
        "filename": new.filename,
        "content_type": new.content_type,
        "size_bytes": None,
        **option_columns(new.options),
        "created_at": db_now(),
        "progress": 0.0,
        "attempts": 0,
        "max_attempts": new.max_attempts,
        "cancel_requested": False,
        "callback_url": new.callback_url,
        "owner": new.owner,
        "audio_seconds": new.audio_seconds,
    }


def _check_quota(conn: Connection, new: NewJob) -> None:
    """The key's quotas, in the transaction that queues ``new`` (429 past them)."""
    if new.limits is not None and new.limits.has_quota:
        api_keys.check_quota(conn, new.limits, new.audio_seconds)


def insert_queued(
    tx: Transactions,
    new: NewJob,
    key: str | None,
    fingerprint: str | None,
    *,
    with_job: Callable[[Connection, str], None] | None = None,
) -> tuple[JobRecord, bool]:
    """A queued job with no audio to store first (a URL job, a live session), under ``key`` when given:
    ``(job, created)``, or the job the key already names. ``with_job`` writes what belongs to the new job
    (a live session's stream) in the same transaction."""
    values = {
        **_job_values(new_job_id(), new, QUEUED),
        "idempotency_key": key,
        "request_fingerprint": fingerprint,
    }
    with tx.write() as conn:
        if key is not None:
            idempotency.release_stale_key(conn, key, new.owner)
        _check_quota(conn, new)
        try:
            with conn.begin_nested():
                row = state.insert_job(conn, values)
                if with_job is not None:
                    with_job(conn, row.id)
        except IntegrityError as exc:
            found = _holder(conn, key, new.owner, exc)
        else:
            return job_record(row), True
    assert fingerprint is not None and key is not None
    return idempotency.same_request(found, fingerprint, key), False


def _holder(conn: Connection, key: str | None, owner: str, exc: IntegrityError) -> JobRecord:
    """The job that took ``key`` first (the UNIQUE index refused ours)."""
    existing = idempotency.job_holding_key(conn, key, owner) if key else None
    if existing is None:
        raise database_error(exc) from exc
    return record_with_webhook(conn, existing)


def _store_audio(
    tx: Transactions, job_id: str, audio_source: AudioSource, max_bytes: int | None, *, hashing: bool
) -> tuple[int, str | None]:
    """Stream ``audio_source`` into job_audio; (bytes stored, their sha256 when ``hashing``)."""
    # One short transaction per chunk: the write lock is never held while the client's bytes trickle in.
    total = 0
    digest = hashlib.sha256() if hashing else None
    for seq, chunk in enumerate(audio_chunks.rechunk(audio_source, CHUNK_SIZE)):
        total += len(chunk)
        audio_chunks.check_size(total, max_bytes)
        if digest is not None:
            digest.update(chunk)
        with tx.write() as conn:
            if not _keep_pending_alive(conn, job_id):
                raise _upload_vanished(job_id)
            audio_chunks.insert_chunk(conn, job_id, seq, chunk)
    return total, None if digest is None else digest.hexdigest()


def _store_object(
    tx: Transactions, blobs: BlobStore, job_id: str, audio_source: AudioSource, max_bytes: int | None
) -> StoredObject:
    """Stream ``audio_source`` into a new object (its row comes with the job's queueing), keeping the
    pending job alive as parts go out, and at least once a minute while the client's bytes trickle in."""
    alive_at = time.monotonic()

    def keep_alive() -> None:
        nonlocal alive_at
        with tx.write() as conn:
            if not _keep_pending_alive(conn, job_id):
                raise _upload_vanished(job_id)
        alive_at = time.monotonic()

    def checked() -> Iterator[bytes]:
        total = 0
        for chunk in audio_chunks.rechunk(audio_source, CHUNK_SIZE):
            total += len(chunk)
            audio_chunks.check_size(total, max_bytes)
            yield chunk
            if time.monotonic() - alive_at > KEEP_ALIVE_SECONDS:
                keep_alive()

    return blobs.write(blobs.new_key("uploads", job_id), checked(), on_part=keep_alive)


def _keep_pending_alive(conn: Connection, job_id: str) -> bool:
    """Refresh a ``pending`` upload's ``created_at`` (:func:`purge_stale_uploads` spares it); False once
    the upload was discarded."""
    alive = conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status == PENDING).values(created_at=db_now())
    ).rowcount
    return bool(alive == 1)


def _publish(
    conn: Connection, job_id: str, values: dict[str, Any], stored: StoredObject | None
) -> Row[Any] | None:
    """Turn a stored upload ``queued`` (None when it was discarded meanwhile), with the row naming its
    object when it is in an object store."""
    row = state.change_job(
        conn,
        (jobs.c.id == job_id) & (jobs.c.status == PENDING),
        {"status": QUEUED, "created_at": db_now(), **values},
    )
    if row is not None and stored is not None:
        audio_chunks.insert_object(conn, job_id, 0, stored)
    return row


def _queue_upload(
    tx: Transactions,
    new: NewJob,
    job_id: str,
    values: dict[str, Any],
    with_job: Callable[[Connection, str], None] | None = None,
    stored: StoredObject | None = None,
) -> JobRecord:
    with tx.write() as conn:
        _check_quota(conn, new)
        row = _publish(conn, job_id, values, stored)
        if row is not None and with_job is not None:
            with_job(conn, job_id)
    if row is None:
        raise _upload_vanished(job_id)
    return job_record(row)


def _queue_upload_once(
    tx: Transactions,
    new: NewJob,
    job_id: str,
    size: int,
    key: str,
    fingerprint: str,
    stored: StoredObject | None,
) -> tuple[JobRecord, bool]:
    """Queue a stored upload under ``key``; if another job took the key first, discard this one."""
    values = {"size_bytes": size, "idempotency_key": key, "request_fingerprint": fingerprint}
    with tx.write() as conn:
        idempotency.release_stale_key(conn, key, new.owner)
        _check_quota(conn, new)
        try:
            with conn.begin_nested():
                row = _publish(conn, job_id, values, stored)
        except IntegrityError as exc:
            found = _holder(conn, key, new.owner, exc)
            state.discard_uploads(conn, [job_id])
        else:
            if row is None:
                raise _upload_vanished(job_id)
            return job_record(row), True
    return idempotency.same_request(found, fingerprint, key), False


def _discard_upload(tx: Transactions, job_id: str) -> None:
    # Best effort: if the database is down too, purge_stale_uploads removes the leftovers later.
    with contextlib.suppress(Exception), tx.write() as conn:
        state.discard_uploads(conn, [job_id])


def purge_stale_uploads(tx: Transactions, *, older_than_seconds: float) -> int:
    """Delete ``pending`` jobs (and their audio) whose upload made no progress for that long."""
    with tx.write() as conn:
        cutoff = db_now(-older_than_seconds)
        ids = list(
            conn.execute(
                select(jobs.c.id).where(jobs.c.status == PENDING, jobs.c.created_at < cutoff)
            ).scalars()
        )
        state.discard_uploads(conn, ids)
    return len(ids)


def _upload_vanished(job_id: str) -> DatabaseError:
    return DatabaseError(f"the upload of job {job_id} was discarded as stale while it was still arriving")
