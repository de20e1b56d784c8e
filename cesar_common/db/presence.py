"""Worker presence: one ``workers`` row per worker process, refreshed by its heartbeat.

``/health`` and ``/metrics`` count the workers seen recently; rows of workers gone for long are removed by
any worker's housekeeping.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cesar_common.db.clock import db_now
from cesar_common.db.records import WorkerRecord
from cesar_common.db.rows import worker_record
from cesar_common.db.tables import workers

__all__ = [
    "count_seen_within",
    "new_values",
    "refresh",
    "remove",
    "remove_unseen_for",
    "seen_within",
    "upsert",
]


def upsert(conn: Connection, values: dict[str, Any]) -> None:
    """Insert the worker's row, or refresh every column of the row it already has."""
    stmt: postgresql.Insert | sqlite.Insert
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(workers).values(**values)
    else:
        stmt = sqlite.insert(workers).values(**values)
    refreshed = {name: stmt.excluded[name] for name in values if name != "id"}
    conn.execute(stmt.on_conflict_do_update(index_elements=[workers.c.id], set_=refreshed))


def new_values(worker_id: str, *, host: str, pid: int) -> dict[str, Any]:
    """A presence row for a worker that starts now."""
    return {
        "id": worker_id,
        "host": host,
        "pid": pid,
        "started_at": db_now(),
        "last_seen_at": db_now(),
        "current_job_id": None,
        "models": [],
        "memory": None,
    }


def refresh(
    conn: Connection,
    worker_id: str,
    *,
    current_job_id: str | None,
    models: list[str],
    memory: dict[str, Any] | None = None,
) -> bool:
    """Mark the worker seen; False when its row is gone (then :func:`upsert` recreates it)."""
    changed = conn.execute(
        update(workers)
        .where(workers.c.id == worker_id)
        .values(last_seen_at=db_now(), current_job_id=current_job_id, models=list(models), memory=memory)
    )
    return bool(changed.rowcount == 1)


def remove(conn: Connection, worker_id: str) -> None:
    conn.execute(delete(workers).where(workers.c.id == worker_id))


def seen_within(conn: Connection, seconds: float) -> list[WorkerRecord]:
    rows = conn.execute(
        select(workers)
        .where(workers.c.last_seen_at >= db_now(-seconds))
        .order_by(workers.c.started_at, workers.c.id)
    ).all()
    return [worker_record(row) for row in rows]


def count_seen_within(conn: Connection, seconds: float) -> int:
    seen = select(func.count()).where(workers.c.last_seen_at >= db_now(-seconds))
    return int(conn.execute(seen).scalar_one())


def remove_unseen_for(conn: Connection, seconds: float) -> int:
    return int(conn.execute(delete(workers).where(workers.c.last_seen_at < db_now(-seconds))).rowcount)
