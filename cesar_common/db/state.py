"""Every change of a job's or a part's state goes through here, in the caller's transaction.

A job moves ``pending`` (its upload arriving) -> ``queued`` -> ``processing`` -> ``completed`` | ``error`` |
``cancelled``, and from ``processing`` back to ``queued`` when its worker lets go or is lost. A long job's
parts move ``queued`` -> ``processing`` -> ``completed`` (back to ``queued`` when lost). The callers
(:mod:`~cesar_common.db.queue`, :mod:`~cesar_common.db.leases`, :mod:`~cesar_common.db.parts`, ...) decide
which rows change and to what; the functions here write the rows and make every change do what it must:

- a job that changed (status, progress, segments, cancel request, deletion) is announced to the API's event
  streams; a job or part that became claimable is announced to idle workers (:func:`feed.announce`, called
  from nowhere else);
- a job that goes back to the queue loses its live segments and parts (the next attempt starts over), but a
  live session keeps its confirmed segments (the next worker goes on after them);
- a job that ends loses its audio (unless kept), live segments (a live session's stay with it) and parts,
  gets its webhook delivery queued (the outbox: never a final job without its delivery) and is counted in
  the metric totals (:func:`_ended`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, case, delete, insert, update

from cesar_common.db import audio_chunks, live, outbox, totals
from cesar_common.db.clock import db_now
from cesar_common.db.feed import Change, ChangeKind, announce
from cesar_common.db.records import JobSource, JobStatus, PartStatus
from cesar_common.db.tables import (
    job_part_audio,
    job_parts,
    job_voices,
    jobs,
    live_sessions,
    transcript_revisions,
    voice_prints,
    webhook_deliveries,
)

__all__ = [
    "REQUEUED",
    "ask_to_stop",
    "change_job",
    "change_parts",
    "delete_jobs",
    "discard_uploads",
    "end_jobs",
    "final_values",
    "insert_job",
    "insert_parts",
    "report",
    "requeue_jobs",
]

QUEUED = JobStatus.QUEUED.value

#: what on_final needs from a job that just ended (UPDATE ... RETURNING)
_ENDED_COLUMNS = (
    jobs.c.id,
    jobs.c.status,
    jobs.c.started_at,
    jobs.c.completed_at,
    jobs.c.duration,
    jobs.c.callback_url,
    jobs.c.source,
)
#: a job back in the queue, as if never claimed (its attempts are the caller's to count)
REQUEUED: dict[str, Any] = {
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


# --- jobs --------------------------------------------------------------------------------------------
def insert_job(conn: Connection, values: dict[str, Any]) -> Row[Any]:
    """A new job: a ``pending`` upload, or a ``queued`` job (announced to idle workers)."""
    row = conn.execute(insert(jobs).values(values).returning(*jobs.c)).one()
    if row.status == QUEUED:
        announce(conn, Change(ChangeKind.WORK))
    return row


def change_job(conn: Connection, where: ColumnElement[bool], values: dict[str, Any]) -> Row[Any] | None:
    """The one job matching ``where`` (the whole row), changed to ``values`` and announced; None when no
    job matched. Not for ends (:func:`end_jobs`) nor returns to the queue (:func:`requeue_jobs`); a
    ``pending`` upload turning ``queued`` is announced to idle workers too."""
    row = conn.execute(update(jobs).where(where).values(**values).returning(*jobs.c)).one_or_none()
    if row is not None:
        announce(conn, Change(ChangeKind.JOB, row.id))
        if values.get("status") == QUEUED:
            announce(conn, Change(ChangeKind.WORK))
    return row


def ask_to_stop(conn: Connection, where: ColumnElement[bool]) -> int:
    """Flag the running jobs matching ``where`` for their workers to stop (each announced, so followers
    see ``cancel_requested``); how many."""
    ids = (
        conn.execute(update(jobs).where(where).values(cancel_requested=True).returning(jobs.c.id))
        .scalars()
        .all()
    )
    for job_id in ids:
        announce(conn, Change(ChangeKind.JOB, job_id))
    return len(ids)


def report(
    conn: Connection,
    where: ColumnElement[bool],
    values: dict[str, Any],
    segments: Sequence[dict[str, Any]] = (),
) -> Row[Any] | None:
    """A running job's progress (``values``) and the ``segments`` decoded since its last report, appended
    to its live segments (numbered on from the ones before); its ``cancel_requested`` after, or None when
    no job matched ``where`` (then nothing is written)."""
    count = jobs.c.segment_count + len(segments)
    row = conn.execute(
        update(jobs)
        .where(where)
        .values(**values, segment_count=count)
        .returning(jobs.c.id, jobs.c.cancel_requested, jobs.c.segment_count)
    ).one_or_none()
    if row is None:
        return None
    live.insert(conn, row.id, row.segment_count - len(segments), segments)
    announce(conn, Change(ChangeKind.JOB, row.id))
    return row


def requeue_jobs(conn: Connection, where: ColumnElement[bool], values: dict[str, Any]) -> list[str]:
    """Running jobs matching ``where`` back to the queue (:data:`REQUEUED` and ``values``): their live
    segments and parts dropped, idle workers told. A live session keeps its confirmed segments and its
    start (its audio is still arriving; the next worker goes on after them). The ids requeued."""
    is_live = jobs.c.source == JobSource.LIVE.value
    rows = conn.execute(
        update(jobs)
        .where(where)
        .values(
            **{
                **REQUEUED,
                "segment_count": case((is_live, jobs.c.segment_count), else_=0),
                "started_at": case((is_live, jobs.c.started_at), else_=None),
            },
            **values,
        )
        .returning(jobs.c.id, jobs.c.source)
    ).all()
    ids = [row.id for row in rows]
    if ids:
        restart = [row.id for row in rows if row.source != JobSource.LIVE.value]
        if restart:
            live.drop(conn, restart)
        _drop_parts(conn, ids)
        for job_id in ids:
            announce(conn, Change(ChangeKind.JOB, job_id))
        announce(conn, Change(ChangeKind.WORK))
    return ids


def end_jobs(
    conn: Connection, where: ColumnElement[bool], values: dict[str, Any], *, keep_audio: bool
) -> list[str]:
    """Jobs matching ``where`` made final with ``values`` (:func:`final_values`), then :func:`_ended`. The
    ids ended."""
    rows = conn.execute(update(jobs).where(where).values(**values).returning(*_ENDED_COLUMNS)).all()
    for row in rows:
        _ended(conn, row, keep_audio=keep_audio)
    return [row.id for row in rows]


def _ended(conn: Connection, row: Row[Any], *, keep_audio: bool) -> None:
    """What every path to a final state does in its transaction: drop the audio, the live segments (the
    transcript, if any, is ``jobs.segments`` now) and the parts, queue the webhook delivery and count the
    job."""
    if not keep_audio:
        audio_chunks.delete_audio(conn, [row.id])
    if row.source != JobSource.LIVE.value:
        # a live session keeps its confirmed segments: its client may still be catching up on them
        # (they go with the job, :func:`delete_jobs`)
        live.drop(conn, [row.id])
    _drop_parts(conn, [row.id])
    announce(conn, Change(ChangeKind.JOB, row.id))
    outbox.enqueue(conn, row.id, row.callback_url)
    wall = None
    if row.started_at is not None and row.completed_at is not None:
        wall = (row.completed_at - row.started_at).total_seconds()
    totals.add(conn, totals.job_finished_additions(row.status, wall_seconds=wall, audio_seconds=row.duration))


def delete_jobs(conn: Connection, ids: Sequence[str]) -> None:
    """Jobs gone for good, with everything that hangs off them (children first: foreign keys cascade too,
    but on SQLite only with the pragma on)."""
    if not ids:
        return
    audio_chunks.delete_audio(conn, ids)
    live.drop(conn, ids)
    _drop_parts(conn, ids)
    conn.execute(delete(live_sessions).where(live_sessions.c.job_id.in_(ids)))
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.job_id.in_(ids)))
    # the voices of a diarized job, and the voice prints of the library taken from it, go with it
    conn.execute(delete(job_voices).where(job_voices.c.job_id.in_(ids)))
    conn.execute(delete(voice_prints).where(voice_prints.c.job_id.in_(ids)))
    conn.execute(delete(transcript_revisions).where(transcript_revisions.c.job_id.in_(ids)))
    conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
    for job_id in ids:
        announce(conn, Change(ChangeKind.JOB, job_id))


def discard_uploads(conn: Connection, ids: Sequence[str]) -> None:
    """Uploads that never became jobs anyone saw (still ``pending``): gone with their audio, unannounced."""
    if ids:
        audio_chunks.delete_audio(conn, ids)
        conn.execute(delete(jobs).where(jobs.c.id.in_(ids), jobs.c.status == JobStatus.PENDING.value))


# --- parts of long jobs ------------------------------------------------------------------------------
def insert_parts(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """New ``queued`` parts (their audio is stored already), announced to idle workers."""
    conn.execute(insert(job_parts), [{**row, "status": PartStatus.QUEUED.value} for row in rows])
    announce(conn, Change(ChangeKind.WORK))


def change_parts(conn: Connection, where: ColumnElement[bool], values: dict[str, Any]) -> list[Row[Any]]:
    """Parts matching ``where`` changed to ``values`` (their whole rows); parts that turn ``queued`` are
    announced to idle workers."""
    rows = list(conn.execute(update(job_parts).where(where).values(**values).returning(*job_parts.c)).all())
    if rows and values.get("status") == PartStatus.QUEUED.value:
        announce(conn, Change(ChangeKind.WORK))
    return rows


def _drop_parts(conn: Connection, job_ids: Sequence[str]) -> None:
    """The parts of these jobs and their audio (a job that ended, or went back to the queue)."""
    conn.execute(delete(job_part_audio).where(job_part_audio.c.job_id.in_(job_ids)))
    conn.execute(delete(job_parts).where(job_parts.c.job_id.in_(job_ids)))
