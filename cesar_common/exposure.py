"""Where a server with no key may listen: on loopback only, unless told ``--insecure``.

A server with neither ``CESAR_API_KEY`` nor any key ever made in its database answers every request as its
admin (once a key was made, even one revoked since, every request needs a key). On 127.0.0.1 that is this
machine's users; on 0.0.0.0 or a LAN address it is anyone who can reach it, so ``cesar serve``, ``cesar api``
and the API process ``cesar serve`` starts refuse that, in one line, before anything listens (``--insecure``
or ``CESAR_INSECURE=true`` to serve open all the same: a container publishes its port on 127.0.0.1, or a
proxy in front checks who calls).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

from cesar_common.errors import ClientError
from cesar_common.settings import Settings
from cesar_common.urlpolicy import is_loopback

if TYPE_CHECKING:
    from cesar_common.db.store import JobStore

__all__ = ["Exposure", "check_exposure", "keys_in_use"]


class Exposure(enum.Enum):
    """How open a server that may start is."""

    #: ``CESAR_API_KEY`` or a key in the database: every request needs a key
    KEYED = "keyed"
    #: on loopback: open to this machine if it has no key (the database is not asked)
    LOOPBACK = "loopback"
    #: no key at all, beyond loopback, as ``--insecure`` asked: open to anyone who reaches it
    OPEN = "open"


def check_exposure(settings: Settings, has_keys: Callable[[], bool]) -> Exposure:
    """How open a server with ``settings`` would be; ClientError when it must not start.

    ``has_keys`` tells whether the database holds a key: asked only when the settings alone do not
    decide (no ``CESAR_API_KEY``, beyond loopback)."""
    if settings.api_key is not None:
        return Exposure.KEYED
    if is_loopback(settings.host):
        return Exposure.LOOPBACK
    if has_keys():
        return Exposure.KEYED
    if settings.insecure:
        return Exposure.OPEN
    raise ClientError(
        f"refusing to listen on {settings.host} with no API key, open to anyone who can reach it: set "
        "CESAR_API_KEY or create a key with `cesar keys create NAME --admin` (or pass --insecure, "
        "CESAR_INSECURE=true, to serve it open)"
    )


def keys_in_use(store: JobStore) -> bool:
    """Whether the database holds a key (revoked and expired ones too: revoking the last key locks the
    server rather than opening it): with one, the API asks every request for a key."""
    return bool(store.list_keys())
