"""Sending webhook deliveries: claim a due one from the outbox, POST the job's JSON, record the outcome.

Each worker process runs a :class:`DeliveryLoop` on a thread of its own, so a receiver that hangs holds up
only other deliveries, never a transcription. A POST gets 5 s to connect and 10 s in all (an asyncio deadline
around the whole exchange: a receiver that trickles bytes cannot stretch it); redirects are not followed.
The address policy of URL jobs (``CESAR_ALLOW_PRIVATE_URLS``) is checked before every try, on the addresses
the name resolves to now and on the address actually connected to (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from cesar_common import __version__
from cesar_common.db.records import DeliveryOutcome, WebhookDeliveryRecord, WebhookState
from cesar_common.db.store import JobStore
from cesar_common.errors import CesarError, NotFoundError, URLRefusedError
from cesar_common.settings import Settings
from cesar_common.urlpolicy import check_address, resolve_host, validate_url
from cesar_worker.webhooks import (
    DELIVERY_ID_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    decide,
    refused,
    signature_header,
)

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


class WebhookSender:
    """Claims and sends deliveries for one worker. ``transport``: an httpx transport for tests."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        worker_id: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker_id = worker_id
        self.transport = transport
        self._secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        self._ssl_context: ssl.SSLContext | None = None

    def send_one(self) -> bool:
        """Claim a due delivery and try it once; False when none was due."""
        delivery = self.store.claim_delivery(
            self.worker_id, lease_seconds=self.settings.webhook_lease_seconds
        )
        if delivery is None:
            return False
        started = time.monotonic()
        outcome = self.attempt(delivery)
        if not self.store.finish_delivery(delivery.id, self.worker_id, outcome):
            log.warning(
                "webhook %s: another worker took it over (lease lost); its outcome counts", delivery.id
            )
            return True
        _log_outcome(delivery, outcome, time.monotonic() - started)
        return True

    def attempt(self, delivery: WebhookDeliveryRecord) -> DeliveryOutcome:
        """One try of ``delivery`` (its ``attempts`` already counts this try)."""
        try:
            body = self.body(delivery.job_id)
        except NotFoundError:
            return refused("the job was deleted")
        try:
            if self._check_address(delivery.url):
                answer = self.post(delivery, body)
            else:
                answer = Answer(None, error=_unresolved(delivery.url))
        except URLRefusedError as exc:  # refused by the policy: now, or at the address connected to
            return refused(str(exc))
        return decide(
            status_code=answer.status_code,
            error=answer.error,
            tries=delivery.attempts,
            max_attempts=self.settings.webhook_max_attempts,
            base=self.settings.webhook_backoff_seconds,
            retry_after=answer.retry_after,
        )

    def body(self, job_id: str) -> bytes:
        """The job's JSON, as ``GET /jobs/{id}`` returns it."""
        from cesar_common.schemas import job_to_schema

        return job_to_schema(self.store.get_job(job_id)).model_dump_json().encode()

    def headers(self, delivery: WebhookDeliveryRecord, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            DELIVERY_ID_HEADER: delivery.id,
            EVENT_HEADER: "job.finished",
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature_header(self._secret, body)
        return headers

    def post(self, delivery: WebhookDeliveryRecord, body: bytes) -> Answer:
        return asyncio.run(self._post(delivery.url, body, self.headers(delivery, body)))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        host = urlsplit(url).hostname or url
        allow_private = self.settings.allow_private_urls
        timeout = httpx.Timeout(TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        if self._ssl_context is None:
            # loading the CA bundle costs a tenth of a second: once per sender, not per try
            self._ssl_context = httpx.create_ssl_context()
        try:
            async with (
                asyncio.timeout(TOTAL_TIMEOUT_S),
                httpx.AsyncClient(
                    timeout=timeout,
                    follow_redirects=False,
                    trust_env=False,  # no proxies from the environment: the policy must see the real peer
                    verify=self._ssl_context,
                    transport=self.transport,
                ) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                _check_peer(response, allow_private=allow_private, host=host)
                return Answer(response.status_code, retry_after=response.headers.get("retry-after"))
        except TimeoutError:
            return Answer(None, error=f"{host} did not answer within {TOTAL_TIMEOUT_S:g} s")
        except httpx.ConnectTimeout:
            return Answer(None, error=f"{host} did not accept a connection within {CONNECT_TIMEOUT_S:g} s")
        except httpx.HTTPError as exc:
            return Answer(None, error=f"{type(exc).__name__} talking to {host}: {exc}".rstrip(": "))

    def _check_address(self, url: str) -> bool:
        """Raise URLRefusedError where the policy refuses the URL; False when its host does not resolve
        (a network error, tried again later)."""
        allow_private = self.settings.allow_private_urls
        validate_url(url, allow_private=allow_private, resolve=False)
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        try:
            addresses = resolve_host(host, parts.port or (443 if parts.scheme.lower() == "https" else 80))
        except URLRefusedError:
            return False
        for address in addresses:
            check_address(address, allow_private=allow_private, host=host)
        return True


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


def _check_peer(response: httpx.Response, *, allow_private: bool, host: str) -> None:
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer:
        check_address(str(peer[0]), allow_private=allow_private, host=host)


def _unresolved(url: str) -> str:
    return f"cannot resolve host {urlsplit(url).hostname}"


def _log_outcome(delivery: WebhookDeliveryRecord, outcome: DeliveryOutcome, seconds: float) -> None:
    what = f"webhook {delivery.id} (job {delivery.job_id}, try {delivery.attempts})"
    status = f" {outcome.status_code}" if outcome.status_code is not None else ""
    if outcome.state is WebhookState.DELIVERED:
        log.info("%s delivered:%s in %.2f s", what, status, seconds)
    elif outcome.state is WebhookState.PENDING:
        log.warning("%s will be retried at %s: %s", what, outcome.retry_at, outcome.error)
    else:
        log.warning("%s failed for good: %s", what, outcome.error)
