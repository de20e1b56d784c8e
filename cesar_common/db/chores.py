"""Housekeeping one worker of the fleet does per interval rather than every worker (``chores``): listing the
object store's bucket for objects no row names costs the store a request per 1,000 objects, and a fleet of
hundreds of workers each listing it would be hundreds of listings.

The worker whose statement moves a chore's ``due_at`` on, by the database's clock, does it; the others see no
row change and skip it. A worker that dies mid-chore leaves it to the next interval.
"""

from __future__ import annotations

from sqlalchemy import Connection, update
from sqlalchemy.dialects import postgresql, sqlite

from cesar_common.db.clock import db_now
from cesar_common.db.tables import chores

__all__ = ["take"]


def take(conn: Connection, name: str, *, every_seconds: float) -> bool:
    """Whether this caller does chore ``name`` now (and no one else for ``every_seconds``)."""
    moved = conn.execute(
        update(chores)
        .where(chores.c.name == name, chores.c.due_at <= db_now())
        .values(due_at=db_now(every_seconds))
    ).rowcount
    if moved:
        return True
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    first = insert(chores).values(name=name, due_at=db_now(every_seconds))
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING
    taken = first.on_conflict_do_nothing(index_elements=[chores.c.name]).returning(chores.c.name)
    return conn.execute(taken).first() is not None
