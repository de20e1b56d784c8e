"""Corrections of a completed job's transcript: the SQL behind ``transcript_revisions``, run inside the job
store's transactions.

The jobs row always holds the latest transcript (``segments``, ``result_text``, ``speakers``, and its
number in ``revision``), so every reader of a job serves the latest without knowing of revisions. The rows
here keep what came before: revision 0, the machine's transcript, written with the first edit, then one row
per edit with who made it, when, and the edits it made (:mod:`cesar_common.transcript_edits`).

An edit names the revision it was made on. The jobs row changes only ``WHERE revision = <that one>``:
of two editors who read the same revision, one changes it and the other's statement matches no row (on
PostgreSQL it waits for the first to commit, then finds the revision moved on; SQLite's write transactions
run one at a time), so the second gets a conflict with the revision to read again, never a lost edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, insert, select

from cesar_common.db import outbox, state, voice_library
from cesar_common.db.clock import db_now
from cesar_common.db.job_reads import not_found, plausible_id
from cesar_common.db.records import JobStatus, RevisionRecord
from cesar_common.db.tables import jobs, transcript_revisions
from cesar_common.errors import ConflictError, InvalidInputError, NotFoundError
from cesar_common.transcript_edits import Remember, Transcript, joined_text

__all__ = [
    "editable",
    "read",
    "read_all",
    "record",
    "remember_voices",
    "revise",
    "revision_of",
    "stale",
    "transcripts",
]

COMPLETED = JobStatus.COMPLETED.value
_EDITABLE: list[ColumnElement[Any]] = [
    jobs.c.id,
    jobs.c.status,
    jobs.c.revision,
    jobs.c.segments,
    jobs.c.speakers,
    jobs.c.result_text,
    jobs.c.completed_at,
    jobs.c.callback_url,
]
_SUMMARY: list[ColumnElement[Any]] = [
    transcript_revisions.c.job_id,
    transcript_revisions.c.revision,
    transcript_revisions.c.author,
    transcript_revisions.c.created_at,
    transcript_revisions.c.edits,
]


def editable(conn: Connection, job_id: str, base: int) -> Row[Any]:
    """The job's row as an edit made on revision ``base`` needs it: NotFoundError for an unknown job,
    ConflictError for one not completed or whose transcript is no longer at ``base``."""
    row = None
    if plausible_id(job_id):
        row = conn.execute(
            select(*_EDITABLE).where(jobs.c.id == job_id, jobs.c.status != JobStatus.PENDING.value)
        ).one_or_none()
    if row is None:
        raise not_found(job_id)
    if row.status != COMPLETED:
        raise ConflictError(
            f"the job is {row.status}: its transcript can be edited once it is completed",
            extra={"status": row.status},
        )
    if row.revision != base:
        raise stale(job_id, base, row.revision)
    return row


def revision_of(conn: Connection, job_id: str) -> int | None:
    """The revision the job's transcript is at now (None: no such job)."""
    return conn.execute(select(jobs.c.revision).where(jobs.c.id == job_id)).scalar_one_or_none()


def stale(job_id: str, base: int, current: int) -> ConflictError:
    meanwhile = " (someone edited it meanwhile)" if current > base else ""
    return ConflictError(
        f"the transcript of job {job_id} is at revision {current}, not {base}{meanwhile}: fetch it again "
        f"and make the edit on revision {current}",
        extra={"revision": current},
    )


def transcripts(conn: Connection, job: Row[Any], wanted: Sequence[int]) -> dict[int, Transcript]:
    """The transcripts of the revisions ``wanted`` the job has (``job``: an :func:`editable` row)."""
    found: dict[int, Transcript] = {}
    for number in set(wanted):
        if number == job.revision:
            found[number] = Transcript(job.segments or [], job.speakers)
        elif number < job.revision:
            row = read(conn, job.id, number)
            if row is not None:
                found[number] = Transcript(row.segments or [], row.speakers)
    return found


def revise(
    conn: Connection, job: Row[Any], revised: Transcript, edits: list[dict[str, Any]], author: str | None
) -> Row[Any] | None:
    """Make ``revised`` the job's transcript, as the next revision after the one ``job`` (an
    :func:`editable` row) holds, with its edits and author; announce the change and queue a
    ``transcript.revised`` webhook delivery. The jobs row after, or None when another edit moved the
    revision on first (nothing written then)."""
    number = job.revision + 1
    segments = list(revised.segments)
    row = state.change_job(
        conn,
        (jobs.c.id == job.id) & (jobs.c.status == COMPLETED) & (jobs.c.revision == job.revision),
        {
            "segments": segments,
            "result_text": joined_text(segments),
            "speakers": revised.speakers,
            "segment_count": len(segments),
            "revision": number,
        },
    )
    if row is None:
        return None
    rows = []
    if job.revision == 0:  # the machine's transcript, kept from its first edit on
        rows.append(
            {
                "revision": 0,
                "text": job.result_text,
                "segments": job.segments,
                "speakers": job.speakers,
                "author": None,
                "edits": None,
                "created_at": job.completed_at,
            }
        )
    rows.append(
        {
            "revision": number,
            "text": row.result_text,
            "segments": segments,
            "speakers": revised.speakers,
            "author": author,
            "edits": edits,
            "created_at": db_now(),
        }
    )
    for values in rows:
        conn.execute(insert(transcript_revisions).values(job_id=job.id, **values))
    outbox.enqueue(conn, job.id, job.callback_url, event=outbox.REVISED)
    return row


def remember_voices(conn: Connection, job_id: str, voices: Sequence[Remember]) -> None:
    """Add the job's voices renamed with ``remember`` to the voice library, under their new names;
    InvalidInputError naming the edit for a speaker with no voice of the job's or a name the library
    refuses."""
    for voice in voices:
        where = f"edit {voice.edit}"
        if voice.label is None:
            raise InvalidInputError(
                f"{where}: {voice.name!r} was named by an edit, not found by the diarizer in this job: "
                "there is no voice print to remember"
            )
        try:
            voice_library.remember(conn, job_id, voice.label, voice.name)
        except (InvalidInputError, NotFoundError) as exc:
            raise InvalidInputError(f"{where}: {exc.message}", extra=exc.extra or None) from exc


def read(conn: Connection, job_id: str, number: int) -> Row[Any] | None:
    """Revision ``number``'s row, transcript included (None when the job has no such row)."""
    return conn.execute(
        select(transcript_revisions).where(
            transcript_revisions.c.job_id == job_id, transcript_revisions.c.revision == number
        )
    ).one_or_none()


def read_all(conn: Connection, job_id: str) -> list[Row[Any]]:
    """Every revision row of the job without its transcript, oldest first."""
    return list(
        conn.execute(
            select(*_SUMMARY)
            .where(transcript_revisions.c.job_id == job_id)
            .order_by(transcript_revisions.c.revision)
        ).all()
    )


def record(row: Row[Any], *, whole: bool = False) -> RevisionRecord:
    values = row._mapping
    return RevisionRecord(
        job_id=values["job_id"],
        revision=values["revision"],
        author=values["author"],
        created_at=values["created_at"],
        edits=values["edits"],
        text=values["text"] if whole else None,
        segments=values["segments"] if whole else None,
        speakers=values["speakers"] if whole else None,
    )
