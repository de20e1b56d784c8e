"""Who is calling: the API key a request carries, what that key may see, and its request rate.

The keys live in the database (:mod:`cesar_common.db.api_keys`); every API process keeps them in a
:class:`KeyRing`, read again once it is :data:`FRESH_SECONDS` old when a request needs it. So a request costs
no database read for its key, and a key revoked or expired (by the database's clock, read with the keys) is
refused by every process within a second: :data:`FRESH_SECONDS` plus one read. Open event streams and live
sessions ask :meth:`KeyRing.still_valid` every :data:`WATCH_SECONDS` and close when it says no.

``CESAR_API_KEY`` stays the server's own admin key (its jobs' owner is ``""``). A server with neither it nor
any key ever made in its database is open: every request is the server's own. Once a key was made, the
server stays closed (revoking every key locks everyone out but ``CESAR_API_KEY``).

What a key owns never changes (a job's, a person's owner is set when made), so the owners of the ids a
request names are cached too (:class:`Owners`): a client polling its job pays one read for the owner, once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection

from cesar_api.reads import run_read
from cesar_common.db import api_keys
from cesar_common.db.records import KeyRecord
from cesar_common.db.store import JobStore
from cesar_common.errors import LimitExceededError
from cesar_common.settings import Settings
from cesar_common.text import plain_number

__all__ = [
    "ADMIN_ONLY",
    "FRESH_SECONDS",
    "MISS_SECONDS",
    "SERVER_KEY",
    "WATCH_SECONDS",
    "Caller",
    "KeyRing",
    "Owners",
    "caller_of",
    "set_caller",
]

#: the handler ``opt`` flag of routes only an admin key may use (403 for a user key)
ADMIN_ONLY = "admin_only"
#: how old the key ring may be before a request reads the keys again
FRESH_SECONDS = 0.5
#: a request with a key the ring does not know (one just made) waits for the next read, at most one per
#: this many seconds however many such requests come
MISS_SECONDS = 0.1
#: how often an open stream or live session asks whether its key still holds
WATCH_SECONDS = 0.25
#: ids whose owner a process remembers
OWNERS_KEPT = 50_000
SESSION_SECONDS = 12 * 3600
_SCOPE_KEY = "cesar.caller"


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's key: a key of the database, or None for the server's own ``CESAR_API_KEY`` (and for
    every request on a server without keys), which is an admin."""

    key: KeyRecord | None

    @property
    def owner(self) -> str:
        """What the jobs and people this caller makes are owned by ("" for the server's own key)."""
        return "" if self.key is None else self.key.id

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.admin

    @property
    def name(self) -> str:
        return "admin" if self.key is None else self.key.name

    @property
    def visible_owner(self) -> str | None:
        """The owner this caller's listings are limited to (None: an admin sees every owner's)."""
        return None if self.admin else self.owner

    def sees(self, owner: str) -> bool:
        """Whether this caller may see what ``owner`` owns: its own, or anything for an admin."""
        return self.admin or owner == self.owner


#: the caller of every request on a server without keys, and of those made with CESAR_API_KEY
SERVER_KEY = Caller(None)


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """The caller the guard found for this request (the server's own key where no guard ran)."""
    caller = connection.scope.get(_SCOPE_KEY)
    return caller if isinstance(caller, Caller) else SERVER_KEY


def set_caller(connection: ASGIConnection[Any, Any, Any, Any], caller: Caller) -> None:
    connection.scope[_SCOPE_KEY] = caller  # type: ignore[literal-required]


class _Bucket:
    """A token bucket: ``rate`` requests a second, as many at once."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, rate: float) -> None:
        self.tokens = max(rate, 1.0)
        self.stamp = time.monotonic()

    def take(self, rate: float) -> float:
        """0 when a request may go now, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(max(rate, 1.0), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class KeyRing:
    """This process's copy of the keys, and each key's request rate. One per app."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self._store = store
        secret = settings.api_key
        self._server_key = None if secret is None else secret.get_secret_value()
        self._by_prefix: dict[str, KeyRecord] = {}
        self._keys_in_use = False
        self._read_at = -math.inf
        self._lock = asyncio.Lock()
        self._buckets: dict[str, _Bucket] = {}

    @property
    def server_key(self) -> str | None:
        return self._server_key

    async def fresh(self) -> None:
        """Read the keys again if this copy is older than :data:`FRESH_SECONDS`."""
        if time.monotonic() - self._read_at < FRESH_SECONDS:
            return
        async with self._lock:
            if time.monotonic() - self._read_at < FRESH_SECONDS:
                return  # another request read them meanwhile
            await self._read()

    async def read_since(self, moment: float) -> None:
        """Make sure the keys were read after ``moment`` (``time.monotonic()``): a key made before a request
        arrived works for it. One read per :data:`MISS_SECONDS` at most, however many ask."""
        while self._read_at < moment:
            wait = self._read_at + MISS_SECONDS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._lock:
                if self._read_at < moment:
                    await self._read()

    async def _read(self) -> None:
        started = time.monotonic()
        keys = await run_read(self._store, self._store.list_keys)
        self._by_prefix = {key.prefix: key for key in keys if key.active}
        # any key ever made, revoked or expired too: revoking the last key must lock the server, not
        # open it to everyone
        self._keys_in_use = bool(keys)
        self._read_at = started

    @property
    def open(self) -> bool:
        """No key at all: every request is the server's own (call :meth:`fresh` first)."""
        return self._server_key is None and not self._keys_in_use

    def unknown_prefix(self, key: str) -> bool:
        """Whether ``key`` looks like one of Cesar's keys this copy has never seen (one made since)."""
        prefix = api_keys.key_prefix(key)
        return prefix is not None and prefix not in self._by_prefix

    def identify(self, key: str) -> Caller | None:
        """The caller ``key`` names, or None for a wrong, revoked or expired key (call :meth:`fresh`
        first). Compared in constant time either way."""
        if self._server_key is not None and hmac.compare_digest(key.encode(), self._server_key.encode()):
            return SERVER_KEY
        prefix = api_keys.key_prefix(key)
        record = None if prefix is None else self._by_prefix.get(prefix)
        if record is None or not api_keys.matches(key, record):
            return None
        return Caller(record)

    def still_valid(self, caller: Caller) -> bool:
        """Whether ``caller``'s key still holds (call :meth:`fresh` first): neither revoked nor expired."""
        if caller.key is None:
            return True
        return caller.key.prefix in self._by_prefix

    def throttle(self, caller: Caller) -> None:
        """LimitExceededError (429) when ``caller`` sends faster than its ``requests_per_second``."""
        rate = None if caller.key is None else caller.key.requests_per_second
        if rate is None or caller.key is None:
            return
        bucket = self._buckets.get(caller.key.id)
        if bucket is None:
            bucket = self._buckets[caller.key.id] = _Bucket(rate)
        wait = bucket.take(rate)
        if wait > 0:
            raise LimitExceededError(
                f"key {caller.key.name!r} sends more than {rate:g} requests per second, its limit "
                "(requests_per_second)",
                limit="requests_per_second",
                value=rate,
                retry_after_seconds=max(math.ceil(wait), 1),
            )

    # --- session cookies (browsers' EventSource cannot send a header) ----------------------------
    def session_token(self, caller: Caller, *, now: float | None = None) -> str | None:
        """A cookie value that stands for ``caller`` for :data:`SESSION_SECONDS` (None on an open
        server: nothing to stand for)."""
        secret = self._secret(caller)
        if secret is None:
            return None
        expiry = int((now if now is not None else time.time()) + SESSION_SECONDS)
        prefix = "" if caller.key is None else caller.key.prefix
        return f"{expiry}.{prefix}.{_sign(secret, prefix, expiry)}"

    def session_caller(self, token: str, *, now: float | None = None) -> Caller | None:
        """The caller a cookie stands for, while its key holds and the cookie has not expired."""
        text, _, rest = token.partition(".")
        prefix, _, signature = rest.partition(".")
        expiry = plain_number(text)
        if expiry is None or expiry < (now if now is not None else time.time()):
            return None
        caller = SERVER_KEY if prefix == "" else self._by_prefix_caller(prefix)
        secret = None if caller is None else self._secret(caller)
        if caller is None or secret is None:
            return None
        return (
            caller
            if hmac.compare_digest(signature.encode(), _sign(secret, prefix, expiry).encode())
            else None
        )

    def _by_prefix_caller(self, prefix: str) -> Caller | None:
        record = self._by_prefix.get(prefix)
        return None if record is None else Caller(record)

    def _secret(self, caller: Caller) -> str | None:
        # a database key's hash is secret enough to sign with: whoever reads it reads every job already
        return self._server_key if caller.key is None else caller.key.key_hash


def _sign(secret: str, prefix: str, expiry: int) -> str:
    message = f"cesar-session.{prefix}.{expiry}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class Owners:
    """The owners of ids (jobs, people) this process has looked up: an owner never changes, so a hit is
    as good as a read."""

    def __init__(self, read: Callable[[str], str | None], kept: int = OWNERS_KEPT) -> None:
        self._read = read
        self._kept = kept
        self._owners: OrderedDict[str, str] = OrderedDict()

    def owner(self, item_id: str) -> str | None:
        """``item_id``'s owner (None when there is no such thing)."""
        owner = self._owners.get(item_id)
        if owner is not None:
            self._owners.move_to_end(item_id)
            return owner
        owner = self._read(item_id)
        if owner is not None:
            self._owners[item_id] = owner
            if len(self._owners) > self._kept:
                self._owners.popitem(last=False)
        return owner
