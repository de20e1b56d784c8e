"""Refusing work the API has no room for, with ``503`` and ``Retry-After``, before a resource runs out.

What a request holds: a connection (a file descriptor) from the moment it is accepted, and, for an upload
past :data:`SLOT_AFTER_BYTES`, an upload slot and a spool file (another descriptor, and disk). Both are
capped, from ``CESAR_MAX_UPLOADS_IN_FLIGHT`` and the process's open-file limit (:func:`plan`). Past the
connection cap a request is answered ``503`` by :class:`LoadGate`, except the probes (``/health``,
``/health/live``), which have :data:`PROBE_ROOM` connections more; past that, a connection is answered
``503`` as it is accepted, before it is read (``cesar_api.server``). An upload past the upload cap is
refused when it asks for its slot. A client trickling a body holds only its connection, and not for long
(the body timeout, :mod:`cesar_api.body_timeout`, which :class:`LoadGate` applies): uploads that send at a
normal pace still get their slots. Should the process still run out of files (``EMFILE``), the request
that met it gets the same ``503``, never a ``500``. ``GET /health`` shows the figures and says when the
API is shedding load.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from cesar_api.body_timeout import PacedReceive, has_body
from cesar_common.errors import OverloadedError

__all__ = [
    "PROBE_ROOM",
    "RESERVED_FILES",
    "SHEDDING_SECONDS",
    "SLOT_AFTER_BYTES",
    "LoadGate",
    "LoadShedder",
    "LoadState",
    "is_out_of_files",
    "out_of_files",
    "plan",
    "refusal_bytes",
    "too_many_connections",
]

logger = logging.getLogger("cesar.api")

#: an upload takes a slot and a spool file once this much of its file has come in; below, it is in memory
SLOT_AFTER_BYTES = 64 * 1024
#: descriptors the process needs beside connections and spool files: the database pool and its LISTEN
#: connection, the log, the event loop, the libraries (an idle API holds about 20)
RESERVED_FILES = 64
#: connections beyond the cap that only the probes may use: /health can say the API sheds load
PROBE_ROOM = 16
#: how long after its last refusal the API still says it is shedding load
SHEDDING_SECONDS = 10.0
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})
_PROBES = frozenset({"/health", "/health/live"})


def plan(open_files: int, max_uploads: int) -> tuple[int, int]:
    """(uploads in flight, connections) that ``open_files`` descriptors allow: each upload in flight may
    hold a spool file beside its connection, at most a quarter of what is left goes to spool files, and
    :data:`PROBE_ROOM` connections stay for the probes."""
    room = max(open_files - RESERVED_FILES, 4)
    uploads = max(1, min(max_uploads, room // 4))
    return uploads, max(1, room - uploads - PROBE_ROOM)


def is_out_of_files(exc: BaseException | None) -> bool:
    """``exc``, or an error it was raised from, is EMFILE or ENFILE."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FILES:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def out_of_files() -> OverloadedError:
    return OverloadedError(
        "the server has too many files open to take this request: try again shortly",
        extra={"resource": "open_files"},
    )


@dataclass(frozen=True, slots=True)
class LoadState:
    shedding: bool
    reason: str | None  # the resource of the last refusal: "uploads", "open_files" or "connections"
    refused: int  # requests refused for want of a resource since the API started
    uploads_in_flight: int
    max_uploads_in_flight: int
    connections: int | None  # None where the server is not Cesar's own (the tests' in-process servers)
    max_connections: int | None


class LoadShedder:
    """The API's counts and caps, used from its event loop only (no locks)."""

    def __init__(self, max_uploads: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_uploads = max_uploads
        self.max_connections: int | None = None
        self.connections: Callable[[], int] | None = None
        self.uploads = 0
        self.refused = 0
        self._clock = clock
        self._last: tuple[float, str] | None = None

    def take_upload_slot(self) -> None:
        """One more upload in flight, or OverloadedError when the cap is reached."""
        if self.uploads >= self.max_uploads:
            self.note_refusal("uploads")
            raise OverloadedError(
                f"the server is receiving {self.uploads} uploads, as many as it takes at once "
                "(CESAR_MAX_UPLOADS_IN_FLIGHT): try again shortly",
                extra={"resource": "uploads"},
            )
        self.uploads += 1

    def release_upload_slot(self) -> None:
        self.uploads -= 1

    def note_refusal(self, resource: str) -> None:
        self.refused += 1
        previous, self._last = self._last, (self._clock(), resource)
        if previous is None or self._clock() - previous[0] > SHEDDING_SECONDS:  # once per episode
            logger.warning("shedding load: a request was refused for want of %s", resource.replace("_", " "))

    def state(self) -> LoadState:
        last = self._last
        shedding = last is not None and self._clock() - last[0] <= SHEDDING_SECONDS
        return LoadState(
            shedding=shedding,
            reason=last[1] if shedding and last is not None else None,
            refused=self.refused,
            uploads_in_flight=self.uploads,
            max_uploads_in_flight=self.max_uploads,
            connections=self.connections() if self.connections is not None else None,
            max_connections=self.max_connections,
        )


class LoadGate:
    """The API's middleware: past the connection cap, only the probes go on (the others: ``503``); a
    request body is timed (:class:`~cesar_api.body_timeout.PacedReceive`). Litestar builds it with the app
    it wraps: ``functools.partial(LoadGate, shedder=..., body_timeout=...)``."""

    def __init__(self, app: ASGIApp, *, shedder: LoadShedder, body_timeout: float) -> None:
        self.app = app
        self.shedder = shedder
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            shedder = self.shedder
            if shedder.connections is not None and shedder.max_connections is not None:
                open_now = shedder.connections()
                if open_now > shedder.max_connections and scope["path"] not in _PROBES:
                    shedder.note_refusal("connections")
                    raise too_many_connections(shedder.max_connections)
            if has_body(scope):
                receive = PacedReceive(receive, self.body_timeout)
        await self.app(scope, receive, send)


def too_many_connections(limit: int) -> OverloadedError:
    return OverloadedError(
        f"the server has {limit} connections open, as many as its open-file limit allows: try again shortly",
        extra={"resource": "connections"},
    )


def refusal_bytes(error: OverloadedError) -> bytes:
    """A whole HTTP response with ``error`` in Cesar's error shape, for a connection the server answers
    before reading it."""
    body = json.dumps(
        {"status_code": error.status_code, "detail": error.message, "code": error.code, "extra": error.extra}
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"retry-after: {error.retry_after_seconds}\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
