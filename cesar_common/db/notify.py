"""Telling idle workers that work arrived, so they need not poll the queue hard.

PostgreSQL: the store notifies channel ``cesar_jobs`` in the transaction that makes a job claimable (a new
job turning ``queued``, a job handed back), and :class:`JobWaiter` blocks on ``LISTEN cesar_jobs``. Channels
are database-wide, so the payload names the schema the jobs live in, and a waiter ignores other schemas'.
SQLite: :class:`JobWaiter` watches ``PRAGMA data_version`` (it changes when another connection commits) and
then looks whether a job is queued; both are cheap reads that never take the write lock.

A waiter's answer is a hint, never a promise: ``True`` means "try to claim now", ``False`` means nothing
arrived within the timeout. Spurious ``True`` answers are allowed (a claim then simply finds nothing).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from cesar_common.db.connect import CONNECT_TIMEOUT_S, error_reason, normalize_url, sqlite_path

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

CHANNEL = "cesar_jobs"
#: job changes, for the API's live event streams (payload: "<schema>|<job id>")
EVENTS_CHANNEL = "cesar_job_events"
_SCHEMA = "coalesce(current_schema(), '')"
#: how often a SQLite waiter looks for a commit by another connection
SQLITE_POLL_S = 0.05
#: longest a waiter blocks without looking at its stop event
STOP_CHECK_S = 0.25


def notify_new_job(connection: Connection) -> None:
    """Wake PostgreSQL listeners when ``connection``'s transaction commits (nothing on SQLite)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_notify('{CHANNEL}', {_SCHEMA})")


def notify_job_changed(connection: Connection, job_id: str) -> None:
    """Tell PostgreSQL listeners that job ``job_id`` changed (status, progress, segments), when
    ``connection``'s transaction commits: the API's live event streams wake on it (nothing on SQLite,
    where the API watches the file instead)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"SELECT pg_notify('{EVENTS_CHANNEL}', {_SCHEMA} || '|' || %(job_id)s)", {"job_id": job_id}
        )


class JobWaiter:
    """Waits until a job may be claimable. Create it before the worker's first claim, so that nothing
    queued between a fruitless claim and the next :meth:`wait` goes unnoticed. One thread at a time."""

    def __init__(
        self, engine: Engine, *, stop_event: threading.Event | None = None, listen_url: str | None = None
    ) -> None:
        self._stop = stop_event
        self._backend: _Backend
        if engine.dialect.name == "postgresql":
            # LISTEN needs a connection of its own, held for as long as the worker runs: not a pooled one
            # (``listen_url``: not through a transaction-pooling PgBouncer either)
            self._backend = _PostgresBackend(normalize_url(listen_url) if listen_url else engine.url)
        else:
            self._backend = _SqliteBackend(sqlite_path(engine.url))

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True when a job may have become claimable."""
        deadline = time.monotonic() + max(0.0, timeout)
        return self._backend.wait(deadline, self._stop)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> JobWaiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Backend:
    def wait(self, deadline: float, stop: threading.Event | None) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _sleep_until(deadline: float, stop: threading.Event | None) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return
    if stop is None:
        time.sleep(remaining)
    else:
        stop.wait(remaining)


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


class _PostgresBackend(_Backend):
    def __init__(self, url: URL) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: psycopg.Connection[Any] | None = None
        self._schema = ""
        self._connect()

    def _connect(self) -> bool:
        import psycopg  # here: SQLite deployments never need it

        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            log.warning("cannot listen for new jobs (will retry): %s", error_reason(exc))
            return False
        try:
            conn.execute(f"LISTEN {CHANNEL}")
            row = conn.execute(f"SELECT {_SCHEMA}").fetchone()
            self._schema = row[0] if row else ""
        except psycopg.Error as exc:
            log.warning("cannot listen for new jobs (will retry): %s", error_reason(exc))
            conn.close()
            return False
        self._conn = conn
        return True

    def wait(self, deadline: float, stop: threading.Event | None) -> bool:
        if self._conn is None or self._conn.closed:
            if not self._connect():
                _sleep_until(deadline, stop)
                return False
            return True  # notifications sent while we were not listening are lost: look now
        import psycopg

        conn = self._conn
        try:
            while not _stopped(stop):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                step = min(remaining, STOP_CHECK_S) if stop is not None else remaining
                # consume each generator to its end: while suspended it holds the connection's lock
                if self._ours(conn.notifies(timeout=step, stop_after=1)):
                    self._ours(conn.notifies(timeout=0))  # one wake-up covers every job announced so far
                    return True
            return False
        except psycopg.Error as exc:
            log.warning("lost the connection listening for new jobs: %s", error_reason(exc))
            self.close()
            return True

    def _ours(self, notifications: Iterator[psycopg.Notify]) -> bool:
        return [note for note in notifications if note.payload == self._schema] != []

    def close(self) -> None:
        import psycopg

        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                conn.close()


class _SqliteBackend(_Backend):
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._open()

    def _open(self) -> bool:
        if self._path is None or not self._path.exists():
            return False
        try:
            conn = sqlite3.connect(
                f"{self._path.resolve().as_uri()}?mode=rw",  # never create a missing database
                uri=True,
                timeout=30,
                isolation_level=None,
                check_same_thread=False,
            )
            self._version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            log.warning("cannot watch %s for new jobs: %s", self._path, exc)
            return False
        self._conn = conn
        return True

    def wait(self, deadline: float, stop: threading.Event | None) -> bool:
        if self._conn is None:
            if not self._open():
                _sleep_until(deadline, stop)
                return False
            return True  # commits made while we were not watching went unseen: look now
        try:
            while not _stopped(stop):
                version = self._conn.execute("PRAGMA data_version").fetchone()[0]
                if version != self._version:
                    self._version = version
                    if self._queued_exists():
                        return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(SQLITE_POLL_S, remaining))
            return False
        except sqlite3.Error as exc:
            log.warning("error watching %s for new jobs: %s", self._path, exc)
            self.close()
            return True

    def _queued_exists(self) -> bool:
        assert self._conn is not None
        row = self._conn.execute("SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued')").fetchone()
        return bool(row[0])

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
