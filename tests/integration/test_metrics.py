"""Metrics: what the collector reads from the database parses as Prometheus text and matches the rows."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from api_helpers import error_body, running_api
from dbtools import utcnow
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from cesar_api.job_metrics import render, store_registry
from cesar_common.db.records import (
    DeliveryOutcome,
    JobResult,
    JobSource,
    NewJob,
    TranscribeOptions,
    WebhookState,
)
from cesar_common.db.store import JobStore
from cesar_common.db.tables import Job, WebhookDelivery

WORKER = "metrics-worker"
HOOK = "https://93.184.215.14/hook"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: ``(name, sorted labels) -> value``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape_store(store: JobStore) -> str:
    return render(store_registry(store, alive_within_seconds=60)).decode()


def value(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


def submit(store: JobStore, *, callback: str | None = None) -> str:
    new = NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model="tiny.en"),
        filename="a.wav",
        callback_url=callback,
    )
    return store.create_job(new, b"audio").id


def run_to_completion(store: JobStore, *, audio: float, wall: float, callback: str | None = None) -> str:
    job_id = submit(store, callback=callback)
    claimed = store.claim_work(WORKER, lease_seconds=60)
    assert claimed is not None and claimed.id == job_id
    # pretend the job started ``wall`` seconds ago, so its wall time is known
    with store.engine.begin() as conn:
        conn.execute(
            update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=wall))
        )
    store.complete_job(job_id, WORKER, JobResult("hi", "en", 0.9, audio, []))
    return job_id


def db_status_counts(store: JobStore) -> Counter[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return Counter({status: int(count) for status, count in rows})


@pytest.fixture
def populated(store: JobStore) -> JobStore:
    store.register_worker(WORKER, host="h", pid=1)
    run_to_completion(store, audio=7.2, wall=1.2)
    run_to_completion(store, audio=69.7, wall=4.0, callback=HOOK)
    run_to_completion(store, audio=30.0, wall=100.0, callback=HOOK)
    failing = submit(store)
    assert store.claim_work(WORKER, lease_seconds=60) is not None
    store.fail_job(failing, WORKER, code="decode_failed", message="bad")
    store.request_cancel(submit(store))
    running = submit(store)
    assert store.claim_work(WORKER, lease_seconds=60) is not None
    oldest = submit(store)
    with store.engine.begin() as conn:  # the oldest queued job waited two minutes
        conn.execute(update(Job).where(Job.id == oldest).values(created_at=utcnow() - timedelta(minutes=2)))
    submit(store)
    assert running
    # one delivery succeeds, one is retried
    for outcome in (
        DeliveryOutcome(WebhookState.DELIVERED, status_code=200),
        DeliveryOutcome(WebhookState.PENDING, status_code=500, retry_in=3600),
    ):
        delivery = store.claim_delivery(WORKER, lease_seconds=30, max_attempts=8)
        assert delivery is not None
        assert store.finish_delivery(delivery.id, WORKER, outcome)
    return store


def test_the_scrape_matches_the_database(populated: JobStore) -> None:
    store = populated
    scrape = samples(scrape_store(store))

    assert value(scrape, "cesar_database_up") == 1
    counts = db_status_counts(store)
    for status in ("queued", "processing", "completed", "error", "cancelled"):
        assert value(scrape, "cesar_jobs", status=status) == counts[status], status
    assert value(scrape, "cesar_queue_depth") == counts["queued"] == 2
    assert 115 <= value(scrape, "cesar_oldest_queued_job_age_seconds") <= 180
    assert value(scrape, "cesar_workers_alive") == 1

    assert value(scrape, "cesar_jobs_finished_total", status="completed") == 3
    assert value(scrape, "cesar_jobs_finished_total", status="error") == 1
    assert value(scrape, "cesar_jobs_finished_total", status="cancelled") == 1

    assert value(scrape, "cesar_job_wall_seconds_count") == 3
    assert value(scrape, "cesar_job_wall_seconds_bucket", le="1.0") == 0
    assert value(scrape, "cesar_job_wall_seconds_bucket", le="5.0") == 2
    assert value(scrape, "cesar_job_wall_seconds_bucket", le="+Inf") == 3
    assert 105 <= value(scrape, "cesar_job_wall_seconds_sum") <= 106
    assert value(scrape, "cesar_job_audio_seconds_count") == 3
    assert value(scrape, "cesar_job_audio_seconds_sum") == pytest.approx(7.2 + 69.7 + 30.0)
    assert value(scrape, "cesar_job_audio_seconds_bucket", le="60.0") == 2
    assert value(scrape, "cesar_job_realtime_factor_count") == 3
    assert value(scrape, "cesar_job_realtime_factor_bucket", le="0.5") == 1  # 30 s of audio in 100 s

    with store.engine.connect() as conn:
        states = Counter(
            dict(conn.execute(select(WebhookDelivery.state, func.count()).group_by("state")).all())
        )
    for state in WebhookState:
        assert value(scrape, "cesar_webhook_deliveries", state=state.value) == states[state.value]
    assert value(scrape, "cesar_webhook_attempts_total", outcome="delivered") == 1
    assert value(scrape, "cesar_webhook_attempts_total", outcome="retried") == 1
    assert value(scrape, "cesar_webhook_attempts_total", outcome="failed") == 0


def test_counters_survive_retention(populated: JobStore) -> None:
    store = populated
    with store.engine.begin() as conn:
        conn.execute(
            update(Job).where(Job.status == "completed").values(completed_at=utcnow() - timedelta(days=9))
        )
        conn.execute(update(WebhookDelivery).values(state="delivered"))
    assert store.purge_finished_jobs(older_than_seconds=86400) == 3
    scrape = samples(scrape_store(store))
    assert value(scrape, "cesar_jobs", status="completed") == 0
    assert value(scrape, "cesar_jobs_finished_total", status="completed") == 3  # never goes backwards
    assert value(scrape, "cesar_job_wall_seconds_count") == 3


def test_an_unreachable_database_reports_down() -> None:
    store = JobStore.from_url("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    scrape = samples(scrape_store(store))
    assert value(scrape, "cesar_database_up") == 0
    assert not any(name == "cesar_jobs" for name, _labels in scrape)


# --- over HTTP --------------------------------------------------------------------------------------------
def test_get_metrics_needs_the_key_parses_and_counts_requests(populated: JobStore, db_url: str) -> None:
    with running_api(db_url, api_key="s3cret") as api:
        error_body(api.client.get("/metrics"), 401)
        auth = {"Authorization": "Bearer s3cret"}
        assert api.client.get("/jobs/no-such-job", headers=auth).status_code == 404
        assert api.client.get("/jobs", headers=auth).status_code == 200
        assert api.client.get("/no/such/route", headers=auth).status_code == 404
        response = api.client.get("/metrics", headers=auth)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        scrape = samples(response.text)
        counts = db_status_counts(populated)
        for status in ("queued", "processing", "completed", "error", "cancelled"):
            assert value(scrape, "cesar_jobs", status=status) == counts[status]
        assert value(scrape, "cesar_job_wall_seconds_count") == counts["completed"]

        def requests(method: str, route: str, status: str) -> float:
            return value(scrape, "cesar_http_requests_total", method=method, route=route, status=status)

        assert requests("GET", "/jobs/{job_id}", "404") == 1
        assert requests("GET", "/jobs", "200") == 1
        assert requests("GET", "/metrics", "401") == 1
        assert requests("GET", "(unmatched)", "404") == 1
        assert value(scrape, "cesar_http_request_duration_seconds_count", route="/jobs") == 1
        again = samples(api.client.get("/metrics", headers=auth).text)
        assert value(again, "cesar_http_requests_total", method="GET", route="/metrics", status="200") == 1
