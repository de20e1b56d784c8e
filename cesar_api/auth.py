"""Optional API key: when ``CESAR_API_KEY`` is set, protected routes need ``Authorization: Bearer <key>``.

A guard rather than a middleware: it runs after routing and before the body is read, so an upload without
the key is refused without a byte of it being stored. /health and /docs are outside the guarded router.

A browser's ``EventSource`` cannot send that header, so a page that holds the key (in memory, for the tab)
trades it once for a session cookie (``POST /session`` with the header): HttpOnly, SameSite=Strict, for the
browser session only, signed with the key and good for :data:`SESSION_SECONDS`. The cookie opens only the
routes that opt in (the event streams, which only read); the key itself never goes into a URL or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from litestar import Request, Response, delete, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from cesar_api.exception_mapper import error_responses
from cesar_common.errors import AuthError
from cesar_common.settings import Settings
from cesar_common.text import plain_number

__all__ = ["COOKIE_OPENS", "bearer_key_given", "close_session", "open_session", "require_api_key"]

SESSION_COOKIE = "cesar_session"
SESSION_SECONDS = 12 * 3600
#: the handler ``opt`` flag of routes a session cookie opens
COOKIE_OPENS = "session_cookie"
# documented by hand: a handler returning a Response[None] would be documented with a JSON body
_NO_CONTENT = ResponseSpec(data_container=None, description="Done (no body).")


def bearer_key_given(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the request carries the API key (always, on a server without one)."""
    settings: Settings = connection.app.state.settings
    if settings.api_key is None:
        return True
    key = settings.api_key.get_secret_value()
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    # compare_digest even for a wrong scheme, so the answer takes the same time either way
    matches = hmac.compare_digest(token.strip().encode(), key.encode())
    return scheme.lower() == "bearer" and matches


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    # async on purpose: Litestar runs a sync guard in a worker thread, a costly hop for a string compare
    settings: Settings = connection.app.state.settings
    if settings.api_key is None or bearer_key_given(connection):
        return
    key = settings.api_key.get_secret_value()
    cookie = connection.cookies.get(SESSION_COOKIE)
    if handler.opt.get(COOKIE_OPENS) and cookie and valid_session(key, cookie):
        return
    message = "missing or invalid API key: send `Authorization: Bearer <key>`"
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        # refused before the handshake completes: the server answers it 403 (the exception mapper, which
        # writes JSON errors, has no response to give a socket)
        raise NotAuthorizedException(detail=message)
    raise AuthError(message)


def session_token(key: str, *, now: float | None = None) -> str:
    expiry = int((now if now is not None else time.time()) + SESSION_SECONDS)
    return f"{expiry}.{_sign(key, expiry)}"


def valid_session(key: str, token: str, *, now: float | None = None) -> bool:
    text, _, signature = token.partition(".")
    expiry = plain_number(text)
    if expiry is None or expiry < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature.encode(), _sign(key, expiry).encode())


def _sign(key: str, expiry: int) -> str:
    return hmac.new(key.encode(), f"cesar-session.{expiry}".encode(), hashlib.sha256).hexdigest()


@post(
    "/session",
    operation_id="openSession",
    tags=["Service"],
    summary="Trade the API key for a session cookie (browsers)",
    description="For a web page following jobs with `EventSource`, which cannot send an `Authorization` "
    "header: called once with `Authorization: Bearer <key>`, it sets an HttpOnly, SameSite=Strict cookie "
    "for this browser session (12 hours at most) that opens the event streams. Nothing to do without "
    "`CESAR_API_KEY`.",
    status_code=204,
    sync_to_thread=False,
    request_max_body_size=1024,
    responses={204: _NO_CONTENT, **error_responses()},
)
def open_session(request: Request[Any, Any, Any]) -> Response[None]:
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return Response(content=None, status_code=204)
    cookie = Cookie(
        key=SESSION_COOKIE,
        value=session_token(settings.api_key.get_secret_value()),
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
