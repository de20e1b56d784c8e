"""Idempotent submits: what makes two requests "the same", and how long a key is held.

A job created with an ``Idempotency-Key`` stores the key (under a UNIQUE index with its owner: each API
key's Idempotency-Keys are its own) and the sha256 of its
canonical request: the source, the URL or the file's name and the sha256 of its bytes, the engine options
(the decoding options among them) and the callback URL. A second create with the key gets the first job
back when the fingerprints match and :class:`IdempotencyKeyReusedError` (422) when they differ. After
:data:`KEY_WINDOW` the key is released (set to NULL in the transaction that would reuse it), so the same key
then makes a new job.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Row, update

from cesar_common.db.clock import db_now
from cesar_common.db.records import JobRecord, JobSource, NewJob
from cesar_common.db.tables import jobs
from cesar_common.errors import InvalidInputError
from cesar_common.job_options import decoding_json

__all__ = [
    "KEY_WINDOW",
    "IdempotencyKeyReusedError",
    "check_key",
    "job_holding_key",
    "release_stale_key",
    "request_fingerprint",
    "same_request",
]

KEY_WINDOW = timedelta(hours=24)
KEY_WINDOW_SECONDS = KEY_WINDOW.total_seconds()
MAX_KEY_LENGTH = 255


class IdempotencyKeyReusedError(InvalidInputError):
    """The key already named a different request within the last 24 hours."""

    code = "idempotency_key_reused"


def check_key(key: str) -> str:
    """``key`` if it is a usable Idempotency-Key (1 to 255 visible ASCII characters), else 422."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"an Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters long (got {len(key)})"
        )
    if not key.isascii() or not key.isprintable():
        raise InvalidInputError("an Idempotency-Key must be printable ASCII")
    return key


def request_fingerprint(new: NewJob, audio_sha256: str | None) -> str:
    """The sha256 (hex) of the canonical form of a create request."""
    options = new.options
    canonical: dict[str, object] = {
        "source": JobSource(new.source).value,
        "url": new.source_url,
        "filename": new.filename if new.source is JobSource.UPLOAD else None,
        "audio_sha256": audio_sha256,
        "model": options.model,
        "language": options.language,
        "task": options.task,
        "word_timestamps": options.word_timestamps,
        "vad": options.vad,
        "initial_prompt": options.initial_prompt,
        "callback_url": new.callback_url,
    }
    if options.diarize:  # only then, so that requests stored before diarization keep their fingerprint
        canonical.update(
            diarize=True,
            num_speakers=options.num_speakers,
            min_speakers=options.min_speakers,
            max_speakers=options.max_speakers,
        )
    decoding = decoding_json(options.decoding_options)
    if decoding is not None:  # only then, so that requests stored before them keep their fingerprint
        canonical["decoding_options"] = decoding
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def job_holding_key(
    conn: Connection, key: str, owner: str, *, within_window: bool = False
) -> Row[Any] | None:
    """The job ``owner`` created under ``key`` (only within the window when ``within_window``): each key's
    own, so that another key's ``Idempotency-Key`` never names its job."""
    stmt = jobs.select().where(jobs.c.idempotency_key == key, jobs.c.owner == owner)
    if within_window:
        stmt = stmt.where(jobs.c.created_at >= db_now(-KEY_WINDOW_SECONDS))
    return conn.execute(stmt).one_or_none()


def release_stale_key(conn: Connection, key: str, owner: str) -> None:
    """A key older than the window names nothing any more: free it for the job about to take it."""
    conn.execute(
        update(jobs)
        .where(
            jobs.c.idempotency_key == key,
            jobs.c.owner == owner,
            jobs.c.created_at < db_now(-KEY_WINDOW_SECONDS),
        )
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
