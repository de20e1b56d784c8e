"""The probes: liveness touches no database; readiness answers every probe within a second from one look
at the database (three queries), and concurrent probes of a stale answer wait for one refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import event

from cesar_api.app import create_app
from cesar_api.routes.health import REUSE_SECONDS, ReadinessCache
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings

UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def statements(store: JobStore) -> Iterator[list[str]]:
    """The statements ``store`` sends its database from here on."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    yield sent
    event.remove(store.engine, "before_cursor_execute", record)


def test_liveness_touches_no_database(db_url: str, store: JobStore, statements: list[str]) -> None:
    with TestClient(create_app(Settings(database_url=db_url), store)) as client:
        for _ in range(50):
            live = client.get("/health/live")
            assert live.status_code == 200 and live.json()["status"] == "ok"
    assert statements == []
    with TestClient(create_app(Settings(database_url=UNREACHABLE_URL))) as client:
        assert client.get("/health").status_code == 503
        assert client.get("/health/live").status_code == 200  # an outage elsewhere is no reason to restart


def test_readiness_reuses_one_look_a_second(db_url: str, store: JobStore, statements: list[str]) -> None:
    settings = Settings(database_url=db_url)
    clock = Clock()
    cache = ReadinessCache(clock)

    async def probes(count: int) -> list[int]:
        answers = await asyncio.gather(*(cache.get(store, settings) for _ in range(count)))
        return [answer.status_code for answer in answers]

    assert asyncio.run(probes(32)) == [200] * 32  # all at once, on a cold cache: one look
    one_look = len(statements)
    assert len([sql for sql in statements if sql != "BEGIN"]) == 3  # the ping, the workers, the queue
    assert asyncio.run(probes(100)) == [200] * 100
    clock.now += REUSE_SECONDS / 2
    assert asyncio.run(probes(100)) == [200] * 100
    assert len(statements) == one_look

    store.register_worker("w-probe", host="test-host", pid=1)
    before = len(statements)
    clock.now += REUSE_SECONDS  # a second later, the next probe looks again and sees the worker
    answer = asyncio.run(cache.get(store, settings))
    assert len(statements) == before + one_look
    assert answer.body.workers is not None and answer.body.workers.count == 1


def test_with_a_key_only_a_request_that_sends_it_sees_which_workers_hold_what(
    db_url: str, store: JobStore
) -> None:
    store.register_worker("w-probe:7", host="test-host", pid=7)
    app = create_app(Settings(database_url=db_url, api_key="probe-key"), store)
    with TestClient(app) as client:
        anonymous = client.get("/health").json()["workers"]
        assert anonymous["count"] == 1 and anonymous["workers"] == []
        keyed = client.get("/health", headers={"Authorization": "Bearer probe-key"}).json()["workers"]
        assert [worker["id"] for worker in keyed["workers"]] == ["w-probe:7"]
