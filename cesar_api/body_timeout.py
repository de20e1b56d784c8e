"""A request body must keep coming: at least :data:`PACE_BYTES` in every ``CESAR_BODY_TIMEOUT_SECONDS``
(or end), else the request is cut off with ``408`` and its connection closed.

A client sending one byte every few seconds would otherwise hold its connection, and the request's
resources, for ever. The rule is a minimum pace rather than a deadline for the whole body, so that a large
upload over a slow link is not cut off: at the 30 s default, 64 KiB every 30 s (about 2 KiB/s) is far
below any real client's pace. The API's middleware (:class:`cesar_api.load_shedding.LoadGate`) wraps the
``receive`` of requests that carry a body until the body's last message; after that (waiting for a
disconnect, as event streams do) nothing is timed.
"""

from __future__ import annotations

import asyncio

from litestar.types import HTTPScope, Receive, ReceiveMessage

from cesar_common.errors import BodyTimeoutError

__all__ = ["PACE_BYTES", "PacedReceive", "has_body"]

#: the least a body must bring in every timeout period
PACE_BYTES = 64 * 1024
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def has_body(scope: HTTPScope) -> bool:
    return scope["method"] in _WITH_BODY


class PacedReceive:
    """``receive`` of a request with a body, timed until the body's last message."""

    def __init__(self, receive: Receive, seconds: float) -> None:
        self._receive = receive
        self._seconds = seconds
        self._clock = asyncio.get_running_loop().time  # what asyncio.timeout_at counts in
        self._deadline = self._clock() + seconds
        self._since = 0  # bytes since the deadline was last moved
        self._done = False

    async def __call__(self) -> ReceiveMessage:
        if self._done:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self._done = True
            raise BodyTimeoutError(
                f"the request body stalled: less than {PACE_BYTES // 1024} KiB arrived in "
                f"{self._seconds:g} s (CESAR_BODY_TIMEOUT_SECONDS)"
            ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
        else:
            self._since += len(message.get("body", b""))
            if self._since >= PACE_BYTES:
                self._since = 0
                self._deadline = self._clock() + self._seconds
        return message
