"""The webhook outbox: the SQL behind ``webhook_deliveries``, run inside the job store's transactions.

A delivery row is written in the same transaction that makes its job final (:func:`enqueue`), so a job never
ends without its delivery being recorded; an edit of a completed job's transcript writes one too (its
``event`` :data:`REVISED`; null for the final state, :data:`FINISHED`). Workers claim due rows with the
pattern jobs use (:func:`claim`): one ``UPDATE ... RETURNING`` inside ``BEGIN IMMEDIATE`` on SQLite,
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, with a lease: a row held by a worker that died becomes due again
when its lease expires (at-least-once).
The workers send them: :mod:`cesar_worker.webhook_sender` (HTTP) and :mod:`cesar_worker.webhooks` (signing,
retries).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, func, insert, or_, select, update

from cesar_common.db import totals
from cesar_common.db.clock import db_now
from cesar_common.db.records import DeliveryOutcome, WebhookDeliveryRecord, WebhookState
from cesar_common.db.tables import webhook_deliveries as deliveries

__all__ = [
    "DELIVERING",
    "FINISHED",
    "PENDING",
    "REVISED",
    "anything_to_claim",
    "claim",
    "count_by_state",
    "enqueue",
    "extend",
    "finish",
    "for_job",
    "get",
    "latest_for",
    "redeliver",
]

PENDING = WebhookState.PENDING.value
DELIVERING = WebhookState.DELIVERING.value
DELIVERED = WebhookState.DELIVERED.value
FAILED = WebhookState.FAILED.value
#: what a delivery tells (its ``Cesar-Event``): the job's final state (stored as null), or an edit
FINISHED = "job.finished"
REVISED = "transcript.revised"
#: the counter label each outcome adds to (``cesar_webhook_attempts_total{outcome=...}``)
OUTCOME_LABELS = {DELIVERED: "delivered", PENDING: "retried", FAILED: "failed"}


def enqueue(conn: Connection, job_id: str, url: str | None, *, event: str = FINISHED) -> str | None:
    """Queue a delivery of job ``job_id`` to ``url`` telling ``event`` (nothing without a URL); its id."""
    if not url:
        return None
    delivery_id = str(uuid.uuid4())
    conn.execute(
        insert(deliveries).values(
            id=delivery_id,
            job_id=job_id,
            url=url,
            state=PENDING,
            attempts=0,
            next_attempt_at=db_now(),
            created_at=db_now(),
            event=None if event == FINISHED else event,
        )
    )
    return delivery_id


def anything_to_claim(conn: Connection) -> bool:
    """Whether a delivery is due or abandoned: one indexed read, so an idle worker's look for work takes
    no write lock (every worker looks every second: a fleet's worth of empty UPDATEs otherwise)."""
    waiting = or_(
        and_(deliveries.c.state == PENDING, deliveries.c.next_attempt_at <= db_now()),
        and_(deliveries.c.state == DELIVERING, deliveries.c.lease_expires_at < db_now()),
    )
    return conn.execute(select(deliveries.c.id).where(waiting).limit(1)).first() is not None


def claim(
    conn: Connection, worker_id: str, *, lease_seconds: float, max_attempts: int
) -> WebhookDeliveryRecord | None:
    """Take the delivery that has been due longest, in one statement; None when none is due.

    A delivery whose worker was lost on its last allowed try is not taken again: it fails, so ``attempts``
    never passes ``max_attempts``.
    """
    _give_up_abandoned(conn, max_attempts)
    due = or_(
        and_(deliveries.c.state == PENDING, deliveries.c.next_attempt_at <= db_now()),
        # its worker stopped renewing: a crash delays a delivery, never loses it
        and_(
            deliveries.c.state == DELIVERING,
            deliveries.c.lease_expires_at < db_now(),
            deliveries.c.attempts < max_attempts,
        ),
    )
    oldest = select(deliveries.c.id).where(due).order_by(deliveries.c.next_attempt_at).limit(1)
    if conn.dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    lease = db_now(lease_seconds)
    row = conn.execute(
        update(deliveries)
        .where(deliveries.c.id == oldest.scalar_subquery(), due)
        .values(
            state=DELIVERING,
            attempts=deliveries.c.attempts + 1,
            worker_id=worker_id,
            lease_expires_at=lease,
            # an abandoned claim shows as due at its lease's end
            next_attempt_at=lease,
        )
        .returning(*deliveries.c)
    ).one_or_none()
    return None if row is None else record(row)


def _give_up_abandoned(conn: Connection, max_attempts: int) -> None:
    gave_up = conn.execute(
        update(deliveries)
        .where(
            deliveries.c.state == DELIVERING,
            deliveries.c.lease_expires_at < db_now(),
            deliveries.c.attempts >= max_attempts,
        )
        .values(
            state=FAILED,
            worker_id=None,
            lease_expires_at=None,
            last_error=func.coalesce(deliveries.c.last_error, "the worker sending it was lost")
            + f" (gave up after {max_attempts} tries)",
        )
    ).rowcount
    if gave_up:
        totals.add(conn, {(totals.DELIVERY_ATTEMPTS, OUTCOME_LABELS[FAILED]): float(gave_up)})


def extend(conn: Connection, delivery_id: str, worker_id: str, *, lease_seconds: float) -> bool:
    """Push the lease of a delivery being tried; False when ``worker_id`` no longer holds it."""
    lease = db_now(lease_seconds)
    values = {"lease_expires_at": lease, "next_attempt_at": lease}
    return bool(
        conn.execute(update(deliveries).where(_held(delivery_id, worker_id)).values(**values)).rowcount
    )


def finish(conn: Connection, delivery_id: str, worker_id: str, outcome: DeliveryOutcome) -> bool:
    """Write a try's outcome, fenced: only while ``worker_id`` still holds the delivery."""
    if outcome.state not in (WebhookState.DELIVERED, WebhookState.FAILED, WebhookState.PENDING):
        raise ValueError(f"a delivery cannot end a try as {outcome.state}")
    if outcome.state is WebhookState.PENDING and outcome.retry_in is None:
        raise ValueError("a delivery to retry needs retry_in")
    values: dict[str, Any] = {
        "state": outcome.state.value,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error[:2000] if outcome.error else None,
        "worker_id": None,
        "lease_expires_at": None,
    }
    if outcome.state is WebhookState.DELIVERED:
        values["delivered_at"] = db_now()
    if outcome.retry_in is not None and outcome.state is WebhookState.PENDING:
        values["next_attempt_at"] = db_now(outcome.retry_in)
    if conn.execute(update(deliveries).where(_held(delivery_id, worker_id)).values(**values)).rowcount != 1:
        return False
    totals.add(conn, {(totals.DELIVERY_ATTEMPTS, OUTCOME_LABELS[outcome.state.value]): 1.0})
    return True


def _held(delivery_id: str, worker_id: str) -> ColumnElement[bool]:
    return and_(
        deliveries.c.id == delivery_id, deliveries.c.state == DELIVERING, deliveries.c.worker_id == worker_id
    )


def redeliver(conn: Connection, job_id: str, url: str) -> str:
    """One more delivery of a final job: a waiting one is made due now, one in flight is left alone,
    otherwise a new delivery (with a new id) is queued. Returns the id of the delivery that will run."""
    latest = latest_for(conn, [job_id]).get(job_id)
    if latest is not None and latest.state is WebhookState.DELIVERING:
        return latest.id
    if latest is not None and latest.state is WebhookState.PENDING:
        conn.execute(update(deliveries).where(deliveries.c.id == latest.id).values(next_attempt_at=db_now()))
        return latest.id
    delivery_id = enqueue(conn, job_id, url)
    assert delivery_id is not None
    return delivery_id


def latest_for(conn: Connection, job_ids: Iterable[str]) -> dict[str, WebhookDeliveryRecord]:
    """The most recent delivery of each of ``job_ids`` that has one."""
    ids = list(job_ids)
    if not ids:
        return {}
    rows = conn.execute(
        select(deliveries)
        .where(deliveries.c.job_id.in_(ids))
        .order_by(deliveries.c.job_id, deliveries.c.created_at)
    ).all()
    return {row.job_id: record(row) for row in rows}  # later rows win


def for_job(conn: Connection, job_id: str) -> list[WebhookDeliveryRecord]:
    """Every delivery of a job, oldest first."""
    rows = conn.execute(
        select(deliveries).where(deliveries.c.job_id == job_id).order_by(deliveries.c.created_at)
    ).all()
    return [record(row) for row in rows]


def get(conn: Connection, delivery_id: str) -> WebhookDeliveryRecord | None:
    row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).one_or_none()
    return None if row is None else record(row)


def count_by_state(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(deliveries.c.state, func.count()).group_by(deliveries.c.state)).all()
    return {state: int(count) for state, count in rows}


def record(row: Row[Any]) -> WebhookDeliveryRecord:
    return WebhookDeliveryRecord(
        id=row.id,
        job_id=row.job_id,
        url=row.url,
        state=WebhookState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        worker_id=row.worker_id,
        lease_expires_at=row.lease_expires_at,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        event=row.event or FINISHED,
    )
