"""Webhooks: the outbox in the job store, and deliveries to a real HTTP receiver on 127.0.0.1.

Each backend runs the same tests. Backoff is shortened through ``CESAR_WEBHOOK_BACKOFF_SECONDS``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from api_helpers import error_body, running_api
from dbtools import age, utcnow
from sqlalchemy import func, select
from webhook_recipe import verify as readme_verify
from webhook_support import webhook_receiver
from worker_support import wait_final, worker_processes

from cesar_common.db.records import (
    DeliveryOutcome,
    JobRecord,
    JobResult,
    JobSource,
    NewJob,
    TranscribeOptions,
    WebhookDeliveryRecord,
    WebhookState,
)
from cesar_common.db.store import JobStore
from cesar_common.db.tables import Job, WebhookDelivery, webhook_deliveries
from cesar_common.errors import ConflictError, NotFoundError
from cesar_common.job_json import job_to_schema
from cesar_common.settings import Settings
from cesar_worker.webhook_sender import WebhookSender
from cesar_worker.webhooks import verify_signature

SECRET = "whsec_test_secret"
HOOK = "https://93.184.215.14/hook"
RESULT = JobResult(text="hello", language="en", language_probability=0.9, duration=7.2, segments=[])
FINAL_DELIVERY_STATES = (WebhookState.DELIVERED, WebhookState.FAILED)


def settings_for(db_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db_url,
        "allow_private_urls": True,
        "webhook_secret": SECRET,
        "webhook_backoff_seconds": 0.05,
        "webhook_lease_seconds": 30,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def submit(store: JobStore, callback: str | None = HOOK) -> JobRecord:
    new = NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model="tiny.en"),
        filename="a.wav",
        callback_url=callback,
    )
    return store.create_job(new, b"audio")


def claimed(store: JobStore, callback: str | None = HOOK, worker: str = "w1") -> JobRecord:
    job = submit(store, callback)
    got = store.claim_work(worker, lease_seconds=60)
    assert got is not None and got.id == job.id
    return got


def deliveries_of(store: JobStore, job_id: str) -> list[WebhookDeliveryRecord]:
    return store.list_deliveries(job_id)


def drain(sender: WebhookSender, store: JobStore, job_id: str, timeout: float = 20) -> WebhookDeliveryRecord:
    """Run the sender until the job's latest delivery is delivered or failed."""
    deadline = time.monotonic() + timeout
    while True:
        latest = deliveries_of(store, job_id)[-1]
        if latest.state in FINAL_DELIVERY_STATES:
            return latest
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery not final after {timeout} s: {latest}")
        if not sender.send_one():
            time.sleep(0.01)


SenderFactory = Callable[..., WebhookSender]


@pytest.fixture
def sender_for(store: JobStore, db_url: str) -> SenderFactory:
    def make(**overrides: object) -> WebhookSender:
        return WebhookSender(store, settings_for(db_url, **overrides), "sender-1")

    return make


# --- the outbox -------------------------------------------------------------------------------------------
def test_every_path_to_a_final_state_queues_one_delivery(store: JobStore) -> None:
    ends: dict[str, str] = {}
    job = claimed(store)
    store.complete_job(job.id, "w1", RESULT)
    ends[job.id] = "completed"
    job = claimed(store)
    store.fail_job(job.id, "w1", code="decode_failed", message="bad")
    ends[job.id] = "error"
    job = claimed(store)
    store.cancel_running(job.id, "w1")
    ends[job.id] = "cancelled running"
    job = submit(store)
    store.request_cancel(job.id)
    ends[job.id] = "cancelled queued"
    job = claimed(store)
    store.request_cancel(job.id)
    store.release_job(job.id, "w1")  # shutting down with a cancel pending: cancelled
    ends[job.id] = "released"
    lost = NewJob(
        source=JobSource.URL, options=TranscribeOptions(model="tiny.en"), source_url=HOOK, max_attempts=1
    )
    lost_job = store.create_job(lost.__class__(**{**_fields(lost), "callback_url": HOOK}), None)
    assert store.claim_work("w1", lease_seconds=60) is not None
    age(store.engine, Job.__table__, "lease_expires_at", 120, id=lost_job.id)
    assert store.sweep_expired_leases().failed == [lost_job.id]
    ends[lost_job.id] = "worker lost"

    for job_id, how in ends.items():
        found = deliveries_of(store, job_id)
        assert len(found) == 1, how
        assert found[0].state is WebhookState.PENDING and found[0].url == HOOK and found[0].attempts == 0
        record = store.get_job(job_id)
        assert record.is_final and record.webhook == found[0], how

    quiet = claimed(store, callback=None)
    store.complete_job(quiet.id, "w1", RESULT)
    assert deliveries_of(store, quiet.id) == []
    assert store.get_job(quiet.id).webhook is None
    assert store.claim_work("w1", lease_seconds=60) is None


def without_webhook(job: dict[str, object]) -> dict[str, object]:
    """A job's JSON but its ``webhook``, which moves on as the delivery does."""
    return {key: value for key, value in job.items() if key != "webhook"}


def _fields(new: NewJob) -> dict[str, object]:
    return {name: getattr(new, name) for name in new.__dataclass_fields__}


def test_a_refused_finish_writes_no_delivery(store: JobStore) -> None:
    job = claimed(store)
    assert not store.complete_job(job.id, "someone-else", RESULT)  # fenced: nothing happens
    assert deliveries_of(store, job.id) == []


def test_claims_are_leased_fenced_and_retried_after_a_crash(store: JobStore) -> None:
    job = claimed(store)
    store.complete_job(job.id, "w1", RESULT)
    first = store.claim_delivery("a", lease_seconds=0.5, max_attempts=8)
    assert first is not None and first.job_id == job.id
    assert first.state is WebhookState.DELIVERING and first.attempts == 1 and first.worker_id == "a"
    assert store.claim_delivery("b", lease_seconds=0.5, max_attempts=8) is None  # held

    age(
        store.engine, webhook_deliveries, "lease_expires_at", 3600, id=first.id
    )  # "a" died: its lease ran out
    second = store.claim_delivery("b", lease_seconds=30, max_attempts=8)
    assert second is not None and second.id == first.id and second.attempts == 2
    outcome = DeliveryOutcome(WebhookState.DELIVERED, status_code=200)
    assert not store.finish_delivery(first.id, "a", outcome)  # too late for "a"
    assert store.finish_delivery(first.id, "b", outcome)
    done = store.get_delivery(first.id)
    assert done.state is WebhookState.DELIVERED and done.delivered_at is not None
    assert done.worker_id is None and done.last_status_code == 200
    assert store.claim_delivery("c", lease_seconds=30, max_attempts=8) is None


def test_a_retry_waits_for_its_time(store: JobStore) -> None:
    job = claimed(store)
    store.complete_job(job.id, "w1", RESULT)
    delivery = store.claim_delivery("a", lease_seconds=30, max_attempts=8)
    assert delivery is not None
    outcome = DeliveryOutcome(WebhookState.PENDING, status_code=503, error="busy", retry_in=1.0)
    assert store.finish_delivery(delivery.id, "a", outcome)
    assert store.claim_delivery("a", lease_seconds=30, max_attempts=8) is None  # not due yet
    waiting = deliveries_of(store, job.id)[0]
    assert waiting.next_attempt_at > utcnow()  # due about retry_in from now, by the database's clock
    age(store.engine, webhook_deliveries, "next_attempt_at", 1.5, id=delivery.id)  # a second and a half on
    again = store.claim_delivery("a", lease_seconds=30, max_attempts=8)
    assert again is not None
    assert again.id == delivery.id and again.attempts == 2 and again.last_status_code == 503


def test_redeliver(store: JobStore) -> None:
    with pytest.raises(NotFoundError):
        store.redeliver_webhook("no-such-job")
    quiet = claimed(store, callback=None)
    store.complete_job(quiet.id, "w1", RESULT)
    with pytest.raises(ConflictError, match="no callback_url"):
        store.redeliver_webhook(quiet.id)
    running = claimed(store)
    with pytest.raises(ConflictError, match="is processing"):
        store.redeliver_webhook(running.id)
    store.complete_job(running.id, "w1", RESULT)

    job = running
    first = deliveries_of(store, job.id)[0]
    store.redeliver_webhook(job.id)  # still waiting: the same delivery, due now
    assert [d.id for d in deliveries_of(store, job.id)] == [first.id]

    claim = store.claim_delivery("a", lease_seconds=30, max_attempts=8)
    assert claim is not None
    store.finish_delivery(claim.id, "a", DeliveryOutcome(WebhookState.FAILED, status_code=410, error="gone"))
    record = store.redeliver_webhook(job.id)
    found = deliveries_of(store, job.id)
    assert len(found) == 2 and found[1].id != first.id
    assert found[1].state is WebhookState.PENDING and found[1].attempts == 0
    assert record.webhook == found[1]


# --- sending to a real receiver ---------------------------------------------------------------------------
def test_the_delivery_is_signed_and_verifies_with_the_recipe(
    store: JobStore, sender_for: SenderFactory
) -> None:
    sender = sender_for()
    with webhook_receiver(200) as receiver:
        job = claimed(store, callback=receiver.url)
        store.complete_job(job.id, "w1", RESULT)
        delivered = drain(sender, store, job.id)
        (request,) = receiver.wait_for(1)
    assert delivered.state is WebhookState.DELIVERED and delivered.attempts == 1
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["cesar-delivery-id"] == delivered.id
    assert verify_signature(SECRET, request.headers["cesar-signature"], request.body)
    assert not verify_signature("wrong", request.headers["cesar-signature"], request.body)
    body = json.loads(request.body)
    assert body["id"] == job.id and body["status"] == "completed" and body["result_text"] == "hello"


def test_without_a_secret_there_is_no_signature(store: JobStore, sender_for: SenderFactory) -> None:
    sender = sender_for(webhook_secret=None)
    with webhook_receiver(204) as receiver:
        job = claimed(store, callback=receiver.url)
        store.complete_job(job.id, "w1", RESULT)
        assert drain(sender, store, job.id).state is WebhookState.DELIVERED
        (request,) = receiver.wait_for(1)
    assert "cesar-signature" not in request.headers
    assert "cesar-delivery-id" in request.headers


def test_500_twice_then_200_makes_three_deliveries(store: JobStore, sender_for: SenderFactory) -> None:
    sender = sender_for()
    with webhook_receiver(500, 500, 200) as receiver:
        job = claimed(store, callback=receiver.url)
        store.fail_job(job.id, "w1", code="decode_failed", message="bad")
        delivered = drain(sender, store, job.id)
        requests = receiver.wait_for(3)
    assert delivered.state is WebhookState.DELIVERED
    assert delivered.attempts == 3 and delivered.last_status_code == 200
    assert len(requests) == 3
    assert len({r.headers["cesar-delivery-id"] for r in requests}) == 1  # one delivery, three tries
    assert all(verify_signature(SECRET, r.headers["cesar-signature"], r.body) for r in requests)
    assert requests[1].at - requests[0].at >= 0.03  # backed off (0.05 s +-25 %)


def test_410_makes_one_delivery(store: JobStore, sender_for: SenderFactory) -> None:
    sender = sender_for()
    with webhook_receiver(410) as receiver:
        job = claimed(store, callback=receiver.url)
        store.complete_job(job.id, "w1", RESULT)
        failed = drain(sender, store, job.id)
        assert not sender.send_one()  # failed for good: never due again
        assert len(receiver.received) == 1
    assert failed.state is WebhookState.FAILED and failed.attempts == 1
    assert failed.last_status_code == 410 and "not retried" in (failed.last_error or "")


def test_retries_end_after_max_attempts(store: JobStore, sender_for: SenderFactory) -> None:
    sender = sender_for(webhook_max_attempts=3)
    with webhook_receiver(503) as receiver:
        job = claimed(store, callback=receiver.url)
        store.complete_job(job.id, "w1", RESULT)
        failed = drain(sender, store, job.id)
        assert len(receiver.received) == 3
    assert failed.state is WebhookState.FAILED and failed.attempts == 3
    assert "gave up after 3 tries" in (failed.last_error or "")


def test_retry_after_is_honoured(store: JobStore, sender_for: SenderFactory) -> None:
    sender = sender_for()
    with webhook_receiver(429, retry_after="1") as receiver:
        job = claimed(store, callback=receiver.url)
        store.complete_job(job.id, "w1", RESULT)
        before = utcnow()
        assert sender.send_one()
        after = utcnow()
        waiting = deliveries_of(store, job.id)[0]
    assert waiting.state is WebhookState.PENDING and waiting.last_status_code == 429
    assert before + timedelta(seconds=1) <= waiting.next_attempt_at <= after + timedelta(seconds=1)


def test_a_refused_address_is_never_contacted(store: JobStore, sender_for: SenderFactory) -> None:
    with webhook_receiver(200) as receiver:
        strict = sender_for(allow_private_urls=False)
        job = claimed(store, callback=receiver.url)
        store.complete_job(job.id, "w1", RESULT)
        failed = drain(strict, store, job.id)
        assert receiver.received == []
    assert failed.state is WebhookState.FAILED and "loopback" in (failed.last_error or "")

    metadata = claimed(store, callback="http://169.254.169.254/latest/meta-data/")
    store.complete_job(metadata.id, "w1", RESULT)
    failed = drain(sender_for(), store, metadata.id)
    assert failed.state is WebhookState.FAILED and "never allowed" in (failed.last_error or "")


def test_an_unreachable_receiver_is_retried(store: JobStore, sender_for: SenderFactory) -> None:
    with webhook_receiver(200) as receiver:
        closed_url = receiver.url
    job = claimed(store, callback=closed_url)  # nothing listens there any more
    store.complete_job(job.id, "w1", RESULT)
    sender = sender_for()
    assert sender.send_one()
    waiting = deliveries_of(store, job.id)[0]
    assert waiting.state is WebhookState.PENDING and waiting.last_status_code is None
    assert "ConnectError" in (waiting.last_error or "")


def test_deleting_a_job_removes_its_deliveries(store: JobStore) -> None:
    job = claimed(store)
    store.complete_job(job.id, "w1", RESULT)
    store.delete_job(job.id)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(WebhookDelivery)).scalar_one() == 0


# --- worker processes -------------------------------------------------------------------------------------
def worker_env(**extra: str) -> dict[str, str]:
    return {
        "CESAR_ALLOW_PRIVATE_URLS": "true",
        "CESAR_WEBHOOK_SECRET": SECRET,
        "CESAR_WEBHOOK_BACKOFF_SECONDS": "0.1",
        "CESAR_POLL_MAX_SECONDS": "0.2",
        **extra,
    }


def wait_delivery(store: JobStore, job_id: str, timeout: float = 30) -> WebhookDeliveryRecord:
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries_of(store, job_id)
        if found and found[-1].state in FINAL_DELIVERY_STATES:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no final delivery after {timeout} s: {found}")
        time.sleep(0.02)


def test_a_real_transcription_is_delivered_signed(sqlite_url: str, tmp_path: Path, audio_dir: Path) -> None:
    """The real worker and Whisper: the receiver gets the finished job, signed, once.

    SQLite only: the fake-engine worker tests below run the same delivery path on both backends.
    """
    db_url = sqlite_url
    store = JobStore.from_url(db_url)  # the cached engine is disposed by the sqlite_url fixture
    with worker_processes(tmp_path) as start, webhook_receiver(200) as receiver:
        new = NewJob(
            source=JobSource.UPLOAD,
            options=TranscribeOptions(model="tiny.en"),
            filename="speech_en.wav",
            callback_url=receiver.url,
        )
        with (audio_dir / "speech_en.wav").open("rb") as audio:
            job = store.create_job(new, audio)
        worker = start(db_url, env=worker_env())
        (request,) = receiver.wait_for(1, timeout=60)
        delivered = wait_delivery(store, job.id)
        worker.terminate()
        assert worker.wait() == 0
    assert readme_verify(SECRET, request.headers["cesar-signature"], request.body)
    body = json.loads(request.body)
    assert body["id"] == job.id and body["status"] == "completed"
    assert "lazy" in body["result_text"].lower()
    shown = job_to_schema(store.get_job(job.id)).model_dump(mode="json")  # what GET /jobs/{id} shows
    assert without_webhook(body) == without_webhook(shown)
    assert delivered.state is WebhookState.DELIVERED and delivered.attempts == 1
    assert request.headers["cesar-delivery-id"] == delivered.id


def test_a_killed_worker_s_delivery_is_sent_by_the_next_one(
    store: JobStore, db_url: str, tmp_path: Path
) -> None:
    """kill -9 of the worker while it holds a due delivery: a new worker delivers it (short lease)."""
    env = worker_env(CESAR_WEBHOOK_LEASE_SECONDS="1.5")
    with worker_processes(tmp_path) as start, webhook_receiver(("hang", 30), 200) as receiver:
        job = submit(store, callback=receiver.url)
        first = start(db_url, fake=True, env=env)
        receiver.wait_for(1)  # the first worker is mid-delivery: the receiver holds it
        held = deliveries_of(store, job.id)[0]
        assert held.state is WebhookState.DELIVERING and held.worker_id is not None
        first.kill()
        second = start(db_url, fake=True, env=env)
        requests = receiver.wait_for(2, timeout=30)
        delivered = wait_delivery(store, job.id)
        second.terminate()
        assert second.wait() == 0
    assert delivered.state is WebhookState.DELIVERED
    assert delivered.attempts == 2 and delivered.id == held.id
    assert {r.headers["cesar-delivery-id"] for r in requests} == {held.id}
    assert all(verify_signature(SECRET, r.headers["cesar-signature"], r.body) for r in requests)


def test_a_hanging_receiver_does_not_stall_transcription(
    store: JobStore, db_url: str, tmp_path: Path
) -> None:
    with worker_processes(tmp_path) as start, webhook_receiver(("hang", 30)) as receiver:
        worker = start(db_url, fake=True, env=worker_env())
        hooked = submit(store, callback=receiver.url)
        receiver.wait_for(1)  # the POST hangs
        # the delivery thread is stuck on the receiver (up to its 10 s timeout); jobs still run
        later = [submit(store, callback=None) for _ in range(3)]
        for job_id in (job.id for job in later):
            done = wait_final(store, job_id, timeout=8)
            assert done.status.value == "completed"
        # all while the POST still hung: its delivery is still being tried
        assert deliveries_of(store, hooked.id)[0].state is WebhookState.DELIVERING
        worker.terminate()
        assert worker.wait() == 0


# --- over HTTP --------------------------------------------------------------------------------------------
def test_callback_url_on_both_submit_forms(db_url: str, audio_dir: Path) -> None:
    with running_api(db_url, allow_private_urls=True) as api, webhook_receiver(200) as receiver:
        with (audio_dir / "speech_en.wav").open("rb") as audio:
            files = {"file": ("speech_en.wav", audio, "audio/wav")}
            uploaded = api.client.post("/transcribe", files=files, data={"callback_url": receiver.url})
        assert uploaded.status_code == 202, uploaded.text
        by_url = api.client.post(
            "/transcribe/url", json={"url": "https://93.184.215.14/a.mp3", "callback_url": receiver.url}
        )
        assert by_url.status_code == 202, by_url.text
        for response in (uploaded, by_url):
            webhook = response.json()["webhook"]
            assert webhook["url"] == receiver.url and webhook["state"] == "waiting"
            assert api.store.get_job(response.json()["id"]).callback_url == receiver.url
        plain = api.client.post("/transcribe", json={"url": "https://93.184.215.14/a.mp3"})
        assert plain.json()["webhook"] is None


REFUSED_CALLBACKS = [
    ("http://169.254.169.254/latest/meta-data/", True, "never allowed"),
    ("http://127.0.0.1:9/hook", False, "loopback"),
    ("ftp://93.184.215.14/hook", True, "only http and https"),
]


def test_a_refused_callback_url_is_422_and_creates_nothing(db_url: str, audio_dir: Path) -> None:
    for allow_private in (True, False):
        with running_api(db_url, allow_private_urls=allow_private) as api:
            for callback, _allow, reason in (case for case in REFUSED_CALLBACKS if case[1] == allow_private):
                response = api.client.post(
                    "/transcribe", json={"url": "https://93.184.215.14/a.mp3", "callback_url": callback}
                )
                body = error_body(response, 422)
                assert body["detail"].startswith("callback_url refused") and reason in body["detail"]
                with (audio_dir / "speech_en.wav").open("rb") as audio:
                    files = {"file": ("speech_en.wav", audio, "audio/wav")}
                    response = api.client.post("/transcribe", files=files, data={"callback_url": callback})
                assert reason in error_body(response, 422)["detail"]
            assert api.store.list_jobs().jobs == []


def test_the_job_json_follows_the_delivery_and_redeliver_queues_another(db_url: str) -> None:
    with running_api(db_url, allow_private_urls=True) as api, webhook_receiver(410, 200) as receiver:
        job = api.client.post(
            "/transcribe", json={"url": "https://93.184.215.14/a.mp3", "callback_url": receiver.url}
        ).json()
        error_body(api.client.post(f"/jobs/{job['id']}/webhook/redeliver"), 409)  # not ended yet
        error_body(api.client.post("/jobs/no-such-job/webhook/redeliver"), 404)
        api.store.request_cancel(job["id"])
        sender = WebhookSender(api.store, settings_for(db_url), "sender-1")
        failed = drain(sender, api.store, job["id"])
        shown = api.client.get(f"/jobs/{job['id']}").json()["webhook"]
        assert shown["state"] == "failed" and shown["attempts"] == 1 and shown["last_status_code"] == 410
        assert shown["delivery_id"] == failed.id and shown["next_attempt_at"] is None

        response = api.client.post(f"/jobs/{job['id']}/webhook/redeliver")
        assert response.status_code == 202, response.text
        queued = response.json()["webhook"]
        assert queued["state"] == "pending" and queued["attempts"] == 0 and queued["delivery_id"] != failed.id
        delivered = drain(sender, api.store, job["id"])
        assert delivered.id == queued["delivery_id"] and delivered.state is WebhookState.DELIVERED
        requests = receiver.wait_for(2)
        assert [r.headers["cesar-delivery-id"] for r in requests] == [failed.id, delivered.id]
        # the body is the job as GET /jobs/{id} shows it
        body = json.loads(requests[1].body)
        got = api.client.get(f"/jobs/{job['id']}").json()
        assert without_webhook(body) == without_webhook(got)
        assert got["webhook"]["state"] == "delivered" and got["webhook"]["delivered_at"]

        plain = api.client.post("/transcribe", json={"url": "https://93.184.215.14/a.mp3"}).json()
        api.store.request_cancel(plain["id"])
        assert (
            "callback_url"
            in error_body(api.client.post(f"/jobs/{plain['id']}/webhook/redeliver"), 409)["detail"]
        )


def test_a_lease_shorter_than_a_try_is_kept_while_the_try_runs(store: JobStore, db_url: str) -> None:
    """The receiver takes 4 s; the lease is 1.5 s. The sender keeps extending it, so a second worker finds
    nothing due: one POST, one attempt, delivered."""
    settings = settings_for(db_url, webhook_lease_seconds=1.5, webhook_max_attempts=4)
    with webhook_receiver(("hang", 4), 200) as receiver:
        job = claimed(store, callback=receiver.url)
        store.complete_job(job.id, "w1", RESULT)
        first = WebhookSender(store, settings, "sender-1")
        second = WebhookSender(store, settings, "sender-2")
        done = threading.Event()
        thread = threading.Thread(target=lambda: (first.send_one(), done.set()))
        thread.start()
        receiver.wait_for(1)
        while not done.is_set():  # the other worker keeps looking for due deliveries meanwhile
            second.send_one()
            done.wait(0.05)
        thread.join()
    delivery = deliveries_of(store, job.id)[0]
    assert len(receiver.received) == 1
    assert delivery.state is WebhookState.DELIVERED and delivery.attempts == 1


def test_a_delivery_lost_on_its_last_try_fails_instead_of_a_further_try(store: JobStore) -> None:
    job = claimed(store)
    store.complete_job(job.id, "w1", RESULT)
    for _ in range(2):  # two tries, each abandoned by a worker that died holding it
        assert store.claim_delivery("gone", lease_seconds=30, max_attempts=2) is not None
        age(store.engine, WebhookDelivery.__table__, "lease_expires_at", 60, job_id=job.id)
    assert store.claim_delivery("next", lease_seconds=30, max_attempts=2) is None
    delivery = deliveries_of(store, job.id)[0]
    assert delivery.state is WebhookState.FAILED and delivery.attempts == 2
    assert "gave up after 2 tries" in (delivery.last_error or "")
