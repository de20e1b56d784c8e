"""Running totals for ``GET /metrics``: histogram buckets, sums and counters kept in ``metric_totals``.

Counting rows at scrape time would go backwards whenever retention deletes jobs, and Prometheus reads a
counter that drops as a restart. So the transactions that finish jobs and webhook deliveries also add to these
totals, which only grow. Buckets are stored one row per bucket (not cumulative); the collector cumulates.
Every addition is one multi-row upsert in a fixed row order, so concurrent writers on PostgreSQL lock the rows
they share in the same order and never deadlock.
"""

from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from cesar_common.db.records import JobStatus
from cesar_common.db.tables import metric_totals

__all__ = [
    "DELIVERY_ATTEMPTS",
    "JOBS_FINISHED",
    "SUM",
    "WRITE_PROBE",
    "add",
    "cumulative_buckets",
    "job_finished_additions",
    "read",
]

#: histogram name -> upper bounds of its buckets (seconds, or a ratio for the real-time factor)
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "job_wall_seconds": (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    "job_audio_seconds": (5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
    "job_realtime_factor": (0.5, 1, 2, 5, 10, 20, 50, 100),
}
SUM = "sum"
INF = "+Inf"
JOBS_FINISHED = "jobs_finished"  # labels: the final status
DELIVERY_ATTEMPTS = "webhook_attempts"  # labels: delivered | retried | failed
WRITE_PROBE = "write_probe"  # /health's test that the database can write again after a failure


def bucket_label(bound: float) -> str:
    """Prometheus's spelling of a bucket bound: ``1.0``, ``2.5``, ``+Inf``."""
    return INF if math.isinf(bound) else repr(float(bound))


def histogram_additions(name: str, value: float) -> dict[tuple[str, str], float]:
    """The rows one observation adds to: its own bucket, and the sum."""
    bound = next((b for b in HISTOGRAMS[name] if value <= b), math.inf)
    return {(name, bucket_label(bound)): 1.0, (name, SUM): value}


def job_finished_additions(
    status: str, *, wall_seconds: float | None, audio_seconds: float | None
) -> dict[tuple[str, str], float]:
    """Totals a job reaching ``status`` adds; timings only for completed jobs that have them."""
    rows: dict[tuple[str, str], float] = {(JOBS_FINISHED, status): 1.0}
    if status != JobStatus.COMPLETED or wall_seconds is None:
        return rows
    wall = max(wall_seconds, 0.0)
    rows.update(histogram_additions("job_wall_seconds", wall))
    if audio_seconds is not None:
        rows.update(histogram_additions("job_audio_seconds", audio_seconds))
        if wall > 0:
            rows.update(histogram_additions("job_realtime_factor", audio_seconds / wall))
    return rows


def add(conn: Connection, additions: dict[tuple[str, str], float]) -> None:
    """Add to the totals inside the caller's transaction (one statement, rows in a fixed order)."""
    if not additions:
        return
    values = [
        {"name": name, "label": label, "value": amount} for (name, label), amount in sorted(additions.items())
    ]
    dialect_insert = pg_dialect.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert
    stmt = dialect_insert(metric_totals).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[metric_totals.c.name, metric_totals.c.label],
        set_={"value": metric_totals.c.value + stmt.excluded.value},
    )
    conn.execute(stmt)


def read(conn: Connection) -> dict[str, dict[str, float]]:
    """Every total: ``{name: {label: value}}``."""
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for row in conn.execute(select(metric_totals.c.name, metric_totals.c.label, metric_totals.c.value)):
        found[row.name][row.label] = float(row.value)
    return dict(found)


def cumulative_buckets(name: str, stored: dict[str, float]) -> list[tuple[str, float]]:
    """Prometheus buckets (``le``, cumulative count) from the per-bucket rows of histogram ``name``."""
    running = 0.0
    buckets: list[tuple[str, float]] = []
    for bound in (*HISTOGRAMS[name], math.inf):
        label = bucket_label(bound)
        running += stored.get(label, 0.0)
        buckets.append((label, running))
    return buckets
