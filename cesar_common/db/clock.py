"""Time from the database's clock, never a host's.

Every timestamp Cesar writes (job times, leases, heartbeats, webhook due times) and every cutoff it compares
against (expired leases, retention, stale uploads, live workers, idempotency windows) is computed in SQL by
:class:`db_now`: PostgreSQL's ``now()`` (the start of the transaction) or SQLite's ``'now'``. Hosts whose
clocks disagree therefore agree on every lease: a sweeper whose clock runs ahead cannot expire a live job,
and a job cannot start before it was created. (SQLite is one file on one host, so its clock is that host's.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from cesar_common.db.tables import UTCDateTime

__all__ = ["db_now"]


class db_now(FunctionElement[Any]):
    """The database's current time, plus ``offset_seconds`` (negative for a cutoff in the past)."""

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, offset_seconds: float = 0.0) -> None:
        super().__init__(bindparam("offset_seconds", float(offset_seconds), unique=True))


@compiles(db_now, "postgresql")
def _postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(now() + make_interval(secs => {compiler.process(element.clauses, **kw)}))"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text and compares them as text:
    # the same layout here ('%f' is seconds with milliseconds), so comparisons with stored values hold.
    offset = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', printf('%+.6f seconds', {offset}))"
