"""Optional API key: when ``CESAR_API_KEY`` is set, protected routes need ``Authorization: Bearer <key>``.

A guard rather than a middleware: it runs after routing and before the body is read, so an upload without
the key is refused without a byte of it being stored. /health and /docs are outside the guarded router.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from cesar_common.errors import AuthError
from cesar_common.settings import Settings


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    # async on purpose: Litestar runs a sync guard in a worker thread, a costly hop for a string compare
    settings: Settings = connection.app.state.settings
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    # compare_digest even for a wrong scheme, so the answer takes the same time either way
    matches = hmac.compare_digest(token.strip().encode(), expected)
    if scheme.lower() != "bearer" or not matches:
        raise AuthError("missing or invalid API key: send `Authorization: Bearer <key>`")
