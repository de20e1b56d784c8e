"""Where a command that acts on the local database or on a Cesar server acts (`cesar speakers`, `cesar keys`),
and the local database opened for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cesar_common.errors import InvalidInputError

if TYPE_CHECKING:
    from cesar_common.db.store import JobStore

__all__ = ["Where", "open_store", "where"]


@dataclass(frozen=True, slots=True)
class Where:
    """A server (``server``, with its ``api_key``), or the local database (``database_url``)."""

    database_url: str | None
    server: str | None
    api_key: str | None


def where(
    database_url: str | None,
    server: str | None,
    api_key: str | None,
    *,
    db_given: bool,
    server_given: bool,
) -> Where:
    """``--server`` (or ``CESAR_SERVER``) names a server, ``--db`` (or ``CESAR_DATABASE_URL``, or the default
    SQLite file) the local database; a flag on the command line beats a variable, and both flags together
    are refused."""
    if db_given and server_given:
        raise InvalidInputError("--db names the local database and --server a server: give one of them")
    if db_given or not server:
        return Where(database_url, None, None)
    return Where(None, server, api_key)


def open_store(database_url: str, *, create: bool) -> JobStore | None:
    """The job store at ``database_url``, its schema checked; None where a SQLite file does not exist, unless
    ``create`` (then it is made, and so is the schema of an empty database, as `cesar db upgrade` would)."""
    from cesar_common.db.connect import sqlite_path
    from cesar_common.db.migrate import ensure_schema_current, schema_state, upgrade_to_head
    from cesar_common.db.store import JobStore

    path = sqlite_path(database_url)
    if path is not None and not path.exists() and not create:
        return None
    store = JobStore.from_url(database_url)
    try:
        if create and schema_state(store.engine).current is None:
            upgrade_to_head(store.engine)
        ensure_schema_current(store.engine)
    except BaseException:
        store.close()
        raise
    return store
