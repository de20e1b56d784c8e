"""API keys and their quotas: the ``api_keys`` table's SQL, and the check that queues a job within its key's
limits.

A key is ``cesar_<prefix>_<secret>``: the prefix (8 hex digits, public, shown by ``cesar keys list``) finds
the row, a keyed BLAKE2b of the whole key proves the rest. Keys are 256-bit random strings, so a fast keyed
hash is enough (nothing to guess from it); the key itself is shown once, when made, and never stored.

The quotas are checked in the transaction that queues the job (:func:`check_quota`): on PostgreSQL it first
locks the key's row, so two submits of one key queue one after the other and cannot both pass on the same
count; SQLite's writes are one at a time already (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, or_, select, update

from cesar_common.db import state
from cesar_common.db.clock import db_now
from cesar_common.db.records import JobStatus, KeyRecord, KeyUsage
from cesar_common.db.tables import api_keys, jobs, owner_turns
from cesar_common.errors import ConflictError, InvalidInputError, LimitExceededError, NotFoundError

__all__ = [
    "DAY_SECONDS",
    "LIMITS",
    "RESERVED_NAMES",
    "cancel_queued",
    "check_quota",
    "create_key",
    "find_key",
    "hash_key",
    "key_prefix",
    "list_keys",
    "matches",
    "revoke_key",
    "update_key",
    "usage",
]

#: the window the audio quota counts over (a rolling day, by the database's clock)
DAY_SECONDS = 24 * 3600
#: names a key cannot have: the routes and filters use them for the caller's own key and the server's
RESERVED_NAMES = ("me", "admin")
#: what ``cesar keys update`` and ``PATCH /keys/{id}`` may change
LIMITS = ("max_queued", "audio_hours_per_day", "requests_per_second", "priority", "expires_at", "admin")

_HASH_KEY = b"cesar-api-key/1"
_KEY = re.compile(r"cesar_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}")
_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)


def hash_key(key: str) -> str:
    return hashlib.blake2b(key.encode(), key=_HASH_KEY, digest_size=32).hexdigest()


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key (None: not one of Cesar's keys)."""
    found = _KEY.fullmatch(key)
    return None if found is None else found.group(1)


def matches(key: str, record: KeyRecord) -> bool:
    """Whether ``key`` is the one ``record`` was made for, compared in constant time."""
    return hmac.compare_digest(hash_key(key), record.key_hash)


def _active() -> Any:
    return and_(
        api_keys.c.revoked_at.is_(None),
        or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > db_now()),
    )


_COLUMNS = (*api_keys.c, _active().label("active"))


def _record(row: Row[Any]) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        key_hash=row.key_hash,
        admin=bool(row.admin),
        priority=int(row.priority),
        max_queued=row.max_queued,
        audio_hours_per_day=row.audio_hours_per_day,
        requests_per_second=row.requests_per_second,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
        active=bool(row.active),
    )


def list_keys(conn: Connection) -> list[KeyRecord]:
    """Every key, revoked and expired ones too (``active`` tells), oldest first."""
    rows = conn.execute(select(*_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id))
    return [_record(row) for row in rows]


def find_key(conn: Connection, name_or_id: str) -> KeyRecord:
    """A key by its name (any case), id or prefix; NotFoundError when none."""
    row = conn.execute(
        select(*_COLUMNS).where(
            or_(
                api_keys.c.name_key == name_or_id.casefold(),
                api_keys.c.id == name_or_id,
                api_keys.c.prefix == name_or_id,
            )
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no API key named {name_or_id!r}", extra={"key": name_or_id})
    return _record(row)


def create_key(conn: Connection, name: str, **limits: Any) -> tuple[KeyRecord, str]:
    """A new key named ``name`` with ``limits`` (keyword arguments named as :data:`LIMITS`): its record and
    the key itself, which exists only in this return value."""
    name = _check_name(name)
    taken = conn.execute(select(api_keys.c.id).where(api_keys.c.name_key == name.casefold())).first()
    if taken is not None:
        raise ConflictError(f"an API key named {name!r} exists already: choose another name")
    prefix = secrets.token_hex(4)
    key = f"cesar_{prefix}_{secrets.token_urlsafe(32)}"
    key_id = str(uuid.uuid4())
    values = {"admin": False, "priority": 0, **_checked(limits)}
    conn.execute(
        insert(api_keys).values(
            id=key_id,
            name=name,
            name_key=name.casefold(),
            prefix=prefix,
            key_hash=hash_key(key),
            created_at=db_now(),
            updated_at=db_now(),
            **values,
        )
    )
    # the key's turn in the queue, which each claim of its work moves (cesar_common.db.queue)
    conn.execute(insert(owner_turns).values(owner=key_id, claimed_at=None))
    return find_key(conn, key_id), key


def update_key(conn: Connection, name_or_id: str, changes: dict[str, Any]) -> KeyRecord:
    """Change a key's limits (``None`` lifts one); the other values stay."""
    record = find_key(conn, name_or_id)
    values = _checked(changes)
    if values:
        conn.execute(update(api_keys).where(api_keys.c.id == record.id).values(updated_at=db_now(), **values))
    return find_key(conn, record.id)


def revoke_key(
    conn: Connection, name_or_id: str, *, cancel_jobs: bool, keep_audio: bool
) -> tuple[KeyRecord, int]:
    """Revoke a key (again is harmless): refused by every API process from then on. With ``cancel_jobs``
    its queued jobs end ``cancelled`` (running ones are asked to stop); else they run as queued. The key
    and the number of jobs cancelled."""
    record = find_key(conn, name_or_id)
    conn.execute(
        update(api_keys)
        .where(api_keys.c.id == record.id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=db_now(), updated_at=db_now())
    )
    cancelled = cancel_queued(conn, record.id, keep_audio=keep_audio) if cancel_jobs else 0
    return find_key(conn, record.id), cancelled


def cancel_queued(conn: Connection, owner: str, *, keep_audio: bool) -> int:
    """End ``owner``'s queued jobs ``cancelled`` and ask its running ones to stop; how many in all."""
    ended = state.end_jobs(
        conn,
        and_(jobs.c.owner == owner, jobs.c.status == JobStatus.QUEUED.value),
        state.final_values(JobStatus.CANCELLED),
        keep_audio=keep_audio,
    )
    asked = state.ask_to_stop(conn, and_(jobs.c.owner == owner, jobs.c.status == JobStatus.PROCESSING.value))
    return len(ended) + asked


def usage(conn: Connection, owner: str) -> KeyUsage:
    """What ``owner``'s quotas count now."""
    queued = conn.execute(
        select(func.count()).where(jobs.c.owner == owner, jobs.c.status.in_(_UNFINISHED))
    ).scalar_one()
    audio = conn.execute(
        select(func.coalesce(func.sum(func.coalesce(jobs.c.audio_seconds, jobs.c.duration, 0.0)), 0.0)).where(
            jobs.c.owner == owner,
            jobs.c.status != JobStatus.PENDING.value,
            jobs.c.created_at > db_now(-DAY_SECONDS),
        )
    ).scalar_one()
    return KeyUsage(queued=int(queued), audio_seconds_today=float(audio))


def check_quota(conn: Connection, key: KeyRecord, adding_seconds: float | None) -> None:
    """LimitExceededError (429) when one more job of ``adding_seconds`` of audio would take ``key`` past
    its limits. Call it in the transaction that queues the job."""
    if conn.dialect.name == "postgresql":
        # submits of one key queue here, one at a time, until each one's transaction ends
        conn.execute(select(api_keys.c.id).where(api_keys.c.id == key.id).with_for_update())
    used = usage(conn, key.id)
    if key.max_queued is not None and used.queued >= key.max_queued:
        raise LimitExceededError(
            f"key {key.name!r} has {used.queued} jobs queued or running, its limit (max_queued = "
            f"{key.max_queued}): send more once some have finished",
            limit="max_queued",
            value=key.max_queued,
        )
    if key.audio_hours_per_day is None:
        return
    allowed = key.audio_hours_per_day * 3600
    if used.audio_seconds_today + (adding_seconds or 0.0) <= allowed:
        return
    raise LimitExceededError(
        f"key {key.name!r} has submitted {used.audio_seconds_today / 3600:.2f} hours of audio in the last 24 "
        f"hours; {(adding_seconds or 0.0) / 3600:.2f} more would pass its limit (audio_hours_per_day = "
        f"{key.audio_hours_per_day:g})",
        limit="audio_hours_per_day",
        value=key.audio_hours_per_day,
        retry_after_seconds=_until_room(
            conn, key.id, used.audio_seconds_today + (adding_seconds or 0.0) - allowed
        ),
    )


def _until_room(conn: Connection, owner: str, excess: float) -> int | None:
    """Seconds until enough of ``owner``'s audio leaves the day's window to make room for ``excess`` more
    (None when even a day will not: the job alone is longer than the limit)."""
    rows = conn.execute(
        select(jobs.c.created_at, func.coalesce(jobs.c.audio_seconds, jobs.c.duration, 0.0), db_now())
        .where(
            jobs.c.owner == owner,
            jobs.c.status != JobStatus.PENDING.value,
            jobs.c.created_at > db_now(-DAY_SECONDS),
        )
        .order_by(jobs.c.created_at)
    ).all()
    freed = 0.0
    for created_at, seconds, now in rows:
        freed += float(seconds)
        if freed >= excess:
            return max(math.ceil(DAY_SECONDS - float((now - created_at).total_seconds())), 1)
    return None


def _check_name(name: str) -> str:
    name = name.strip()
    if name.casefold() in RESERVED_NAMES:
        raise InvalidInputError(
            f"{name!r} cannot name a key: `me` is the caller's own in /keys/me and `admin` the server's own "
            "key in ?owner=",
            extra={"field": "name"},
        )
    if not _NAME.fullmatch(name):
        raise InvalidInputError(
            "a key's name is 1 to 100 letters, digits, spaces or ._@- and starts with a letter or digit",
            extra={"field": "name"},
        )
    return name


def _checked(limits: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise InvalidInputError(f"unknown key settings: {', '.join(unknown)}")
    for name in ("max_queued", "audio_hours_per_day", "requests_per_second"):
        value = limits.get(name)
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise InvalidInputError(
                f"{name} must be more than 0 (leave it out for no limit)", extra={"field": name}
            )
    expires_at = limits.get("expires_at")
    if expires_at is not None and (not isinstance(expires_at, datetime) or expires_at.tzinfo is None):
        raise InvalidInputError(
            "expires_at must be a date and time with its zone", extra={"field": "expires_at"}
        )
    if "priority" in limits and limits["priority"] is None:
        limits = {**limits, "priority": 0}
    if "admin" in limits and limits["admin"] is None:
        limits = {**limits, "admin": False}
    return limits
