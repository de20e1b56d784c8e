"""What `cesar jobs purge` does: delete finished jobs older than a duration, by hand.

The Click command in ``cesar.cli.jobs`` only parses options and calls :func:`purge_jobs`. The same
store call runs in the workers' sweep when ``CESAR_RETENTION_DAYS`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cesar_common.errors import InvalidInputError

__all__ = ["parse_duration", "purge_jobs", "removed_message"]

#: seconds per duration unit: 90s, 90m, 12h, 7d, 2w
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE | re.ASCII)  # ASCII digits only


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90m``, ``12h``, ``7d``, ``2w`` (InvalidInputError otherwise)."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidInputError(
            f"invalid duration {text!r}: use a number and a unit, such as 90m, 12h, 7d or 2w"
        )
    return float(match.group(1)) * UNITS[match.group(2).lower()]


def purge_jobs(database_url: str, *, older_than: str, statuses: Sequence[str] = ()) -> int:
    """Delete jobs that finished more than ``older_than`` ago (only those with ``statuses``, when given)
    with their audio, results and webhook deliveries; returns how many. Queued and processing jobs are
    never touched."""
    from cesar_common.db.migrate import ensure_schema_current
    from cesar_common.db.store import JobStore

    seconds = parse_duration(older_than)
    store = JobStore.from_url(database_url)
    try:
        ensure_schema_current(store.engine)
        return store.purge_finished_jobs(older_than_seconds=seconds, statuses=statuses or None)
    finally:
        store.close()


def removed_message(count: int) -> str:
    return f"removed {count} job{'' if count == 1 else 's'}"
