"""The job database: its tables (:mod:`.tables`, created by the Alembic migrations, :mod:`.migrate`), the
store that is the one way in (:mod:`.store`), the SQL of each concept behind it, every change of a job's
state (:mod:`.state`) and the feed that tells every process of those changes (:mod:`.feed`)."""

from __future__ import annotations

__all__ = [
    "api_keys",
    "audio_chunks",
    "cancels",
    "chores",
    "clock",
    "connect",
    "driver_query",
    "feed",
    "idempotency",
    "job_reads",
    "leases",
    "live",
    "live_sessions",
    "migrate",
    "outbox",
    "parts",
    "presence",
    "queue",
    "records",
    "retention",
    "revisions",
    "rows",
    "state",
    "store",
    "submissions",
    "tables",
    "totals",
    "transactions",
    "voice_library",
]
