"""Transactions on the job database, and what its failures mean to a caller.

:class:`Transactions` opens them (writes as ``BEGIN IMMEDIATE`` on SQLite, reads on a read-only engine),
wraps SQLAlchemy's errors where they enter (an outage is a :class:`DatabaseError`, 503, try again; a refused
statement is a :class:`DatabaseBugError`, 500; neither carries the driver's message to a client), and
remembers why this process's writes last failed until they work again (``/health`` says so).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cesar_common.db import totals
from cesar_common.db.connect import error_reason, read_only, sqlite_path
from cesar_common.errors import CesarError, DatabaseBugError, DatabaseError

__all__ = ["MIN_FREE_BYTES", "Transactions", "database_error"]

#: after a failed write, SQLite counts as writable again only with this much room to grow
MIN_FREE_BYTES = 64 * 1024 * 1024


class Transactions:
    """Read and write transactions on one engine. Thread-safe: one per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader = read_only(engine)
        #: why a write of this process failed for want of the database (full disk, file gone), until
        #: write_failure() finds that writes work again
        self._write_failure: str | None = None

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed when the block ends."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            error = database_error(exc)
            if isinstance(error, DatabaseError):
                self._write_failure = error.describe()
            raise error from exc
        except DatabaseError as exc:  # the SQLite file is gone (db/connect.py)
            self._write_failure = exc.describe()
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self._reader.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise database_error(exc) from exc

    def write_failure(self) -> str | None:
        """Why writes fail, if this process's last one did and they still do (None: they work).

        After a failure, a small write is tried again here, and on SQLite the room left for the file must
        be back above :data:`MIN_FREE_BYTES`: the answer clears once space returns, without waiting for
        the next job, and does not flap while only small writes fit.
        """
        failure = self._write_failure
        if failure is None:
            return None
        try:
            with self.write() as conn:
                totals.add(conn, {(totals.WRITE_PROBE, "health"): 0.0})
            room = self.sqlite_room()
        except CesarError as exc:
            return exc.describe()
        if room is not None and room < MIN_FREE_BYTES:
            return f"{failure}; {room // 1024} KiB left for the database file"
        self._write_failure = None
        return None

    def sqlite_room(self) -> int | None:
        """Bytes the SQLite file may still grow by (the disk's free space, or SQLite's own page limit);
        None on PostgreSQL."""
        path = sqlite_path(self.engine.url)
        if path is None:
            return None
        with self.read() as conn:
            size, pages, limit = (
                int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())
                for name in ("page_size", "page_count", "max_page_count")
            )
        return min(shutil.disk_usage(path.parent).free, (limit - pages) * size)


#: what a database that is away (down, unreachable, locked, out of space, a dropped connection) raises
_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


def database_error(exc: SQLAlchemyError) -> CesarError:
    """An outage is a DatabaseError (503, try again); anything else the database refused is a bug (500).
    Neither carries the driver's message to a client."""
    reason = error_reason(exc)
    if isinstance(exc, _UNAVAILABLE) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return DatabaseError("the job database is unavailable", detail=reason)
    return DatabaseBugError("internal error: the job database refused a statement", detail=reason)
