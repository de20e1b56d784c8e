"""Alembic owns the schema: head matches the models on both backends, and the migrations run both ways."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from dbtools import check_schema, downgrade, engine_for, migrate, revision
from filelock import FileLock
from psycopg import sql
from sqlalchemy import inspect, text

from cesar_common.db.connect import normalize_url, open_engine
from cesar_common.db.migrate import OUTDATED_MESSAGE, ensure_schema_current, head_revision, upgrade_to_head
from cesar_common.db.tables import Base
from cesar_common.errors import DatabaseError, SchemaOutdatedError

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "jobs",
    "job_audio",
    "job_segments",
    "job_parts",
    "job_part_audio",
    "workers",
    "webhook_deliveries",
    "metric_totals",
    "live_sessions",
    "speakers",
    "voice_prints",
    "api_keys",
    "owner_turns",
    "chores",
    "job_voices",
    "transcript_revisions",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server_url = str(request.getfixturevalue("postgres_server_url"))
    name = f"cesar_m_{uuid.uuid4().hex[:16]}"
    conninfo = normalize_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = normalize_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def schema_differences(url: str) -> list[object]:
    with engine_for(url) as engine, engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def table_names(url: str) -> set[str]:
    with engine_for(url) as engine:
        return set(inspect(engine).get_table_names())


def test_upgrade_matches_the_models_and_downgrade_removes_everything(empty_url: str) -> None:
    assert revision(empty_url) is None
    migrate(empty_url)
    assert revision(empty_url) == head_revision()
    assert table_names(empty_url) == TABLES | {"alembic_version"}
    assert schema_differences(empty_url) == []

    downgrade(empty_url, "base")
    assert table_names(empty_url) <= {"alembic_version"}
    assert revision(empty_url) is None

    migrate(empty_url)
    assert schema_differences(empty_url) == []
    check_schema(empty_url)


def test_a_database_behind_head_is_refused_with_advice(db_url: str) -> None:
    check_schema(db_url)
    downgrade(db_url, "base")
    with pytest.raises(SchemaOutdatedError) as outdated:
        check_schema(db_url)
    assert str(outdated.value) == OUTDATED_MESSAGE
    assert "cesar db upgrade" in str(outdated.value)
    migrate(db_url)
    check_schema(db_url)

    engine = open_engine(db_url, pooled=False)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
        with pytest.raises(SchemaOutdatedError, match="newer than this version"):
            ensure_schema_current(engine)
    finally:
        engine.dispose()


def test_a_missing_sqlite_file_is_behind_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'not-yet' / 'cesar.db'}"
    with pytest.raises(SchemaOutdatedError):
        check_schema(url)
    assert not (tmp_path / "not-yet" / "cesar.db").exists()  # checking created nothing


def test_an_unreachable_database_is_a_database_error() -> None:
    with pytest.raises(DatabaseError) as raised:
        check_schema("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert raised.value.__cause__ is not None


def test_alembic_command_line_migrates_the_configured_database(tmp_path: Path) -> None:
    """The deploy step, run from another directory: the URL comes from CESAR_DATABASE_URL."""
    database = tmp_path / "data" / "cesar.db"  # its directory does not exist yet
    env = {**os.environ, "CESAR_DATABASE_URL": f"sqlite:///{database}"}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "upgrade", "head"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert revision(f"sqlite:///{database}") == head_revision()


def test_sqlite_upgrades_wait_for_the_migration_lock(tmp_path: Path) -> None:
    """While another process holds ``<db>.migrate.lock``, an upgrade waits; then it runs."""
    database = tmp_path / "shared.db"
    url = f"sqlite:///{database}"
    engine = open_engine(url)
    finished = threading.Event()
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            upgrade_to_head(engine)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            finished.set()

    with FileLock(f"{database}.migrate.lock"):
        thread = threading.Thread(target=upgrade)
        thread.start()
        assert not finished.wait(0.5), "the upgrade ran while the lock was held"
        assert revision(url) is None
    assert finished.wait(60)
    thread.join()
    engine.dispose()
    assert errors == []
    assert revision(url) == head_revision()
