"""The guard every protected route passes: the API key (``Authorization: Bearer <key>``), the key's request
rate, routes only an admin may use, and the owner of the job or person a route names.

A guard rather than a middleware: it runs after routing and before the body is read, so an upload without a
key is refused without a byte of it being stored. /health and /docs are outside the guarded routers. The keys
come from this process's :class:`~cesar_api.access.KeyRing` (no database read per request).

Another owner's job or person is answered like one that does not exist (404), on every route that names one
in its path: routes cannot forget the check. Routes that list or create read the caller
(:func:`~cesar_api.access.caller_of`) to list only what it owns and to own what it makes.

A browser's ``EventSource`` cannot send the header, so a page that holds the key (in memory, for the tab)
trades it once for a session cookie (``POST /session`` with the header): HttpOnly, SameSite=Strict, for the
browser session only, signed for the key and good for 12 hours while the key holds. The cookie opens only
the routes that opt in (the event streams, which only read); the key itself never goes into a URL or a log.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, delete, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from cesar_api.access import ADMIN_ONLY, SERVER_KEY, Caller, KeyRing, caller_of, set_caller
from cesar_api.exception_mapper import error_responses
from cesar_api.reads import run_read
from cesar_common.db import job_reads, voice_library
from cesar_common.errors import AuthError, CesarError, ForbiddenError

__all__ = [
    "COOKIE_OPENS",
    "OWNER_READ_BY_ROUTE",
    "bearer_key",
    "close_session",
    "identify",
    "open_session",
    "require_key",
]

SESSION_COOKIE = "cesar_session"
#: the handler ``opt`` flag of routes a session cookie opens
COOKIE_OPENS = "session_cookie"
#: the handler ``opt`` flag of a route that reads its job's owner with the job itself (``GET /jobs/{id}``,
#: the polled path: one read rather than two) and answers another owner's job as none itself
OWNER_READ_BY_ROUTE = "owner_read_by_route"
# documented by hand: a handler returning a Response[None] would be documented with a JSON body
_NO_CONTENT = ResponseSpec(data_container=None, description="Done (no body).")
_MISSING = "missing or invalid API key: send `Authorization: Bearer <key>`"


def bearer_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The key in the ``Authorization: Bearer`` header, if any."""
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def identify(
    connection: ASGIConnection[Any, Any, Any, Any], keys: tuple[str, ...] = (), *, cookie: bool = False
) -> Caller | None:
    """Who the connection is: its bearer key, else one of ``keys`` (a realtime socket's subprotocol),
    else with ``cookie`` its session cookie. The server's own key on an open server; None for none that
    holds."""
    arrived = time.monotonic()
    ring: KeyRing = connection.app.state.key_ring
    await ring.fresh()
    if ring.open:
        return SERVER_KEY
    given = bearer_key(connection)
    offered = (given, *keys) if given else keys
    if any(ring.unknown_prefix(key) for key in offered):
        await ring.read_since(arrived)  # a key made since the ring was read works at once
    for key in offered:
        found = ring.identify(key)
        if found is not None:
            return found
    token = connection.cookies.get(SESSION_COOKIE) if cookie else None
    return None if token is None else ring.session_caller(token)


async def require_key(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    # async on purpose: Litestar runs a sync guard in a worker thread, a costly hop on the polled path
    caller = await identify(connection, cookie=bool(handler.opt.get(COOKIE_OPENS)))
    socket = connection.scope["type"] == ScopeType.WEBSOCKET
    if caller is None:
        # a socket is refused before the handshake completes: the server answers it 403 (the exception
        # mapper, which writes JSON errors, has no response to give a socket)
        raise NotAuthorizedException(detail=_MISSING) if socket else AuthError(_MISSING)
    ring: KeyRing = connection.app.state.key_ring
    try:
        ring.throttle(caller)
        if handler.opt.get(ADMIN_ONLY) and not caller.admin:
            raise ForbiddenError(f"this needs an admin key; key {caller.name!r} is a user key")
        if not caller.admin:
            await _check_owner(connection, caller, job=not handler.opt.get(OWNER_READ_BY_ROUTE))
    except CesarError as exc:
        if socket:
            raise PermissionDeniedException(detail=str(exc)) from exc
        raise
    set_caller(connection, caller)


async def _check_owner(connection: ASGIConnection[Any, Any, Any, Any], caller: Caller, *, job: bool) -> None:
    """404 when the job or person the path names is another owner's, or none: the same answer, before the
    route reads the body, so that no answer tells one from the other."""
    params = connection.path_params
    job_id = params.get("job_id") if job else None
    if job_id is not None:
        owners = connection.app.state.job_owners
        owner = await run_read(connection.app.state.store, owners.owner, job_id)
        if owner != caller.owner:
            raise job_reads.not_found(job_id)
    speaker_id = params.get("speaker_id")
    if speaker_id is not None:
        owners = connection.app.state.speaker_owners
        owner = await run_read(connection.app.state.store, owners.owner, speaker_id)
        if owner != caller.owner:
            raise voice_library.unknown_person(speaker_id)


@post(
    "/session",
    operation_id="openSession",
    tags=["Service"],
    summary="Trade the API key for a session cookie (browsers)",
    description="For a web page following jobs with `EventSource`, which cannot send an `Authorization` "
    "header: called once with `Authorization: Bearer <key>`, it sets an HttpOnly, SameSite=Strict cookie "
    "for this browser session (12 hours at most, and only while the key holds) that opens the event "
    "streams. Nothing to do on a server without keys.",
    status_code=204,
    sync_to_thread=False,
    request_max_body_size=1024,
    responses={204: _NO_CONTENT, **error_responses()},
)
def open_session(request: Request[Any, Any, Any]) -> Response[None]:
    ring: KeyRing = request.app.state.key_ring
    token = ring.session_token(caller_of(request))
    if token is None:
        return Response(content=None, status_code=204)
    cookie = Cookie(
        key=SESSION_COOKIE,
        value=token,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return Response(content=None, status_code=204, cookies=[cookie])


@delete(
    "/session",
    operation_id="closeSession",
    tags=["Service"],
    summary="Forget the session cookie",
    description="Tells the browser to drop the cookie `POST /session` set (a page's sign-out). Needs no key.",
    status_code=204,
    sync_to_thread=False,
    responses={204: _NO_CONTENT},
)
def close_session() -> Response[None]:
    gone = Cookie(key=SESSION_COOKIE, value="", path="/", max_age=0, httponly=True, samesite="strict")
    return Response(content=None, status_code=204, cookies=[gone])
