"""Webhooks: how a delivery is signed, and what each answer of the receiver leads to.

Signature: ``Cesar-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with
``CESAR_WEBHOOK_SECRET`` as the key (no header without a secret). Receivers check it with
:func:`verify_signature`, the same ten lines docs/integrations.md shows, and reject old timestamps against
replays.

Retries: 2xx is success. 408, 429, 5xx and network errors are tried again after ``base * 2**(n-1)`` seconds
(n: tries so far) with +-25 % jitter, or after ``Retry-After`` when the receiver sends one; with the defaults
(8 tries, 30 s) the tries span about an hour. Any other answer (other 4xx, a redirect, which is never
followed) stops at once: trying again would get the same answer.

The HTTP side lives in :mod:`cesar_worker.webhook_sender`.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from cesar_common.db.records import DeliveryOutcome, WebhookState
from cesar_common.text import plain_number

__all__ = [
    "DELIVERY_ID_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "backoff_seconds",
    "decide",
    "refused",
    "retry_after_seconds",
    "schedule",
    "signature_header",
    "verify_signature",
]

SIGNATURE_HEADER = "Cesar-Signature"
DELIVERY_ID_HEADER = "Cesar-Delivery-Id"
EVENT_HEADER = "Cesar-Event"
#: how far a signature's timestamp may be from the receiver's clock (replay protection)
DEFAULT_TOLERANCE_S = 300
#: statuses that mean "try again later"
RETRY_STATUSES = frozenset({408, 429})
JITTER = 0.25
#: longest wait a Retry-After header can ask for
MAX_RETRY_AFTER_S = 3600.0


# --- signing ------------------------------------------------------------------------------------------
def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Cesar-Signature`` value for ``body`` at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, tolerance: int = DEFAULT_TOLERANCE_S) -> bool:
    """True when ``header`` (the ``Cesar-Signature`` value) signs ``body`` with ``secret``, made within
    ``tolerance`` seconds of now. The manual's recipe for receivers is this function."""
    fields = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, received = fields.get("t", ""), fields.get("v1", "")
    made = plain_number(timestamp)
    if made is None or abs(time.time() - made) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    # as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not False)
    return hmac.compare_digest(expected.encode(), received.encode())


# --- retries ------------------------------------------------------------------------------------------
def backoff_seconds(tries: int, *, base: float, rng: random.Random | None = None) -> float:
    """Wait before the next try, after ``tries`` tries: ``base * 2**(tries-1)``, +-25 % jitter."""
    delay = base * 2.0 ** max(tries - 1, 0)
    uniform = rng.uniform if rng is not None else random.uniform
    return delay * uniform(1 - JITTER, 1 + JITTER)


def schedule(max_attempts: int, *, base: float) -> list[float]:
    """The nominal waits between tries (no jitter): for the manual and the tests."""
    return [base * 2**n for n in range(max_attempts - 1)]


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now, capped at an hour."""
    if not value:
        return None
    value = value.strip()
    number = plain_number(value)
    if number is not None:
        seconds = float(number)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def is_retryable(status_code: int) -> bool:
    return status_code in RETRY_STATUSES or status_code >= 500


def decide(
    *,
    status_code: int | None,
    error: str | None,
    tries: int,
    max_attempts: int,
    base: float,
    retry_after: str | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> DeliveryOutcome:
    """What a try that got ``status_code`` (None: no answer, see ``error``) leads to.

    ``now`` only interprets a ``Retry-After`` date, which is the receiver's clock against this host's; the
    next try's time itself is set from the database's clock (``retry_in`` seconds after it).
    """
    if status_code is not None and 200 <= status_code < 300:
        return DeliveryOutcome(WebhookState.DELIVERED, status_code=status_code)
    if status_code is not None and not is_retryable(status_code):
        reason = error or f"the receiver answered {status_code}: not retried"
        return DeliveryOutcome(WebhookState.FAILED, status_code=status_code, error=reason)
    reason = error or f"the receiver answered {status_code}"
    if tries >= max_attempts:
        return DeliveryOutcome(
            WebhookState.FAILED, status_code=status_code, error=f"{reason} (gave up after {tries} tries)"
        )
    wait = retry_after_seconds(retry_after, now=now)
    if wait is None:
        wait = backoff_seconds(tries, base=base, rng=rng)
    return DeliveryOutcome(WebhookState.PENDING, status_code=status_code, error=reason, retry_in=wait)


def refused(reason: str) -> DeliveryOutcome:
    """A delivery that must not be tried again (a refused address, a job that is gone)."""
    return DeliveryOutcome(WebhookState.FAILED, error=reason)
