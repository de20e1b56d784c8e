"""``GET /metrics``, and counting this API process's HTTP requests for it.

Requests are counted by a ``before_send`` hook, which sees every response (also a 404 for an unknown path,
which never reaches a route), labelled by the route's template so the labels stay few. Counting is plain
Python under a lock: ``prometheus_client`` (a tenth of a second to import) loads on the first scrape, not
at start-up. Job, worker and webhook metrics are read from the database at scrape time
(:mod:`cesar_api.job_metrics`).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.types import Message, Scope
from sqlalchemy import event
from sqlalchemy.pool import QueuePool

from cesar_api.access import ADMIN_ONLY
from cesar_api.event_hub import EventHub
from cesar_api.exception_mapper import error_responses
from cesar_common.db.store import JobStore

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["RequestStats", "StatementCounter", "count_response", "metrics", "stamp_start"]

UNMATCHED = "(unmatched)"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: upper bounds (seconds) of the request duration histogram
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STARTED = "cesar_request_started"
CONTENT_TYPE = "text/plain; version=0.0.4"  # Litestar adds "; charset=utf-8" to text/* types


class RequestStats:
    """Counts of this process's responses by (method, route, status), and durations by route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str, str], int] = defaultdict(int)
        # route -> per-bucket counts (the last one is +Inf) and the sum of durations
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float | None) -> None:
        method = method if method in METHODS else "OTHER"
        with self._lock:
            self.counts[(method, route, str(status))] += 1
            if seconds is not None:
                counts = self.buckets.setdefault(route, [0] * (len(DURATION_BUCKETS) + 1))
                counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
                self.sums[route] += seconds

    def snapshot(self) -> tuple[dict[tuple[str, str, str], int], dict[str, list[int]], dict[str, float]]:
        with self._lock:
            return dict(self.counts), {k: list(v) for k, v in self.buckets.items()}, dict(self.sums)


class RequestCollector:
    """Exposes :class:`RequestStats` to a Prometheus registry."""

    def __init__(self, stats: RequestStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        counts, buckets, sums = self.stats.snapshot()
        requests = CounterMetricFamily(
            "cesar_http_requests",
            "HTTP requests this API process answered, by method, route template and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in sorted(counts.items()):
            requests.add_metric([method, route, status], count)
        yield requests
        duration = HistogramMetricFamily(
            "cesar_http_request_duration_seconds",
            "Time this API process took to answer routed HTTP requests, from the handler's start to the "
            "response's first byte, by route template.",
            labels=["route"],
        )
        for route, per_bucket in sorted(buckets.items()):
            running, cumulative = 0, []
            for bound, count in zip((*DURATION_BUCKETS, float("inf")), per_bucket, strict=True):
                running += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
            duration.add_metric([route], cumulative, sums[route])
        yield duration

    def describe(self) -> Iterator[Metric]:
        return iter(())


class StatementCounter:
    """Counts the statements this process sends its database (an engine event, a lock-free increment under
    the GIL, plus those the store runs on the driver's cursor): the cost of live event streams compared with
    polling is measured with it."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.engine = store.engine
        self._through_engine = 0
        event.listen(self.engine, "before_cursor_execute", self._counted)

    @property
    def count(self) -> int:
        return self._through_engine + self.store.statements_on_driver

    def _counted(self, *_args: Any) -> None:
        self._through_engine += 1


class ProcessCollector:
    """This API process's own gauges: open event streams, database statements and pooled connections."""

    def __init__(self, statements: StatementCounter, events: EventHub) -> None:
        self.statements = statements
        self.events = events

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily(
            "cesar_event_streams",
            "Event streams this API process serves now.",
            value=self.events.open_streams,
        )
        yield CounterMetricFamily(
            "cesar_database_statements",
            "Statements this API process sent the job database.",
            value=self.statements.count + self.events.watcher_statements,
        )
        pool = self.statements.engine.pool
        checked_out = pool.checkedout() if isinstance(pool, QueuePool) else 0
        yield GaugeMetricFamily(
            "cesar_database_connections_in_use",
            "Pooled database connections this API process holds now.",
            value=checked_out,
        )

    def describe(self) -> Iterator[Metric]:
        return iter(())


async def stamp_start(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: when a routed request's handling began (after its guards), for the duration
    histogram. A hook rather than a middleware: a middleware also costs each route a second exception
    handling layer, a tenth of the polled ``GET /jobs/{id}``'s time."""
    request.scope["state"][_STARTED] = time.perf_counter()


async def count_response(message: Message, scope: Scope) -> None:
    """``before_send`` hook: count each response as its status line goes out."""
    if message["type"] != "http.response.start" or scope["type"] != ScopeType.HTTP:
        return
    started = scope.get("state", {}).get(_STARTED)
    seconds = None if started is None else time.perf_counter() - started
    stats: RequestStats = scope["app"].state.request_stats
    stats.observe(scope["method"], scope.get("path_template") or UNMATCHED, message["status"], seconds)


def _registry(request: Request[Any, Any, Any]) -> CollectorRegistry:
    """The app's registry, built on the first scrape."""
    state = request.app.state
    registry: CollectorRegistry | None = state.get("metrics_registry")
    if registry is None:
        from cesar_api.job_metrics import store_registry

        registry = store_registry(
            state.store,
            alive_within_seconds=state.settings.lease_seconds,
            extra=[RequestCollector(state.request_stats), ProcessCollector(state.statements, state.events)],
        )
        state.metrics_registry = registry
    return registry


@get(
    "/metrics",
    operation_id="getMetrics",
    tags=["Service"],
    summary="Prometheus metrics",
    description="Prometheus text format. Jobs by status, queue depth, age of the oldest queued job, workers "
    "alive, job wall time, audio duration and x real time histograms, webhook deliveries by state and tries "
    "by outcome: read from the database at scrape time, so any API process reports the whole service. HTTP "
    "requests by route and status are this API process's own. Only for an admin key on a server with keys "
    "(no label names a key or an owner: the counts stay bounded).",
    sync_to_thread=True,
    media_type=CONTENT_TYPE,
    opt={ADMIN_ONLY: True},
    response_description="The metrics, in Prometheus text format 0.0.4.",
    responses=error_responses(403),
)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    from cesar_api.job_metrics import render

    return Response(content=render(_registry(request)), media_type=CONTENT_TYPE)
