"""``GET /health`` (readiness: is the database reachable, are workers alive, how long is the queue) and
``GET /health/live`` (liveness: the process answers; it touches no database).

Load balancers and orchestrators probe readiness from every node, often several times a second: its
figures (three queries) are reused for :data:`REUSE_SECONDS`, so the database sees one round of them a
second whatever the number of probes. Concurrent probes of a stale answer wait for one refresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from cesar_api.auth import identify
from cesar_api.schemas import (
    DatabaseHealth,
    HealthOut,
    LiveOut,
    LoadedModelHealth,
    LoadHealth,
    ObjectStoreHealth,
    QueueHealth,
    WorkerHealth,
    WorkersHealth,
)
from cesar_common import __version__
from cesar_common.db.records import WorkerRecord
from cesar_common.db.store import JobStore
from cesar_common.errors import DatabaseError, ObjectStoreError
from cesar_common.settings import Settings

__all__ = ["REUSE_SECONDS", "ReadinessCache", "health", "liveness"]

logger = logging.getLogger("cesar.api")

#: how long one look at the database answers readiness probes
REUSE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Readiness:
    body: HealthOut
    status_code: int
    at: float  # when its look at the database began (the clock's time)


class ReadinessCache:
    """The last readiness answer, reused while it is younger than :data:`REUSE_SECONDS`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: Readiness | None = None
        self._refreshing = asyncio.Lock()

    async def get(self, store: JobStore, settings: Settings) -> Readiness:
        last = self._last
        if last is not None and self._clock() - last.at < REUSE_SECONDS:
            return last
        async with self._refreshing:
            last = self._last  # another probe may have refreshed it while this one waited
            if last is not None and self._clock() - last.at < REUSE_SECONDS:
                return last
            started = self._clock()
            body, status_code = await anyio.to_thread.run_sync(_look, store, settings)
            self._last = Readiness(body, status_code, started)
            return self._last


def _look(store: JobStore, settings: Settings) -> tuple[HealthOut, int]:
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
        return body, 503
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
        return body, 503
    objects = _objects(store)
    last_seen = max((worker.last_seen_at for worker in workers), default=None)
    body = HealthOut(
        status="unavailable" if objects and not objects.reachable else "ok" if workers else "degraded",
        version=__version__,
        database=DatabaseHealth(reachable=True, backend=backend),
        objects=objects,
        workers=WorkersHealth(
            count=len(workers), last_seen_at=last_seen, workers=[worker_health(w) for w in workers]
        ),
        queue=QueueHealth(queued=counts.queued, processing=counts.processing),
    )
    return body, 503 if objects and not objects.reachable else 200


def _objects(store: JobStore) -> ObjectStoreHealth | None:
    blobs = store.blobs
    if blobs is None:
        return None
    try:
        blobs.check()
    except ObjectStoreError as exc:
        logger.warning("health: %s", exc)
        return ObjectStoreHealth(url=blobs.url, endpoint=blobs.endpoint, reachable=False, error=str(exc))
    return ObjectStoreHealth(url=blobs.url, endpoint=blobs.endpoint, reachable=True)


def worker_health(worker: WorkerRecord) -> WorkerHealth:
    """A worker's presence row as ``/health`` shows it: its models with what they take in memory."""
    memory = worker.memory or {}
    reported = [model for model in memory.get("models") or [] if isinstance(model, dict)]
    if reported:
        models = [
            LoadedModelHealth(
                name=str(model.get("name")),
                device=model.get("device"),
                compute_type=model.get("compute_type"),
                estimated_mb=_mib(model.get("estimated_bytes")),
                measured_mb=_mib(model.get("measured_bytes")),
            )
            for model in reported
        ]
    else:  # a worker that reports only its models' names
        models = [LoadedModelHealth(name=name) for name in worker.models]
    return WorkerHealth(
        id=worker.id,
        last_seen_at=worker.last_seen_at,
        current_job_id=worker.current_job_id,
        models=models,
        memory_budget_mb=_mib(memory.get("budget_bytes")),
        max_models=_count(memory.get("max_models")),
        rss_mb=_mib(memory.get("rss_bytes")),
        model_loads=_count(memory.get("loads")),
        model_unloads=_count(memory.get("unloads")),
    )


def _mib(value: object) -> int | None:
    return round(value / 2**20) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@get(
    "/health",
    operation_id="getHealth",
    tags=["Service"],
    summary="Readiness: the service and its database",
    description="`200` while the job database answers, with the number of live workers (heartbeat within "
    "`CESAR_LEASE_SECONDS`) and each one's loaded models with what they take in memory, the queue, and "
    "this API's load (`load`: uploads in flight, connections, and "
    "whether it is shedding load); `status` is `degraded` when no worker is alive or the API sheds load. "
    "`503` when the database cannot be reached, or cannot write (a full disk: submits fail until space "
    f"returns). The database figures are at most {REUSE_SECONDS:g} s old: one look at the database answers "
    "every probe in that time. For a liveness probe that touches no database, `GET /health/live`. Never "
    "needs the API key; with `CESAR_API_KEY` set, the workers' list (`workers.workers`) is only given to a "
    "request that sends the key.",
    security=[{}],
    responses={
        503: ResponseSpec(
            data_container=HealthOut,
            generate_examples=False,
            description="The job database cannot be reached, or cannot write",
        )
    },
)
async def health(request: Request[Any, Any, Any]) -> Response[HealthOut]:
    state = request.app.state
    readiness = await state.readiness.get(state.store, state.settings)
    load = state.load.state()  # this moment's, never reused
    body = readiness.body
    status = "degraded" if load.shedding and body.status == "ok" else body.status
    update: dict[str, Any] = {"status": status, "load": LoadHealth(**dataclasses.asdict(load))}
    if body.workers is not None and body.workers.workers and not await _admin(request):
        # which hosts run which models and jobs is not for anyone who can reach the port, nor for users
        update["workers"] = body.workers.model_copy(update={"workers": []})
    body = body.model_copy(update=update)
    return Response(content=body, status_code=readiness.status_code)


@get(
    "/health/live",
    operation_id="getLiveness",
    tags=["Service"],
    summary="Liveness: the API process answers",
    description="`200` whenever the API process can answer a request; touches no database, so an outage "
    "there does not make an orchestrator restart a healthy API (readiness: `GET /health`). The image's "
    "`HEALTHCHECK` asks it. Never needs the API key.",
    security=[{}],
    sync_to_thread=False,
)
def liveness() -> LiveOut:
    return LiveOut(status="ok", version=__version__)


async def _admin(request: Request[Any, Any, Any]) -> bool:
    caller = await identify(request)
    return caller is not None and caller.admin
