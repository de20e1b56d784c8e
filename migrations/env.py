"""Alembic environment for Cesar's job database.

``cesar db upgrade`` (``cesar_common.db.migrate``) hands over an open connection in
``config.attributes["connection"]``. Run as ``alembic upgrade head`` from a checkout, the URL is
``sqlalchemy.url`` when the Alembic config sets one, else ``CESAR_DATABASE_URL`` through Settings, the same
setting the app reads.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, text

from cesar_common.db.connect import foreign_keys_off, open_engine
from cesar_common.db.tables import Base
from cesar_common.settings import get_settings

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can ALTER little: batch mode rebuilds tables instead
        render_as_batch=is_sqlite,
        # our engine emits BEGIN itself, so SQLite DDL is transactional too: a failed migration leaves nothing
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if is_sqlite:
            _check_foreign_keys(connection)


def _check_foreign_keys(connection: Connection) -> None:
    # Batch mode copies tables with foreign keys off; make sure the copies still hold together.
    broken = connection.execute(text("PRAGMA foreign_key_check")).all()
    if broken:
        raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        run_migrations(given)
        return
    engine = open_engine(database_url(), pooled=False)
    try:
        with engine.connect() as connection, foreign_keys_off(connection):
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
