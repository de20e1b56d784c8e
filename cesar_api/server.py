"""Running the API alone under uvicorn (``cesar api`` and ``python -m cesar_api``)."""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cesar_api.load_shedding import PROBE_ROOM, LoadShedder, plan, refusal_bytes, too_many_connections
from cesar_common.exposure import Exposure, check_exposure, keys_in_use
from cesar_common.settings import Settings

__all__ = ["guarded_protocol", "open_file_limit", "serve", "startup_warnings"]

logger = logging.getLogger("cesar.api")

#: how far the API raises its soft open-file limit when the hard limit allows (or is unlimited)
WANTED_OPEN_FILES = 65_536


class _Server(uvicorn.Server):
    """uvicorn, stopped by Cesar's stop event rather than by its own signal handlers (those re-raise the
    signal once the graceful shutdown is done, so a clean stop on SIGTERM would not exit 0)."""

    def __init__(self, config: uvicorn.Config, stop: threading.Event) -> None:
        super().__init__(config)
        self._stop = stop

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def on_tick(self, counter: int) -> bool:
        if self._stop.is_set():
            self.should_exit = True
        return await super().on_tick(counter)


def open_file_limit() -> int:
    """The process's open-file limit, raised first as far as the hard limit allows: every connection is a
    file, and so is every upload's spool file. Distributions often set 1,024 soft over a far higher hard
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, WANTED_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # a sandbox that refuses: live with the soft limit
            pass
    return WANTED_OPEN_FILES if soft == resource.RLIM_INFINITY else soft


def guarded_protocol(shedder: LoadShedder) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, answering a connection beyond the cap and the probes' room with 503 and
    ``Retry-After`` as soon as it is accepted, rather than letting the process run out of files (below
    that, :class:`~cesar_api.load_shedding.LoadGate` refuses all but the probes)."""

    class GuardedProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            limit = shedder.max_connections
            if limit is not None and len(self.connections) > limit + PROBE_ROOM:
                shedder.note_refusal("connections")
                transport.write(refusal_bytes(too_many_connections(limit)))
                transport.close()

    return GuardedProtocol


def startup_warnings(settings: Settings, exposure: Exposure) -> list[str]:
    """What the API says at start about risky settings: it is the one process `cesar serve` starts once,
    so a deployment hears each of these once, not once per worker."""
    warnings = []
    if exposure is Exposure.OPEN:
        warnings.append(
            f"the API listens on {settings.host} without an API key (--insecure): anyone who can reach it "
            "can submit and read jobs (set CESAR_API_KEY or create a key: cesar keys create NAME --admin)"
        )
    if settings.webhook_secret is None:
        warnings.append(
            "CESAR_WEBHOOK_SECRET is not set: webhooks to a job's callback_url go out unsigned, so "
            "receivers cannot tell them from forgeries"
        )
    return warnings


def serve(settings: Settings, *, check_schema: bool = True) -> None:
    """Serve until SIGTERM or SIGINT, finishing the requests in flight (a second signal forces the stop).

    Refuses to start (SchemaOutdatedError, DatabaseError) when the database is not at the schema this
    version of Cesar expects: ``cesar db upgrade`` first, or ``cesar serve``; and (ClientError) with no
    key at all beyond loopback (:func:`~cesar_common.exposure.check_exposure`).
    """
    from cesar_api.app import create_app
    from cesar_common.blob_store import open_blob_store
    from cesar_common.db.connect import open_engine
    from cesar_common.db.store import JobStore
    from cesar_common.logs import configure_logging
    from cesar_common.parentwatch import watch_parent
    from cesar_common.signals import stop_on_signals

    configure_logging(settings.log_level, name="api")
    watch_parent()  # under `cesar serve`: stop if the supervisor dies (PDEATHSIG's second safeguard)
    engine = open_engine(settings.database_url, **settings.engine_options)  # the process's one engine
    if check_schema:
        from cesar_common.db.migrate import ensure_schema_current

        ensure_schema_current(engine)
    blobs = open_blob_store(settings)  # and its one object store, when audio is kept in one
    if blobs is not None:
        blobs.check(write=True)  # wrong credentials are said once, before anything listens
    store = JobStore(engine, keep_audio=settings.keep_audio, blobs=blobs)
    exposure = check_exposure(settings, lambda: keys_in_use(store))
    for warning in startup_warnings(settings, exposure):
        logger.warning("%s", warning)
    app = create_app(settings, store)
    shedder: LoadShedder = app.state.load
    open_files = open_file_limit()
    shedder.max_uploads, shedder.max_connections = plan(open_files, settings.max_uploads_in_flight)
    if shedder.max_uploads < settings.max_uploads_in_flight:
        logger.warning(
            "the open-file limit (%d) leaves room for %d uploads in flight, fewer than "
            "CESAR_MAX_UPLOADS_IN_FLIGHT=%d, and %d connections: raise it (ulimit -n) for more",
            open_files,
            shedder.max_uploads,
            settings.max_uploads_in_flight,
            shedder.max_connections,
        )
    config = uvicorn.Config(
        app,
        http=guarded_protocol(shedder),
        host=settings.host,
        port=settings.port,
        log_config=None,  # configure_logging above owns the format
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        server_header=False,
        # live sessions (GET /live); the sans-I/O implementation is the one for websockets 13 and later
        ws="websockets-sansio",
        # above the route's own limit, so that the route refuses a message too big with an error event
        ws_max_size=4 * 1024 * 1024,
        timeout_graceful_shutdown=10,
    )
    with stop_on_signals() as stop:
        server = _Server(config, stop)
        shedder.connections = lambda: len(server.server_state.connections)
        server.run()
