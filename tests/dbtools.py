"""Schema helpers for tests: each opens an engine of its own for one step, as a one-off command would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from alembic import command
from psycopg import sql
from sqlalchemy import Engine, Table, select, update

from cesar_common.db.connect import foreign_keys_off, normalize_url, open_engine
from cesar_common.db.migrate import alembic_config, ensure_schema_current, schema_state, upgrade_to_head


@contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    engine = open_engine(url, pooled=False)
    try:
        yield engine
    finally:
        engine.dispose()


def migrate(url: str) -> None:
    """Bring the database at ``url`` to head (as ``cesar db upgrade`` does)."""
    with engine_for(url) as engine:
        upgrade_to_head(engine)


@contextmanager
def migrated_schema(server_url: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL schema of its own on ``server_url``, migrated to head, selected through ``search_path``
    on every connection (its URL); dropped afterwards, with whatever is still connected to it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    server = normalize_url(server_url)
    url = server.update_query_dict(
        {"options": f"-csearch_path={name}", "application_name": name}
    ).render_as_string(hide_password=False)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def downgrade(url: str, revision: str) -> None:
    with engine_for(url) as engine, engine.connect() as connection, foreign_keys_off(connection):
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


def revision(url: str) -> str | None:
    with engine_for(url) as engine:
        return schema_state(engine).current


def check_schema(url: str) -> None:
    with engine_for(url) as engine:
        ensure_schema_current(engine)


def utcnow() -> datetime:
    """This host's clock, for tests that write timestamps directly (the database's clock is the same one)."""
    return datetime.now(UTC)


def age(engine: Engine, table: Table, column: str, seconds: float, **where: object) -> int:
    """Move ``column`` of the rows matching ``where`` ``seconds`` into the past, as if that much time went by
    on the database's clock (leases expire, deliveries fall due, jobs grow old). Returns the rows moved."""
    conditions = [table.c[name] == value for name, value in where.items()]
    with engine.begin() as conn:
        rows = conn.execute(select(table.c.id, table.c[column]).where(*conditions)).all()
        for row_id, value in rows:
            if value is not None:
                moved = value - timedelta(seconds=seconds)
                conn.execute(update(table).where(table.c.id == row_id).values({column: moved}))
    return len(rows)
