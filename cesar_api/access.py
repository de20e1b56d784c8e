"""Who is calling: the API key a request carries, what it may see, and its request rate.

(Being written: the guard that resolves a request's key lands here. Routes read the caller with
:func:`caller_of`; a route only an admin key may use says so with ``opt={ADMIN_ONLY: True}``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection

from cesar_common.db.records import KeyRecord

__all__ = ["ADMIN_ONLY", "SERVER_KEY", "Caller", "caller_of"]

#: the handler ``opt`` flag of routes only an admin key may use (403 for a user key)
ADMIN_ONLY = "admin_only"
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

    def sees(self, owner: str) -> bool:
        """Whether this caller may see what ``owner`` owns: its own, or anything for an admin."""
        return self.admin or owner == self.owner


#: the caller of every request on a server without keys, and of those made with CESAR_API_KEY
SERVER_KEY = Caller(None)


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """The caller the guard found for this request (the server's own key where no guard ran)."""
    caller = connection.scope.get(_SCOPE_KEY)  # type: ignore[typeddict-item]
    return caller if isinstance(caller, Caller) else SERVER_KEY
