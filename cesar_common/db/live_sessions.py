"""Live sessions: jobs whose audio arrives while they run (``source`` ``live``, ``live_sessions``).

The API opens a session (a queued job and its stream row, one transaction) and appends each piece of audio
the client sends with one short transaction: a ``job_audio`` chunk, numbered on from the last, and the
stream's byte count and time of arrival (the database's clock). Appends announce nothing: the worker that
holds the session reads new chunks about once a second anyway, and a notification per piece of audio would
wake every listener of the fleet a few times a second per session.

The worker claims sessions apart from file work (:func:`cesar_common.db.queue.claim_live`), reports what it
confirmed as the job's live segments and what it heard but has not confirmed as ``tentative``, with its
lease (:func:`report`), and decides when the audio is over (:func:`end_audio`): the client said ``stop``,
nothing came for the idle time, or the session reached its maximum length. A session whose worker is lost
goes back to the queue with its confirmed segments (:func:`cesar_common.db.state.requeue_jobs`): the next
worker goes on from there.

A session opened with a stream URL (the job's ``source_url``) has no client: the worker that holds it
fetches the stream and appends its audio the same way, starts the idle time again when it begins
(:func:`restart_idle`), and records where the stream dropped (:func:`set_gaps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from cesar_common.blob_store import StoredObject
from cesar_common.db import audio_chunks, idempotency, leases, submissions
from cesar_common.db.clock import db_now
from cesar_common.db.records import AudioFormat, JobRecord, JobStatus, LiveEnd, LiveState, NewJob
from cesar_common.db.tables import jobs, live_sessions
from cesar_common.db.transactions import Transactions

__all__ = [
    "add_mark",
    "append",
    "end_audio",
    "open_session",
    "open_sessions",
    "read_state",
    "report",
    "restart_idle",
    "set_gaps",
    "set_turn_detection",
]


def open_session(
    tx: Transactions,
    new: NewJob,
    audio_format: AudioFormat,
    sample_rate: int | None,
    turn_detection: dict[str, Any] | None = None,
    max_seconds: float | None = None,
) -> tuple[JobRecord, bool]:
    """A new session: its job (queued, announced to idle workers) and its empty stream, in one
    transaction; ``(job, created)``. With ``new.idempotency_key``, the session the key already names
    when it was opened with the same options (``created`` False), IdempotencyKeyReusedError if not.
    ``max_seconds``: the session's own maximum length (None: the server's)."""
    key = None if new.idempotency_key is None else idempotency.check_key(new.idempotency_key)
    fingerprint = None
    if key is not None:
        stream_of = f"live:{audio_format}:{sample_rate}"
        if max_seconds is not None:  # only then: the fingerprints of sessions without one stay as they were
            stream_of += f":{max_seconds!r}"
        fingerprint = idempotency.request_fingerprint(new, stream_of)

    def stream(conn: Connection, job_id: str) -> None:
        conn.execute(
            insert(live_sessions).values(
                job_id=job_id,
                audio_format=audio_format.value,
                sample_rate=sample_rate,
                audio_bytes=0,
                chunks=0,
                audio_at=db_now(),
                tentative="",
                turn_detection=turn_detection,
                max_seconds=max_seconds,
            )
        )

    return submissions.insert_queued(tx, new, key, fingerprint, with_job=stream)


def append(conn: Connection, job_id: str, data: bytes | StoredObject) -> int | None:
    """Store ``data`` as the session's next chunk (its bytes, or the object written with them); the bytes
    stored in all after it, or None when the session takes no more audio (it ended, or there is no such
    session)."""
    size = data.size if isinstance(data, StoredObject) else len(data)
    row = conn.execute(
        update(live_sessions)
        .where(live_sessions.c.job_id == job_id, live_sessions.c.ended.is_(None))
        .values(
            audio_bytes=live_sessions.c.audio_bytes + size,
            chunks=live_sessions.c.chunks + 1,
            audio_at=db_now(),
        )
        .returning(live_sessions.c.chunks, live_sessions.c.audio_bytes)
    ).one_or_none()
    if row is None:
        return None
    if isinstance(data, StoredObject):
        audio_chunks.insert_object(conn, job_id, row.chunks - 1, data)
    else:
        audio_chunks.insert_chunk(conn, job_id, row.chunks - 1, data)
    return int(row.audio_bytes)


def end_audio(conn: Connection, job_id: str, reason: LiveEnd) -> bool:
    """No more audio will come, for ``reason``; False when it had ended already (the first reason stays)."""
    changed = conn.execute(
        update(live_sessions)
        .where(live_sessions.c.job_id == job_id, live_sessions.c.ended.is_(None))
        .values(ended=reason.value)
    )
    return bool(changed.rowcount == 1)


def set_turn_detection(conn: Connection, job_id: str, turn_detection: dict[str, Any]) -> None:
    """How the worker cuts the session's audio into turns from now on (a realtime connection's
    ``session.update``)."""
    conn.execute(
        update(live_sessions).where(live_sessions.c.job_id == job_id).values(turn_detection=turn_detection)
    )


def add_mark(conn: Connection, job_id: str, action: str) -> int:
    """The client's ``commit`` or ``clear`` of the audio it sent so far: it applies after the chunks stored
    now (their count is returned). Only the session's one connection writes its marks."""
    row = conn.execute(
        select(live_sessions.c.chunks, live_sessions.c.marks).where(live_sessions.c.job_id == job_id)
    ).one()
    marks = [*(row.marks or ()), {"chunks": int(row.chunks), "action": action}]
    conn.execute(update(live_sessions).where(live_sessions.c.job_id == job_id).values(marks=marks))
    return int(row.chunks)


def restart_idle(conn: Connection, job_id: str) -> float:
    """A worker starts following the session's stream URL: the seconds since audio last arrived (by the
    database's clock), and the idle time counted from now. The time no worker followed the stream (the
    session queued, or its worker lost) is no silence of the stream's: it is not held against it."""
    row = conn.execute(
        select(live_sessions.c.audio_at, db_now()).where(live_sessions.c.job_id == job_id)
    ).one()
    conn.execute(update(live_sessions).where(live_sessions.c.job_id == job_id).values(audio_at=db_now()))
    return max(float((row[1] - row.audio_at).total_seconds()), 0.0)


def set_gaps(conn: Connection, job_id: str, gaps: Sequence[dict[str, Any]]) -> None:
    """The followed stream URL's drops so far, ``{"at", "seconds", "reason"}`` each: all of them, written
    by the one worker that follows the stream (a drop still going on grows with each write)."""
    conn.execute(update(live_sessions).where(live_sessions.c.job_id == job_id).values(gaps=list(gaps)))


def read_state(conn: Connection, job_id: str) -> LiveState | None:
    """The session's stream, with the seconds since audio last arrived by the database's clock."""
    row = conn.execute(select(live_sessions, db_now()).where(live_sessions.c.job_id == job_id)).one_or_none()
    return None if row is None else _state(row)


def report(
    conn: Connection,
    job_id: str,
    worker_id: str,
    *,
    segments: Sequence[dict[str, Any]],
    tentative: str,
    tentative_start: float | None,
    behind_seconds: float,
    lease_seconds: float,
    turns: Sequence[dict[str, Any]] | None = None,
) -> bool:
    """What the worker holding the session heard since its last report: the ``segments`` it confirmed
    (appended to the job's live segments) and the words it has not confirmed yet, with its lease extended,
    in one fenced write (LeaseLostError when the session is not held by ``worker_id``; nothing written).
    Returns whether a cancel was requested."""
    cancel = leases.report_progress(
        conn, job_id, worker_id, 0.0, segments=segments, lease_seconds=lease_seconds
    )
    values: dict[str, Any] = {
        "tentative": tentative,
        "tentative_start": tentative_start,
        "behind_seconds": behind_seconds,
    }
    if turns is not None:
        values["turns"] = list(turns)
    conn.execute(update(live_sessions).where(live_sessions.c.job_id == job_id).values(**values))
    return cancel


def open_sessions(conn: Connection) -> list[tuple[str, str, float | None]]:
    """The sessions not ended yet: (job id, status, seconds behind the audio at the last report)."""
    rows = conn.execute(
        select(jobs.c.id, jobs.c.status, live_sessions.c.behind_seconds)
        .join(live_sessions, live_sessions.c.job_id == jobs.c.id)
        .where(jobs.c.status.in_([JobStatus.QUEUED.value, JobStatus.PROCESSING.value]))
        .order_by(jobs.c.created_at, jobs.c.id)
    )
    return [(row.id, row.status, row.behind_seconds) for row in rows]


def _state(row: Row[Any]) -> LiveState:
    now = row[-1]
    return LiveState(
        job_id=row.job_id,
        audio_format=AudioFormat(row.audio_format),
        sample_rate=row.sample_rate,
        audio_bytes=int(row.audio_bytes),
        chunks=int(row.chunks),
        idle_seconds=max((now - row.audio_at).total_seconds(), 0.0),
        ended=None if row.ended is None else LiveEnd(row.ended),
        tentative=row.tentative,
        tentative_start=row.tentative_start,
        turn_detection=row.turn_detection,
        marks=tuple(row.marks or ()),
        turns=tuple(row.turns or ()),
        gaps=tuple(row.gaps or ()),
        max_seconds=row.max_seconds,
    )
