"""Webhook signatures, the receivers' verification recipe, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from webhook_recipe import verify as readme_verify

from cesar_common.db.records import WebhookState
from cesar_worker.webhooks import (
    backoff_seconds,
    decide,
    retry_after_seconds,
    schedule,
    signature_header,
    verify_signature,
)

SECRET = "whsec_test"
BODY = b'{"id":"job-1","status":"completed"}'
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("verify", [verify_signature, readme_verify], ids=["helper", "readme"])
def test_a_signature_verifies_and_any_change_breaks_it(verify: Callable[..., bool]) -> None:
    check = verify
    header = signature_header(SECRET, BODY)
    assert check(SECRET, header, BODY)
    assert not check("other", header, BODY)
    assert not check(SECRET, header, BODY + b" ")
    assert not check(SECRET, header.replace("v1=", "v1=0"), BODY)
    assert not check(SECRET, "", BODY)
    assert not check(SECRET, "garbage", BODY)
    stale = signature_header(SECRET, BODY, timestamp=int(time.time()) - 301)
    assert not check(SECRET, stale, BODY)
    assert check(SECRET, stale, BODY, 3600)


def test_the_header_is_the_documented_hmac() -> None:
    header = signature_header(SECRET, BODY, timestamp=1700000000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_the_default_schedule_is_eight_tries_over_about_an_hour() -> None:
    waits = schedule(8, base=30)
    assert len(waits) == 7
    assert waits[0] == 30 and waits[-1] == 1920
    assert 55 * 60 <= sum(waits) <= 70 * 60
    rng = random.Random(7)
    for tries, nominal in enumerate(waits, start=1):
        jittered = [backoff_seconds(tries, base=30, rng=rng) for _ in range(50)]
        assert all(0.75 * nominal <= wait <= 1.25 * nominal for wait in jittered)
        assert len(set(jittered)) > 1  # jitter spreads receivers' retries apart


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    outcome = decide(status_code=status, error=None, tries=1, max_attempts=8, base=30, now=NOW)
    assert outcome.state is WebhookState.DELIVERED and outcome.status_code == status


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_and_5xx_retry_with_backoff(status: int) -> None:
    outcome = decide(status_code=status, error=None, tries=3, max_attempts=8, base=30, now=NOW)
    assert outcome.state is WebhookState.PENDING
    assert outcome.retry_in is not None
    assert 90 <= outcome.retry_in <= 150


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 422])
def test_other_answers_stop(status: int) -> None:
    outcome = decide(status_code=status, error=None, tries=1, max_attempts=8, base=30, now=NOW)
    assert outcome.state is WebhookState.FAILED
    assert outcome.retry_in is None


def test_network_errors_retry_until_the_last_try() -> None:
    retry = decide(status_code=None, error="connection refused", tries=7, max_attempts=8, base=30, now=NOW)
    assert retry.state is WebhookState.PENDING and retry.error == "connection refused"
    last = decide(status_code=None, error="connection refused", tries=8, max_attempts=8, base=30, now=NOW)
    assert last.state is WebhookState.FAILED
    assert last.error == "connection refused (gave up after 8 tries)"


def test_retry_after_is_honoured() -> None:
    outcome = decide(
        status_code=429, error=None, tries=1, max_attempts=8, base=30, retry_after="120", now=NOW
    )
    assert outcome.retry_in == 120
    date = "Thu, 02 Jan 2025 03:09:05 GMT"  # five minutes after NOW
    assert retry_after_seconds(date, now=NOW) == 300
    assert retry_after_seconds("999999", now=NOW) == 3600  # capped
    assert retry_after_seconds("soon", now=NOW) is None
    assert retry_after_seconds(None) is None
