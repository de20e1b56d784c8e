"""What `cesar db upgrade` and `cesar db current` do."""

from __future__ import annotations

from cesar_common.db.connect import open_engine, safe_url
from cesar_common.db.migrate import UPGRADE_HINT, head_revision, schema_state, upgrade_to_head
from cesar_common.settings import get_settings

__all__ = ["describe_database", "upgrade_database"]


def upgrade_database(database_url: str | None = None) -> str:
    """Upgrade the database (``database_url``, else ``CESAR_DATABASE_URL``) to head; what to print."""
    url = get_settings(database_url=database_url).database_url
    engine = open_engine(url, pooled=False)
    try:
        before = schema_state(engine)
        if before.is_newer:
            return (
                f"{safe_url(url)} is at revision {before.current}, newer than this version of Cesar "
                f"(head {before.head}): upgrade Cesar"
            )
        upgrade_to_head(engine)
    finally:
        engine.dispose()
    if before.is_current:
        return f"{safe_url(url)} is already at revision {before.head} (head)"
    start = before.current or "an empty database"
    return f"upgraded {safe_url(url)} from {start} to revision {head_revision()} (head)"


def describe_database(database_url: str | None = None) -> tuple[str, bool]:
    """One line on where the database stands, and whether it is at head."""
    url = get_settings(database_url=database_url).database_url
    engine = open_engine(url, pooled=False)
    try:
        state = schema_state(engine)
    finally:
        engine.dispose()
    where = safe_url(url)
    if state.is_current:
        return f"{where}: revision {state.current} (head)", True
    if state.is_newer:
        return f"{where}: revision {state.current}, newer than this Cesar (head {state.head})", False
    current = "empty (no schema yet)" if state.current is None else f"revision {state.current}"
    return f"{where}: {current}, behind head {state.head}: {UPGRADE_HINT}", False
