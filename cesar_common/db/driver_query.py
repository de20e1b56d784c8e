"""A prebuilt read run on the database driver's own cursor, for the one statement polled thousands of times
a second (``GET /jobs/{id}``, see :meth:`cesar_common.db.store.JobStore.job_view`).

Through SQLAlchemy's ``Connection``, a primary-key read on SQLite costs several times what SQLite itself takes
(autobegin, event dispatch, result set-up: about 0.2 ms against 0.03 ms on these machines). The statement is
still built with SQLAlchemy and compiled once for the engine's dialect, and each column still goes through
its type's result processor, so a row comes back exactly as :meth:`Connection.execute` would give it (a test
compares the two). Only statements whose parameters need no bind processing qualify (checked when built).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError

__all__ = ["DriverQuery"]


class DriverQuery:
    """``stmt`` compiled for ``engine``: :meth:`first` runs it on a DBAPI connection of the calling thread's.

    Each thread keeps one connection, made by the engine (its connect hooks ran) and then detached from the
    pool: on SQLite, where a connection is an open file, a checkout and return cost as much as the read
    itself. :meth:`close` closes them; a connection that failed is dropped and the next call makes another.
    """

    def __init__(self, engine: Engine, stmt: Select[Any], *, before_use: Callable[[], None] | None = None):
        dialect = engine.dialect
        compiled = stmt.compile(dialect=dialect)
        self._engine = engine
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error
        self._sql = compiled.string
        self._defaults = dict(compiled.params)
        self._order = list(compiled.positiontup or ()) if compiled.positional else None
        if any(compiled._bind_processors.get(name) for name in self._defaults):
            raise ValueError("DriverQuery takes only statements whose parameters need no processing")
        processors = (column.type._cached_result_processor(dialect, None) for column in stmt.selected_columns)
        #: (position, processor) of the columns whose driver values need converting (datetimes, booleans)
        self._processors = [
            (index, process) for index, process in enumerate(processors) if process is not None
        ]
        #: run before each use (the SQLite file check a transaction's BEGIN runs elsewhere)
        self._before_use = before_use
        #: statements run, for the process's statement count
        self.count = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []

    def first(self, **params: Any) -> tuple[Any, ...] | None:
        """The first row, its values processed as SQLAlchemy would; None when there is none."""
        given = {**self._defaults, **params}
        bound: Any = given if self._order is None else [given[name] for name in self._order]
        if self._before_use is not None:
            self._before_use()
        connection = self._connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, bound)
                row = cursor.fetchone()
            finally:
                cursor.close()
        except self._driver_error as exc:  # as SQLAlchemy would have raised it
            self._drop(connection)
            raise DBAPIError.instance(self._sql, bound, exc, self._driver_error) from exc
        self.count += 1
        if row is None:
            return None
        values = list(row)
        for index, process in self._processors:
            values[index] = process(values[index])
        return tuple(values)

    def close(self) -> None:
        """Close the threads' connections (a later call opens a new one)."""
        with self._lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        for connection in connections:
            connection.close()

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            proxied = self._engine.raw_connection()
            proxied.detach()
            connection = proxied.dbapi_connection
            with self._lock:
                self._connections.append(connection)
            self._local.connection = connection
        return connection

    def _drop(self, connection: Any) -> None:
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        with contextlib.suppress(Exception):
            connection.close()
