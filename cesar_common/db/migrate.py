"""Running Alembic from code, from any working directory, and checking a database is at head.

``cesar serve`` upgrades a SQLite database itself (:func:`upgrade_to_head`, serialised across processes with a
file lock); a standalone API or worker only checks (:func:`ensure_schema_current`) and refuses to start.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from filelock import Timeout as LockTimeout
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

import cesar_common
from cesar_common.db.engine import (
    create_cesar_engine,
    error_reason,
    normalize_url,
    read_only,
    safe_url,
    sqlite_path,
)
from cesar_common.errors import DatabaseError, SchemaOutdatedError

#: the Alembic scripts, next to the package (the project is installed editable)
MIGRATIONS_DIR = Path(cesar_common.__file__).resolve().parents[1] / "migrations"
MIGRATE_LOCK_TIMEOUT_S = 300.0

OUTDATED_MESSAGE = (
    "the database schema is behind this version of Cesar: run `alembic upgrade head` "
    "(or start `cesar serve`, which upgrades SQLite itself)"
)


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config for Cesar's migrations; ``url`` wins over ``CESAR_DATABASE_URL`` when given."""
    config = Config()
    # configparser interpolation: a literal % must be doubled
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.attributes["database_url"] = _url_string(url)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


def upgrade_to_head(url: str | URL) -> None:
    """Migrate ``url`` to head. For SQLite, one process at a time (lock file beside the database)."""
    path = sqlite_path(url)
    try:
        if path is None:
            command.upgrade(alembic_config(url), "head")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.migrate.lock", timeout=MIGRATE_LOCK_TIMEOUT_S):
            command.upgrade(alembic_config(url), "head")
    except LockTimeout as exc:
        raise DatabaseError(
            f"another process has been migrating {path} for over {MIGRATE_LOCK_TIMEOUT_S:.0f} s"
        ) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"could not migrate the job database {safe_url(url)}: {error_reason(exc)}"
        ) from exc


def current_revision(url: str | URL) -> str | None:
    """The revision ``url`` is at (None for an empty database, or a SQLite file that does not exist)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    engine = create_cesar_engine(url, pooled=False)
    try:
        return _revision_of(engine)
    finally:
        engine.dispose()


def ensure_schema_current(engine_or_url: Engine | str | URL) -> None:
    """Raise SchemaOutdatedError unless the database is at head; DatabaseError if it cannot be reached."""
    if isinstance(engine_or_url, Engine):
        current = _revision_of(engine_or_url)
    else:
        current = current_revision(engine_or_url)
    head = head_revision()
    if current == head:
        return
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaOutdatedError(
            f"the database schema (revision {current}) is newer than this version of Cesar (head {head}): "
            "upgrade Cesar"
        )
    raise SchemaOutdatedError(OUTDATED_MESSAGE, extra={"current": current, "head": head})


def _revision_of(engine: Engine) -> str | None:
    try:
        with read_only(engine).connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot reach the job database {safe_url(engine.url)}: {error_reason(exc)}"
        ) from exc


def _url_string(url: str | URL) -> str:
    return normalize_url(url).render_as_string(hide_password=False)
