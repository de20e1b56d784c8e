"""Schema helpers for tests: each opens an engine of its own for one step, as a one-off command would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import Engine, Table, select, update

from cesar_common.db.connect import foreign_keys_off, open_engine
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
