"""The app factory: ``create_app()`` wires settings, the job store, routes, auth, errors and docs.

This module must stay light to import: start-up time counts (bench/api_load.py measures it), and the API
never loads Whisper (nothing here may import faster_whisper, even indirectly; a test checks it).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from litestar import Litestar, Request, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.types import Guard

from cesar_api.access import KeyRing, Owners
from cesar_api.auth import close_session, open_session, require_key
from cesar_api.compat.asr import asr_router
from cesar_api.compat.openai import openai_router
from cesar_api.compat.realtime import realtime_session
from cesar_api.event_hub import EventHub
from cesar_api.exception_mapper import handle_exception
from cesar_api.load_shedding import LoadGate, LoadShedder
from cesar_api.metrics import RequestStats, StatementCounter, count_response, metrics, stamp_start
from cesar_api.reads import run_read
from cesar_api.routes.api_keys import create_key, get_key, list_keys, my_key, revoke_key, update_key
from cesar_api.routes.docs import openapi_config, static_router
from cesar_api.routes.event_stream import follow_job
from cesar_api.routes.health import ReadinessCache, health, liveness
from cesar_api.routes.job_routes import (
    cancel_job,
    delete_job,
    get_audio,
    get_job,
    get_transcript,
    list_jobs,
    redeliver_webhook,
)
from cesar_api.routes.live_socket import live_session
from cesar_api.routes.page import page, page_routers
from cesar_api.routes.submission import create_transcription, create_url_transcription
from cesar_api.routes.transcript_edits import edit_transcript, list_revisions
from cesar_api.routes.voice_library import (
    add_voice_sample,
    create_speaker,
    delete_speaker,
    delete_voice_sample,
    get_speaker,
    list_speakers,
    update_speaker,
)
from cesar_api.uploads import MULTIPART_OVERHEAD
from cesar_common.blob_store import open_blob_store
from cesar_common.db.feed import ChangeFeed
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings, get_settings
from cesar_common.transcription import model_store

__all__ = ["create_app"]

PROTECTED_ROUTES = [
    create_transcription,
    create_url_transcription,
    list_jobs,
    get_job,
    get_transcript,
    edit_transcript,
    list_revisions,
    get_audio,
    cancel_job,
    delete_job,
    redeliver_webhook,
    follow_job,
    live_session,
    metrics,
    open_session,
    list_speakers,
    create_speaker,
    get_speaker,
    update_speaker,
    delete_speaker,
    add_voice_sample,
    delete_voice_sample,
    create_key,
    list_keys,
    my_key,
    get_key,
    update_key,
    revoke_key,
]


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> Litestar:
    """The Cesar API. ``store`` defaults to one with an engine of its own on ``settings.database_url``
    (connections open lazily)."""
    settings = settings or get_settings()
    if store is None:
        store = JobStore.from_url(
            settings.database_url,
            keep_audio=settings.keep_audio,
            blobs=open_blob_store(settings),
            **settings.engine_options,
        )
    # the process's one listener for changes (past a transaction-pooling PgBouncer: its own URL)
    feed = ChangeFeed(store.engine, listen_url=settings.database_listen_url)
    shedder = LoadShedder(settings.max_uploads_in_flight)  # its caps set by cesar_api.server when it serves
    # keys may be made while the server runs: the guard is always there (on an open server it costs a
    # look at the key ring)
    guards: list[Guard] = [require_key]
    protected = Router(
        path="/",
        route_handlers=PROTECTED_ROUTES,
        guards=guards,
        # optional: only a server with CESAR_API_KEY asks for it
        security=[{}, {"BearerAuth": []}],
    )
    return Litestar(
        route_handlers=[
            protected,
            openai_router(guards),
            realtime_session,  # checks the key itself: a refusal is an OpenAI error event
            asr_router(guards),
            health,
            liveness,
            page,
            *page_routers(guards),
            close_session,
            static_router(),
        ],
        dependencies={
            "settings": Provide(_provide_settings, sync_to_thread=False),
            "store": Provide(_provide_store, sync_to_thread=False),
        },
        state=State(
            {
                "settings": settings,
                "store": store,
                "key_ring": KeyRing(store, settings),
                "job_owners": Owners(store.job_owner),
                "speaker_owners": Owners(store.speaker_owner),
                "request_stats": RequestStats(),
                "feed": feed,
                "events": EventHub(store, functools.partial(run_read, store), feed),
                "statements": StatementCounter(store),
                "model_presence": model_store.PresenceCache(settings.models_dir),
                "readiness": ReadinessCache(),
                "load": shedder,
            }
        ),
        exception_handlers={Exception: handle_exception},
        middleware=[functools.partial(LoadGate, shedder=shedder, body_timeout=settings.body_timeout_seconds)],
        openapi_config=openapi_config(),
        # the upload route streams and caps the file itself; this bounds the whole request
        request_max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        on_startup=[_warm_imports],
        on_shutdown=[_close_events],
        # every response is counted for GET /metrics (unknown paths too); routed ones are also timed
        before_send=[count_response],
        before_request=stamp_start,
        logging_config=None,
        debug=False,
    )


# The providers read the app's state through the request: asking for ``state`` would copy it per request.
def _provide_settings(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _provide_store(request: Request[Any, Any, Any]) -> JobStore:
    return request.app.state.store  # type: ignore[no-any-return]


async def _close_events(app: Litestar) -> None:
    await app.state.events.close()
    app.state.feed.close()


def _warm_imports(_app: Any = None) -> None:
    """Import PyAV (used by the first upload's probe) after start-up, off the event loop."""

    def load() -> None:
        import av  # noqa: F401

    threading.Thread(target=load, name="cesar-warm-imports", daemon=True).start()
