"""Sending webhook deliveries: claim a due one from the outbox, POST the job's JSON, record the outcome.

A delivery tells its ``event`` in ``Cesar-Event``: ``job.finished`` (the job's JSON as it ended) or
``transcript.revised`` (an edit of a completed job's transcript: the job's JSON as it is when sent, its
``revision`` the latest, with ``"event": "transcript.revised"`` beside).

Each worker process runs a :class:`DeliveryLoop` on a thread of its own, so a receiver that hangs holds up
only other deliveries, never a transcription. A POST gets 5 s to connect and 10 s in all (a deadline on the
whole exchange: a receiver that trickles bytes cannot stretch it); redirects are not followed. Connections
go through :mod:`cesar_worker.egress`: the address policy of URL jobs (``CESAR_ALLOW_PRIVATE_URLS``) is
checked on the addresses the name resolves to, before connecting, on every try. While a try runs, the
sender keeps the delivery's lease, so no other worker sends the same delivery meanwhile.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from cesar_common import __version__
from cesar_common.db import outbox
from cesar_common.db.records import DeliveryOutcome, WebhookDeliveryRecord, WebhookState
from cesar_common.db.store import JobStore
from cesar_common.errors import CesarError, NotFoundError, URLRefusedError
from cesar_common.settings import Settings
from cesar_common.urlpolicy import validate_url
from cesar_worker import egress
from cesar_worker.webhooks import (
    DELIVERY_ID_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    decide,
    refused,
    signature_header,
)

__all__ = ["DeliveryLoop", "WebhookSender"]

log = logging.getLogger("cesar.webhooks")

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 10.0
USER_AGENT = f"cesar-webhook/{__version__}"
#: the longest an idle loop waits before looking for due deliveries again
IDLE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST came to: a status (and Retry-After), or no answer with the reason."""

    status_code: int | None
    retry_after: str | None = None
    error: str | None = None


class LeaseLost(Exception):  # control flow: another worker took the delivery over
    pass


class WebhookSender:
    """Claims and sends deliveries for one worker."""

    def __init__(self, store: JobStore, settings: Settings, worker_id: str) -> None:
        self.store = store
        self.settings = settings
        self.worker_id = worker_id
        self._secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None

    def send_one(self) -> bool:
        """Claim a due delivery and try it once; False when none was due."""
        delivery = self.store.claim_delivery(
            self.worker_id,
            lease_seconds=self.settings.webhook_lease_seconds,
            max_attempts=self.settings.webhook_max_attempts,
        )
        if delivery is None:
            return False
        started = time.monotonic()
        try:
            outcome = self.attempt(delivery)
        except LeaseLost:
            outcome = None
        if outcome is None or not self.store.finish_delivery(delivery.id, self.worker_id, outcome):
            log.warning(
                "webhook %s: another worker took it over (lease lost); its outcome counts", delivery.id
            )
            return True
        _log_outcome(delivery, outcome, time.monotonic() - started)
        return True

    def attempt(self, delivery: WebhookDeliveryRecord) -> DeliveryOutcome:
        """One try of ``delivery`` (its ``attempts`` already counts this try). Raises LeaseLost when another
        worker took the delivery over while it ran."""
        try:
            body = self.body(delivery.job_id, delivery.event)
        except NotFoundError:
            return refused("the job was deleted")
        try:
            validate_url(
                delivery.url,
                allow_private=self.settings.allow_private_urls,
                resolve=False,
                allowed=self.settings.allow_private_networks,
            )
            answer = self.post(delivery, body)
        except URLRefusedError as exc:  # refused by the policy, before any connection
            return refused(str(exc))
        return decide(
            status_code=answer.status_code,
            error=answer.error,
            tries=delivery.attempts,
            max_attempts=self.settings.webhook_max_attempts,
            base=self.settings.webhook_backoff_seconds,
            retry_after=answer.retry_after,
        )

    def body(self, job_id: str, event: str = outbox.FINISHED) -> bytes:
        """The job's JSON, as ``GET /jobs/{id}`` returns it (with the ``event`` beside for an edit)."""
        from cesar_common.job_json import job_to_schema

        job = job_to_schema(self.store.get_job(job_id))
        if event == outbox.FINISHED:
            return job.model_dump_json().encode()
        return json.dumps({"event": event, **job.model_dump(mode="json")}).encode()

    def headers(self, delivery: WebhookDeliveryRecord, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            DELIVERY_ID_HEADER: delivery.id,
            EVENT_HEADER: delivery.event,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature_header(self._secret, body)
        return headers

    def post(self, delivery: WebhookDeliveryRecord, body: bytes) -> Answer:
        host = urlsplit(delivery.url).hostname or delivery.url
        guard = egress.Guard(
            allow_private=self.settings.allow_private_urls,
            allowed=self.settings.allow_private_networks,
            deadline=time.monotonic() + TOTAL_TIMEOUT_S,
            on_tick=self._lease_keeper(delivery),
        )
        timeout = httpx.Timeout(TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        try:
            with (
                egress.client(guard, timeout=timeout) as client,
                client.stream(
                    "POST", delivery.url, content=body, headers=self.headers(delivery, body)
                ) as answer,
            ):
                return Answer(answer.status_code, retry_after=answer.headers.get("retry-after"))
        except egress.DeadlineExceeded:
            return Answer(None, error=f"{host} did not answer within {TOTAL_TIMEOUT_S:g} s")
        except httpx.ConnectTimeout:
            return Answer(None, error=f"{host} did not accept a connection within {CONNECT_TIMEOUT_S:g} s")
        except httpx.HTTPError as exc:
            return Answer(None, error=f"{type(exc).__name__} talking to {host}: {exc}".rstrip(": "))

    def _lease_keeper(self, delivery: WebhookDeliveryRecord) -> Callable[[], None]:
        """Extend the delivery's lease every third of its length while the try runs."""
        lease = self.settings.webhook_lease_seconds
        next_extension = time.monotonic() + lease / 3

        def keep() -> None:
            nonlocal next_extension
            if time.monotonic() < next_extension:
                return
            next_extension = time.monotonic() + lease / 3
            if not self.store.extend_delivery_lease(delivery.id, self.worker_id, lease_seconds=lease):
                raise LeaseLost

        return keep


class DeliveryLoop:
    """A daemon thread sending due deliveries until :meth:`close`.

    It runs on through a worker's shutdown grace period (a job finishing then still gets its webhook out)
    and stops when the worker closes it on the way out.
    """

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        worker_id: str,
        *,
        sender: WebhookSender | None = None,
        idle_seconds: float | None = None,
    ) -> None:
        self.sender = sender or WebhookSender(store, settings, worker_id)
        self.idle_seconds = (
            idle_seconds if idle_seconds is not None else min(IDLE_SECONDS, settings.poll_max_seconds)
        )
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cesar-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look for due deliveries now (this worker just finished a job)."""
        self._wake.set()

    def flush(self, timeout: float = TOTAL_TIMEOUT_S) -> None:
        """Send what is due now from the calling thread, for up to about ``timeout`` seconds (a worker
        run with ``--once`` that is about to exit). Claims are atomic, so the thread may run beside it."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.sender.send_one():
                pass
        except CesarError as exc:
            log.warning("webhooks: %s", exc)

    def close(self, timeout: float = 1.0) -> None:
        """Stop after the delivery in flight; one still running after ``timeout`` is left to its lease."""
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                if self.sender.send_one():
                    continue
            except CesarError as exc:  # the database hiccuped: try again after a pause
                log.warning("webhooks: %s", exc)
            except Exception:
                log.exception("webhooks: unexpected error")
            if self._wake.wait(self.idle_seconds):
                self._wake.clear()


def _log_outcome(delivery: WebhookDeliveryRecord, outcome: DeliveryOutcome, seconds: float) -> None:
    what = f"webhook {delivery.id} (job {delivery.job_id}, try {delivery.attempts})"
    status = f" {outcome.status_code}" if outcome.status_code is not None else ""
    if outcome.state is WebhookState.DELIVERED:
        log.info("%s delivered:%s in %.2f s", what, status, seconds)
    elif outcome.state is WebhookState.PENDING:
        log.warning("%s will be retried in %.0f s: %s", what, outcome.retry_in or 0.0, outcome.error)
    else:
        log.warning("%s failed for good: %s", what, outcome.error)
