"""Where the API's short reads run: inline on SQLite (no thread hop), in a worker thread on PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from contextlib import ExitStack

import pytest

from cesar_api.reads import run_read
from cesar_common.db.connect import SQLITE_POOL_SIZE
from cesar_common.db.store import JobStore


def test_reads_are_local_only_on_sqlite(store: JobStore, db_url: str) -> None:
    assert store.reads_are_local is db_url.startswith("sqlite")


def test_run_read_runs_sqlite_inline_and_postgres_in_a_thread(store: JobStore, db_url: str) -> None:
    caller = threading.get_ident()

    async def where() -> int:
        return await run_read(store, threading.get_ident)

    ran_in = asyncio.run(where())
    assert (ran_in == caller) is db_url.startswith("sqlite")


def test_run_read_passes_arguments_and_errors(store: JobStore) -> None:
    async def divide(a: int, b: int) -> float:
        return await run_read(store, lambda x, y: x / y, a, b)

    assert asyncio.run(divide(6, 3)) == 2
    with pytest.raises(ZeroDivisionError):
        asyncio.run(divide(1, 0))


def test_sqlite_never_waits_for_a_pooled_connection(sqlite_url: str) -> None:
    """The event loop reads SQLite inline: a checkout must not wait while threads hold connections."""
    store = JobStore.from_url(sqlite_url)
    held = SQLITE_POOL_SIZE + 20  # beyond SQLAlchemy's default pool and overflow (5 + 10)
    with ExitStack() as stack:
        for _ in range(held):
            stack.enter_context(store.engine.connect())
        # one more, while every pooled connection is out: a bounded pool would wait its timeout, then raise
        store.ping()
