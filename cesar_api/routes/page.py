"""The web page for people: ``GET /`` and its files under ``/ui``, plus ``GET /ui/config`` for its forms.

The page is plain HTML, CSS and JavaScript from the package (:mod:`cesar_api.webpage`): nothing from a
CDN, no build step. It talks to the public API like any client. Its Content-Security-Policy allows scripts
and styles from Cesar only (no inline script; the live mode's AudioWorklet is one of those scripts),
connections to Cesar only (the live mode's WebSocket too), and media from ``blob:``: the page plays from the
browser's memory the file the person just uploaded or the live session just recorded, or, where the server
keeps audio, what it fetched of it.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

from litestar import MediaType, Request, Response, Router, get
from litestar.static_files import create_static_files_router
from litestar.types import Guard

from cesar_common.choices import TASKS, TRANSCRIPT_FORMATS, WHISPER_LANGUAGE_NAMES
from cesar_common.settings import Settings

__all__ = ["page", "page_routers"]

UI_PATH = "/ui"
STATIC = importlib.resources.files("cesar_api.webpage") / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src blob:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def _index() -> bytes:
    return (STATIC / "index.html").read_bytes()


@get("/", include_in_schema=False, sync_to_thread=False)
def page() -> Response[bytes]:
    """A person who opens the server in a browser gets the page (the API's documentation is at /docs)."""
    return Response(_index(), media_type=MediaType.HTML, headers=SECURITY_HEADERS)


@get("/config", include_in_schema=False, sync_to_thread=False)
def page_config(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """What the page's forms offer: the allowed models (the default first), languages, tasks, formats; and
    whether a finished job's audio is kept, to play."""
    settings: Settings = request.app.state.settings
    models = [settings.model, *sorted(settings.allowed_models - {settings.model})]
    return Response(
        {
            "models": models,
            "languages": WHISPER_LANGUAGE_NAMES,
            "tasks": list(TASKS),
            "formats": list(TRANSCRIPT_FORMATS),
            "max_upload_mb": settings.max_upload_mb,
            "api_key": settings.api_key is not None,
            "keep_audio": settings.keep_audio,
        },
        headers={"Cache-Control": "no-store"},
    )


def _secure(response: Response[Any]) -> Response[Any]:
    response.headers.update(SECURITY_HEADERS)
    return response


def page_routers(guards: list[Guard]) -> list[Router]:
    """The page's configuration behind ``guards`` (the API key); its files, which hold nothing secret, not."""
    files = create_static_files_router(
        path=UI_PATH,
        directories=[STATIC],  # type: ignore[list-item]
        include_in_schema=False,
        name="page-files",
        after_request=_secure,
    )
    return [files, Router(path=f"{UI_PATH}", route_handlers=[page_config], guards=guards)]
