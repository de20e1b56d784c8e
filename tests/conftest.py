"""Fixtures every test level shares: audio files, and freshly migrated SQLite and PostgreSQL databases.

Each test gets its own freshly migrated database: a SQLite file (migrated once per session into a template
file that each test copies), or a PostgreSQL schema migrated to head for that test.
Tests that touch PostgreSQL are marked ``postgres`` automatically. Without a reachable server they skip,
except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbtools import migrate
from psycopg import sql
from sqlalchemy.engine import make_url

from cesar_common.db.connect import normalize_url
from cesar_common.db.store import JobStore

pytest_plugins = ["seaweed"]  # the SeaweedFS S3 gateway of the object-store tests: seaweed, s3_bucket
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
AUDIO_DIR = Path(__file__).parent / "fixtures" / "audio"
POSTGRES_FIXTURES = frozenset({"postgres_server_url", "postgres_url"})


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): a worker per core, and one more. Many tests wait (for a body
    timeout, a subprocess, a retry's backoff) while others need the CPU; the extra worker keeps the cores
    busy meanwhile (2 cores: 5.5 minutes with three workers against 6.1 with two; four were no faster with
    the live stories, and made timing-bound waits longer)."""
    return len(os.sched_getaffinity(0)) + 1


#: files whose tests take a minute or more, mostly waiting (audio at speaking pace, live streams): run
#: first, so that they overlap the rest instead of making a long tail after it (``--dist loadfile`` hands
#: files to the test workers in collection order)
LONG_FILES = frozenset(
    {
        "test_live.py",
        "test_live_postgres.py",
        "test_realtime.py",
        "test_live_stream_urls.py",
        "test_languages.py",
        "test_languages_postgres.py",
        "test_cpu_kernels.py",
        "test_object_store_serve.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONG_FILES)  # stable: the order within stays
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_url") == "postgres"
        if fixtures & POSTGRES_FIXTURES or on_postgres:
            item.add_marker(pytest.mark.postgres)


# --- audio ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def audio_dir() -> Path:
    return AUDIO_DIR


# --- SQLite --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    url = f"sqlite:///{path}"
    migrate(url)
    # fold the WAL into the main file, so one file is the whole database
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated SQLite file of its own (``sqlite:////.../cesar.db``)."""
    path = tmp_path / "cesar.db"
    shutil.copyfile(_sqlite_template, path)
    yield f"sqlite:///{path}"


# --- PostgreSQL ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """CESAR_TEST_POSTGRES_URL (or the default); skips without a server, fails in CI."""
    url = os.environ.get("CESAR_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    try:
        with _admin_connection(url):
            pass
    except psycopg.Error as exc:
        message = f"PostgreSQL at {make_url(url).render_as_string(hide_password=True)} unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A freshly migrated PostgreSQL schema of its own, dropped afterwards.

    A schema rather than a database: ``CREATE DATABASE`` costs over a second on this server, a schema plus
    migrating it a fifth of that. The URL selects it for every connection (``search_path``) and
    names the connections (``application_name``) so teardown can end the ones a test left open.
    """
    name = f"cesar_t_{uuid.uuid4().hex[:16]}"
    url = (
        normalize_url(postgres_server_url)
        .update_query_dict({"options": f"-csearch_path={name}", "application_name": name})
        .render_as_string(hide_password=False)
    )
    with _admin_connection(postgres_server_url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        migrate(url)
        yield url
    finally:
        _drop_schema(postgres_server_url, name)


# --- either backend ------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on a fresh SQLite file and on a fresh PostgreSQL database."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[JobStore]:
    job_store = JobStore.from_url(db_url)
    yield job_store
    job_store.close()


# --- helpers -------------------------------------------------------------------------------------
def _drop_schema(server_url: str, name: str) -> None:
    with _admin_connection(server_url) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _admin_connection(server_url: str) -> psycopg.Connection[tuple[object, ...]]:
    conninfo = normalize_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
