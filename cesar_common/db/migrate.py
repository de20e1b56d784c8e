"""Running Alembic from code, from any working directory and from an installed wheel.

The migration scripts live in the repository's ``migrations/`` (where ``alembic upgrade head`` finds them
through ``alembic.ini``) and are installed as the package ``cesar_common.db.migrations``: the same files, so
``cesar db upgrade`` works wherever Cesar is installed. ``cesar serve`` upgrades the database itself
(:func:`upgrade_to_head`, serialised across processes with a file lock for SQLite); a standalone API or worker
only checks (:func:`ensure_schema_current`) and refuses to start.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from filelock import Timeout as LockTimeout
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cesar_common.db.connect import error_reason, foreign_keys_off, read_only, safe_url, sqlite_path
from cesar_common.errors import DatabaseError, SchemaOutdatedError

__all__ = [
    "OUTDATED_MESSAGE",
    "UPGRADE_HINT",
    "alembic_config",
    "ensure_schema_current",
    "head_revision",
    "schema_state",
    "upgrade_to_head",
]

MIGRATIONS_PACKAGE = "cesar_common.db.migrations"
MIGRATE_LOCK_TIMEOUT_S = 300.0

UPGRADE_HINT = "run `cesar db upgrade` (or start `cesar serve`, which upgrades the database itself)"
OUTDATED_MESSAGE = f"the database schema is behind this version of Cesar: {UPGRADE_HINT}"


@cache
def migrations_dir() -> Path:
    """The directory of the Alembic scripts: the checkout's ``migrations/`` or the installed package."""
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the migration scripts ({MIGRATIONS_PACKAGE}) are missing: reinstall Cesar")
    return Path(next(iter(spec.submodule_search_locations)))


def alembic_config() -> Config:
    """An Alembic config for Cesar's migrations, independent of the working directory."""
    config = Config()
    # configparser interpolation: a literal % must be doubled
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    return config


def head_revision() -> str:
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found in {migrations_dir()}")
    return head


def upgrade_to_head(engine: Engine) -> None:
    """Migrate the database of ``engine`` to head. For SQLite, one process at a time (a lock file beside the
    database), with foreign keys off while tables are rebuilt."""
    path = sqlite_path(engine.url)
    try:
        with _migration_lock(path), engine.connect() as connection, foreign_keys_off(connection):
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
    except LockTimeout as exc:
        raise DatabaseError(
            f"another process has been migrating {path} for over {MIGRATE_LOCK_TIMEOUT_S:.0f} s"
        ) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"could not migrate the job database {safe_url(engine.url)}: {error_reason(exc)}"
        ) from exc


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None  # None: an empty database
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    @property
    def is_newer(self) -> bool:
        """The database was migrated by a newer Cesar (a revision this version does not know)."""
        return self.current is not None and self.current not in _known_revisions()


def schema_state(engine: Engine) -> SchemaState:
    """Where the database of ``engine`` stands against this version's migrations."""
    path = sqlite_path(engine.url)
    if path is not None and not path.exists():
        return SchemaState(None, head_revision())
    try:
        with read_only(engine).connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot reach the job database {safe_url(engine.url)}: {error_reason(exc)}"
        ) from exc
    return SchemaState(current, head_revision())


def ensure_schema_current(engine: Engine) -> None:
    """Raise SchemaOutdatedError unless the database is at head; DatabaseError if it cannot be reached."""
    state = schema_state(engine)
    if state.is_current:
        return
    if state.is_newer:
        raise SchemaOutdatedError(
            f"the database schema (revision {state.current}) is newer than this version of Cesar "
            f"(head {state.head}): upgrade Cesar"
        )
    raise SchemaOutdatedError(OUTDATED_MESSAGE, extra={"current": state.current, "head": state.head})


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


@contextlib.contextmanager
def _migration_lock(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.migrate.lock", timeout=MIGRATE_LOCK_TIMEOUT_S):
        yield
