"""Schema helpers for tests: each opens an engine of its own for one step, as a one-off command would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from sqlalchemy import Engine

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
