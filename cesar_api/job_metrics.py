"""Prometheus metrics for ``GET /metrics``.

Everything about jobs, workers and webhooks is read from the database at scrape time by
:class:`StoreCollector`, so any API process, with any number of workers on any number of hosts, reports the
same numbers. Timings and outcomes come from running totals the job store keeps (``metric_totals``), which
only grow: purging old jobs never makes a counter go backwards. HTTP requests are the one thing counted in
the API process itself (:class:`HttpMetrics`): each API process reports its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cesar_common.db import totals
from cesar_common.db.job_reads import FINAL
from cesar_common.db.outbox import OUTCOME_LABELS
from cesar_common.db.records import JobStatus, MetricsSnapshot, WebhookState, WorkerRecord
from cesar_common.db.store import JobStore
from cesar_common.errors import DatabaseError

__all__ = ["render", "store_registry"]

log = logging.getLogger(__name__)

PREFIX = "cesar"
HISTOGRAM_HELP = {
    "job_wall_seconds": "Wall time of completed jobs, from the claim that finished them to completion.",
    "job_audio_seconds": "Audio duration of completed jobs.",
    "job_realtime_factor": "Audio seconds per wall second of completed jobs (x real time).",
}


class StoreCollector(Collector):
    """Reads the job database on every scrape (one read transaction)."""

    def __init__(self, store: JobStore, *, alive_within_seconds: float) -> None:
        self.store = store
        self.alive_within_seconds = alive_within_seconds

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_database_up", "1 when the job database answered this scrape.")
        try:
            snapshot = self.store.metrics_snapshot(alive_within_seconds=self.alive_within_seconds)
        except DatabaseError as exc:
            log.warning("metrics: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from snapshot_metrics(snapshot)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no scrape at registration time


def snapshot_metrics(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs in the database by status.", labels=["status"])
    for status, count in sorted(snapshot.jobs_by_status.items()):
        jobs.add_metric([status], count)
    yield jobs
    yield GaugeMetricFamily(
        f"{PREFIX}_queue_depth",
        "Jobs waiting for a worker.",
        value=snapshot.jobs_by_status.get(JobStatus.QUEUED, 0),
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_oldest_queued_job_age_seconds",
        "How long the oldest queued job has waited (0 when none waits).",
        value=snapshot.oldest_queued_seconds,
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_workers_alive", "Workers whose heartbeat is recent.", value=snapshot.workers_alive
    )

    stored = snapshot.totals
    finished = CounterMetricFamily(
        f"{PREFIX}_jobs_finished", "Jobs that reached a final status, by status.", labels=["status"]
    )
    for status in FINAL:
        finished.add_metric([status], stored.get(totals.JOBS_FINISHED, {}).get(status, 0.0))
    yield finished
    for name, help_text in HISTOGRAM_HELP.items():
        rows = stored.get(name, {})
        yield HistogramMetricFamily(
            f"{PREFIX}_{name}",
            help_text,
            buckets=totals.cumulative_buckets(name, rows),
            sum_value=rows.get(totals.SUM, 0.0),
        )

    open_sessions = GaugeMetricFamily(
        f"{PREFIX}_live_sessions", "Live sessions not ended yet, by status.", labels=["status"]
    )
    for status in (JobStatus.QUEUED, JobStatus.PROCESSING):
        open_sessions.add_metric(
            [status.value], sum(1 for _, state, _ in snapshot.live_sessions if state == status.value)
        )
    yield open_sessions
    behind = GaugeMetricFamily(
        f"{PREFIX}_live_session_behind_seconds",
        "How far each running live session's confirmed text is behind the audio that arrived, at its "
        "worker's last report (a value that keeps growing: the worker cannot keep up).",
        labels=["session"],
    )
    for job_id, _, seconds in snapshot.live_sessions:
        if seconds is not None:
            behind.add_metric([job_id], seconds)
    yield behind

    yield from worker_memory_metrics(snapshot.workers)

    deliveries = GaugeMetricFamily(
        f"{PREFIX}_webhook_deliveries", "Webhook deliveries in the database by state.", labels=["state"]
    )
    for state in WebhookState:
        deliveries.add_metric([state.value], snapshot.deliveries_by_state.get(state.value, 0))
    yield deliveries
    attempts = CounterMetricFamily(
        f"{PREFIX}_webhook_attempts",
        "Webhook delivery tries by outcome: delivered, retried (to be tried again) or failed (given up).",
        labels=["outcome"],
    )
    for outcome in OUTCOME_LABELS.values():
        attempts.add_metric([outcome], stored.get(totals.DELIVERY_ATTEMPTS, {}).get(outcome, 0.0))
    yield attempts


def worker_memory_metrics(workers: Iterable[WorkerRecord]) -> Iterator[Metric]:
    """Each live worker's loaded models and what they take, its memory budget and resident memory, and the
    models it loaded and unloaded (from its presence row)."""
    models = GaugeMetricFamily(
        f"{PREFIX}_worker_model_memory_bytes",
        "Memory each model a worker holds takes, by worker and model: measured as it loaded (the growth "
        "of the worker's resident memory), else estimated from its files.",
        labels=["worker", "model", "device", "compute_type"],
    )
    budget = GaugeMetricFamily(
        f"{PREFIX}_worker_model_memory_budget_bytes",
        "What a worker's loaded models may take together (CESAR_WORKER_MODEL_MEMORY_MB).",
        labels=["worker"],
    )
    resident = GaugeMetricFamily(
        f"{PREFIX}_worker_resident_memory_bytes", "A worker process's resident memory.", labels=["worker"]
    )
    loads = CounterMetricFamily(
        f"{PREFIX}_worker_model_loads", "Models a worker loaded since it started.", labels=["worker"]
    )
    unloads = CounterMetricFamily(
        f"{PREFIX}_worker_model_unloads", "Models a worker unloaded since it started.", labels=["worker"]
    )
    for worker in workers:
        memory = worker.memory or {}
        for model in memory.get("models") or []:
            if not isinstance(model, dict):
                continue
            size = model.get("measured_bytes")
            size = size if isinstance(size, int) else model.get("estimated_bytes")
            if isinstance(size, int):
                labels = [
                    worker.id,
                    str(model.get("name")),
                    str(model.get("device")),
                    str(model.get("compute_type")),
                ]
                models.add_metric(labels, size)
        for family, field in (
            (budget, "budget_bytes"),
            (resident, "rss_bytes"),
            (loads, "loads"),
            (unloads, "unloads"),
        ):
            value = memory.get(field)
            if isinstance(value, int):
                family.add_metric([worker.id], value)
    yield models
    yield budget
    yield resident
    yield loads
    yield unloads


def store_registry(
    store: JobStore, *, alive_within_seconds: float, extra: Iterable[Collector] = ()
) -> CollectorRegistry:
    """A registry with the store's metrics and any ``extra`` collectors (the API adds its HTTP counts)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, alive_within_seconds=alive_within_seconds))
    for collector in extra:
        registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
