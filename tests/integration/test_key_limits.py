"""A key's limits and its end, through the API on SQLite and PostgreSQL: quotas hold under concurrent
submits, each refusal is a 429 naming its limit, a key's request rate is capped, and a revoked key is refused
by every API process, its open event streams and live sessions closed with a reason."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from api_helpers import AUDIO_DIR, BACKENDS, Api, module_database, running_api
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cesar_common.db.records import AudioFormat, JobSource, JobStatus, NewJob, TranscribeOptions

SUBMITS = 50
MAX_QUEUED = 7
#: what speech_en.flac lasts, about: its README says 7.2 s
CLIP = "speech_en.flac"


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with module_database(request, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def api(db_url: str) -> Iterator[Api]:
    with running_api(db_url, websockets=True, api_key="limits-admin") as served:
        yield served


def _submit(api: Api, key: str) -> httpx.Response:
    with (AUDIO_DIR / CLIP).open("rb") as audio, httpx.Client(base_url=api.url, timeout=60) as client:
        return client.post(
            "/transcribe",
            files={"file": (CLIP, audio, "audio/flac")},
            headers={"Authorization": f"Bearer {key}"},
        )


def test_concurrent_submits_never_pass_the_queue_limit(api: Api) -> None:
    record, key = api.store.create_key("busy", max_queued=MAX_QUEUED)
    gate = threading.Barrier(SUBMITS)

    def submit(_: int) -> httpx.Response:
        gate.wait()  # all at once
        return _submit(api, key)

    with ThreadPoolExecutor(SUBMITS) as pool:
        answers = list(pool.map(submit, range(SUBMITS)))
    accepted = [answer for answer in answers if answer.status_code == 202]
    refused = [answer for answer in answers if answer.status_code != 202]
    assert len(accepted) == MAX_QUEUED, [answer.text for answer in refused if answer.status_code != 429]
    for answer in refused:
        assert answer.status_code == 429, answer.text
        body = answer.json()
        assert body["code"] == "limit_exceeded"
        assert body["extra"] == {"limit": "max_queued", "value": MAX_QUEUED}
        assert f"max_queued = {MAX_QUEUED}" in body["detail"]
    queued = api.store.list_jobs(owner=record.id, status=JobStatus.QUEUED, limit=1000).jobs
    assert len(queued) == MAX_QUEUED
    # one finishes: one more fits
    api.store.request_cancel(queued[0].id)
    assert _submit(api, key).status_code == 202
    assert _submit(api, key).status_code == 429


def test_the_daily_audio_limit_counts_the_probed_duration(api: Api) -> None:
    # room for two clips of about 7.2 s, not three
    record, key = api.store.create_key("listener", audio_hours_per_day=16 / 3600)
    assert _submit(api, key).status_code == 202
    assert _submit(api, key).status_code == 202
    refused = _submit(api, key)
    assert refused.status_code == 429
    assert refused.json()["extra"]["limit"] == "audio_hours_per_day"
    # the day's window frees the first clip's seconds in about a day: Retry-After says when
    assert 86000 < int(refused.headers["Retry-After"]) <= 86400
    assert api.store.key_usage(record.id).audio_seconds_today == pytest.approx(14.4, abs=1.0)
    # the server's own key has no limits
    assert _submit(api, "limits-admin").status_code == 202


def test_a_key_sending_too_fast_is_told_to_wait(api: Api) -> None:
    # one request every 1,000 s: the second is refused however slow this machine is
    _record, key = api.store.create_key("chatty", requests_per_second=0.001)
    headers = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/jobs", headers=headers).status_code == 200
    refused = api.client.get("/jobs", headers=headers)
    assert refused.status_code == 429
    assert refused.json()["extra"]["limit"] == "requests_per_second"
    assert 900 < int(refused.headers["Retry-After"]) <= 1000
    # other keys are not held back
    assert api.client.get("/jobs", headers={"Authorization": "Bearer limits-admin"}).status_code == 200


def test_a_revoked_key_is_refused_everywhere_and_its_streams_close(api: Api, db_url: str) -> None:
    record, key = api.store.create_key("leaving")
    headers = {"Authorization": f"Bearer {key}"}
    submitted = _submit(api, key)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()["id"]  # queued: no worker here, its stream stays open
    live, _ = api.store.open_live_session(
        NewJob(source=JobSource.LIVE, options=TranscribeOptions(model="tiny.en"), owner=record.id),
        AudioFormat.PCM_S16LE,
        16000,
    )
    with running_api(db_url, api_key="limits-admin") as other:  # a second API process on the database
        assert other.client.get(f"/jobs/{job}", headers=headers).status_code == 200
        with (
            httpx.stream("GET", f"{api.url}/jobs/{job}/events", headers=headers, timeout=30) as events,
            connect(api.url.replace("http", "ws", 1) + "/live", additional_headers=headers) as socket,
        ):
            socket.send(json.dumps({"type": "resume", "session_id": live.id}))
            assert json.loads(socket.recv(timeout=10))["type"] == "session"
            lines = events.iter_lines()
            assert next(lines).startswith("id: ")  # the stream is open
            api.store.revoke_key("leaving", cancel_jobs=False)
            revoked_at = time.monotonic()
            stream_end = "\n".join(lines)  # until the server ends it
            assert 'event: error\ndata: {"code": "unauthorized"' in stream_end
            closing = None
            try:
                while closing is None:
                    message = json.loads(socket.recv(timeout=10))
                    closing = message if message["type"] == "error" else None
                socket.recv(timeout=10)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1008
            assert closing is not None and closing["code"] == "unauthorized", closing
            took = time.monotonic() - revoked_at
        for server in (api, other):  # each process reads the keys again within a second
            _refused_soon(server, f"/jobs/{job}", headers)
    # the jobs were kept (revoked without --cancel-jobs): the admin decides
    assert api.store.get_job(job).status is JobStatus.QUEUED
    print(f"revocation reached a stream and a live session in {took:.2f} s")


def _refused_soon(api: Api, path: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 10
    while (answer := api.client.get(path, headers=headers)).status_code != 401:
        assert answer.status_code == 200 and time.monotonic() < deadline, answer.text
        time.sleep(0.05)
    assert "API key" in answer.json()["detail"]


def test_openais_client_hears_a_quota_in_its_own_terms(api: Api) -> None:
    _record, key = api.store.create_key("openai-user", max_queued=1)
    assert _submit(api, key).status_code == 202  # queued, no worker: the key's one job
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key=key, max_retries=0, timeout=30)
    with (AUDIO_DIR / CLIP).open("rb") as audio, pytest.raises(openai.RateLimitError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=audio)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "insufficient_quota", error
    assert "max_queued = 1" in error["message"]
