"""How Cesar connects to its job database: the SQLAlchemy engine, SQLite tuned for several processes, or
PostgreSQL via psycopg 3.

Each process builds one engine from its settings (:func:`open_engine`) and hands it down: the job store, the
schema check and the PostgreSQL listener all use it; nothing below re-parses the URL or opens engines of its
own.

SQLite: the file's directory is created, WAL lets readers run beside one writer, ``busy_timeout`` makes a
writer wait for the lock instead of failing, and every write transaction starts with ``BEGIN IMMEDIATE``
(SQLAlchemy's pysqlite recipe: the driver's own BEGIN is switched off and we emit ours). Taking the write lock
up front matters: a deferred transaction that reads and then writes cannot wait out a concurrent writer, it
fails at once with "database is locked". Read-only work opts into a plain (deferred) ``BEGIN`` through
:func:`read_only`, so readers never queue behind writers.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from cesar_common.errors import DatabaseError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "SQLITE_POOL_SIZE",
    "error_reason",
    "foreign_keys_off",
    "normalize_url",
    "open_engine",
    "read_only",
    "safe_url",
    "sqlite_file",
    "sqlite_path",
]

BUSY_TIMEOUT_MS = 30_000
#: SQLite connections kept open per engine; more are opened when needed (never waited for, see below)
SQLITE_POOL_SIZE = 8
CONNECT_TIMEOUT_S = 10
#: execution option naming the BEGIN mode of a SQLite transaction ("IMMEDIATE" unless set)
SQLITE_BEGIN_OPTION = "cesar_sqlite_begin"
#: how long a file check stands for lone reads (SqliteFile.check_for_read)
READ_CHECK_SECONDS = 0.5


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://`` and ``postgres://`` URLs get the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory databases and other backends)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def open_engine(
    url: str | URL,
    *,
    pooled: bool = True,
    pool_size: int = 5,
    max_overflow: int = 10,
    prepared_statements: bool = True,
) -> Engine:
    """A new engine for ``url``: a process calls this once and hands the engine down.

    ``pooled=False`` (a connection per use) is for one-off commands such as ``alembic`` from a checkout.
    ``pool_size`` and ``max_overflow`` bound a PostgreSQL process's connections (CESAR_DB_POOL_SIZE,
    CESAR_DB_MAX_OVERFLOW); SQLite's are open files, not bounded. ``prepared_statements=False``
    (CESAR_DB_PREPARED_STATEMENTS) for PgBouncer's transaction pooling before 1.21.
    """
    parsed = normalize_url(url)
    options: dict[str, Any] = {}
    if not pooled:
        options["poolclass"] = NullPool
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if pooled and path is not None:
            # A SQLite connection is only an open file, so a checkout never waits for one (unbounded
            # overflow): the API reads SQLite on its event loop (see JobStore.reads_are_local), where
            # waiting for a connection held by a thread that waits for the loop would be a deadlock.
            options.update(pool_size=SQLITE_POOL_SIZE, max_overflow=-1)
        engine = create_engine(parsed, **options)
        _install_sqlite_hooks(engine, path)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # fail fast when the server is unreachable (the libpq default waits for the OS's TCP timeout)
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        if not prepared_statements:
            connect_args["prepare_threshold"] = None
        options["connect_args"] = connect_args
        if pooled:
            options.update(pool_size=pool_size, max_overflow=max_overflow)
        return create_engine(parsed, pool_pre_ping=True, **options)
    return create_engine(parsed, **options)


def read_only(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) for reads only: SQLite transactions begin DEFERRED; PostgreSQL reads
    run in autocommit (under READ COMMITTED each statement has its own snapshot anyway, and the ROLLBACK
    a transaction would end with is a round trip saved: +15 % on `GET /jobs/{id}`)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})


class SqliteFile:
    """The file an engine opened first. Deleted or replaced under a running service, the connections already
    open would go on writing into the unlinked file (lost at the next start) while new ones would create an
    empty database: every connection and transaction checks the path still names that file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._opened: list[tuple[int, int]] = []
        self._checked_at = -math.inf

    def check(self) -> None:
        """DatabaseError when the path no longer names the file first opened."""
        _check_same_file(self.path, self._opened)
        self._checked_at = time.monotonic()

    def check_for_read(self) -> None:
        """:meth:`check`, at most every :data:`READ_CHECK_SECONDS`: a read cannot lose data, so a lone read
        may see the old file a moment longer (the polled ``GET /jobs/{id}`` saves a ``stat`` per request)."""
        if time.monotonic() - self._checked_at >= READ_CHECK_SECONDS:
            self.check()


#: the file each SQLite engine opened (engines of in-memory databases have none)
_SQLITE_FILES: weakref.WeakKeyDictionary[Engine, SqliteFile] = weakref.WeakKeyDictionary()


def sqlite_file(engine: Engine) -> SqliteFile | None:
    """The file check of an engine :func:`open_engine` made for a SQLite file (None otherwise)."""
    return _SQLITE_FILES.get(engine)


def _install_sqlite_hooks(engine: Engine, path: Path | None) -> None:
    file = None if path is None else SqliteFile(path)
    if file is not None:
        _SQLITE_FILES[engine] = file

    @event.listens_for(engine, "do_connect")
    def _before_connect(*_args: Any) -> None:
        # before the driver opens the path: opening a deleted file would create an empty one
        if file is not None:
            file.check()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not BEGIN on its own: we emit BEGIN ourselves in _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL itself may have to wait for a lock
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if file is not None:
            file.check()
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


def _check_same_file(path: Path, opened: list[tuple[int, int]]) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        if not opened:
            return  # the first connection creates it
        raise _file_gone(path, "was deleted") from None
    identity = (info.st_dev, info.st_ino)
    if not opened:
        opened.append(identity)
    elif opened[0] != identity:
        raise _file_gone(path, "was replaced by another file")


def _file_gone(path: Path, what: str) -> DatabaseError:
    return DatabaseError(
        "the job database is unavailable",
        detail=f"the SQLite file {path} {what} while Cesar ran: restart Cesar (and migrate a new file)",
    )


@contextmanager
def foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite foreign keys off on ``connection`` for the block (migrations: batch mode rebuilds tables, which
    would cascade deletes). Set on the driver's connection before any transaction begins: SQLite ignores the
    pragma inside one. Nothing to do on PostgreSQL."""
    if connection.dialect.name != "sqlite":
        yield
        return
    if connection.in_transaction():
        raise RuntimeError("foreign_keys_off needs a connection outside a transaction")
    driver = connection.connection.dbapi_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()  # an unfinished migration: nothing of it stays
        driver.execute("PRAGMA foreign_keys = ON")


def error_reason(exc: BaseException) -> str:
    """The first line of the driver's message for a SQLAlchemy error (no SQL, no parameters)."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def safe_url(url: str | URL) -> str:
    """``url`` with its password masked, for messages."""
    return normalize_url(url).render_as_string(hide_password=True)
