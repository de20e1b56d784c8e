"""``GET /health``: is the database reachable, are workers alive, how long is the queue."""

from __future__ import annotations

import logging

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from cesar_api.schemas import DatabaseHealth, HealthOut, QueueHealth, WorkersHealth
from cesar_common import __version__
from cesar_common.db.store import JobStore
from cesar_common.errors import DatabaseError
from cesar_common.settings import Settings

__all__ = ["health"]

logger = logging.getLogger("cesar.api")


@get(
    "/health",
    operation_id="getHealth",
    tags=["Service"],
    summary="Health of the service",
    description="`200` while the job database answers, with the number of live workers (heartbeat within "
    "`CESAR_LEASE_SECONDS`) and the queue; `status` is `degraded` when no worker is alive. `503` when the "
    "database cannot be reached, or cannot write (a full disk: submits fail until space returns). Never "
    "needs the API key.",
    sync_to_thread=True,
    security=[{}],
    responses={
        503: ResponseSpec(
            data_container=HealthOut,
            generate_examples=False,
            description="The job database cannot be reached, or cannot write",
        )
    },
)
def health(store: NamedDependency[JobStore], settings: NamedDependency[Settings]) -> Response[HealthOut]:
    backend = store.engine.dialect.name
    try:
        store.ping()
        workers = store.list_workers(alive_within_seconds=settings.lease_seconds)
        counts = store.queue_counts()
    except DatabaseError as exc:
        logger.warning("health: %s", exc.describe())
        body = HealthOut(
            status="unavailable",
            version=__version__,
            database=DatabaseHealth(reachable=False, writable=False, backend=backend, error=exc.code),
            workers=None,
            queue=None,
        )
        return Response(content=body, status_code=503)
    failing = store.write_failure()
    if failing is not None:
        logger.warning("health: writes fail: %s", failing)
        body = HealthOut(
            status="unavailable",
            version=__version__,
            database=DatabaseHealth(reachable=True, writable=False, backend=backend, error="writes_failing"),
            workers=None,
            queue=QueueHealth(queued=counts.queued, processing=counts.processing),
        )
        return Response(content=body, status_code=503)
    last_seen = max((worker.last_seen_at for worker in workers), default=None)
    body = HealthOut(
        status="ok" if workers else "degraded",
        version=__version__,
        database=DatabaseHealth(reachable=True, backend=backend),
        workers=WorkersHealth(count=len(workers), last_seen_at=last_seen),
        queue=QueueHealth(queued=counts.queued, processing=counts.processing),
    )
    return Response(content=body, status_code=200)
