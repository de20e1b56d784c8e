"""Live segments: a running job's segments as its worker decodes them (``job_segments``), for clients that
follow it while it runs (the event streams, ``?partial=true``).

They are written with the job's progress (:func:`cesar_common.db.state.report`), fenced by the worker's
lease, and dropped when the job ends (its transcript is then ``jobs.segments``) or goes back to the queue
(the next attempt decodes again from the start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select
from sqlalchemy import insert as insert_into

from cesar_common.db.tables import job_segments

__all__ = ["drop", "insert", "read_from", "read_from_many"]


def insert(conn: Connection, job_id: str, first: int, segments: Sequence[dict[str, Any]]) -> None:
    """Store ``segments`` as the job's live segments ``first``, ``first + 1``, ... (each one's ``id`` its
    place: a long job's parts number theirs from 0)."""
    if segments:
        conn.execute(
            insert_into(job_segments),
            [
                {"job_id": job_id, "seq": first + n, "data": {**data, "id": first + n}}
                for n, data in enumerate(segments)
            ],
        )


def read_from(conn: Connection, job_id: str, first: int) -> list[dict[str, Any]]:
    """A running job's live segments from index ``first`` on, in order."""
    rows = conn.execute(
        select(job_segments.c.data)
        .where(job_segments.c.job_id == job_id, job_segments.c.seq >= first)
        .order_by(job_segments.c.seq)
    ).scalars()
    return [dict(data) for data in rows]


def read_from_many(conn: Connection, firsts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
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


def drop(conn: Connection, job_ids: Sequence[str]) -> None:
    conn.execute(delete(job_segments).where(job_segments.c.job_id.in_(job_ids)))
