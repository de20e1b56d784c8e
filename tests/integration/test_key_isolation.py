"""Two user keys and an admin key on one server, on SQLite and PostgreSQL: no route returns, lists, streams
or changes another user's job, transcript, audio, people or webhooks.

The routes come from the server itself (every operation of its OpenAPI schema, every WebSocket route of the
app), so a route added later is checked without anyone adding it here: a route that names a job, a person
or a key in its path is called for Alice's with Bob's key (404; 403 for the admin's routes), every other
route is called with Bob's key and its answer searched for Alice's ids. WebSocket routes have no id in
their path: each has its own check below, and a new one fails the test until it has one.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_helpers import AUDIO_DIR, BACKENDS, DECODING, SEGMENTS, Api, module_database, running_api
from litestar.routes import WebSocketRoute
from websockets.sync.client import connect

from cesar_api.app import create_app
from cesar_common.db import voice_library
from cesar_common.db.records import AudioFormat, JobResult, JobSource, NewJob, TranscribeOptions
from cesar_common.settings import Settings

ADMIN_KEY = "isolation-admin-key"
LABEL = "SPEAKER_00"
#: path parameters that name something with an owner, and what Bob hears about Alice's (a key's routes are
#: the admin's)
OWNED = {"job_id": 404, "speaker_id": 404, "sample_id": 404, "key_id": 403}
#: path parameters that name nothing anyone owns
UNOWNED = {"model_id": "tiny.en"}


class Server:
    def __init__(self, api: Api, keys: dict[str, str], ids: dict[str, str]) -> None:
        self.api = api
        self.keys = keys
        self.ids = ids

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}", **kwargs.pop("headers", {})}
        return self.api.client.request(method, path, headers=headers, timeout=10, **kwargs)


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with (
        module_database(request, tmp_path_factory) as db_url,
        running_api(db_url, websockets=True, api_key=ADMIN_KEY) as api,
    ):
        store = api.store
        alice, alice_key = store.create_key("alice")
        _bob, bob_key = store.create_key("bob")
        job = _diarized_job(api, alice.id)
        person = store.create_speaker("Carol", owner=alice.id, job_id=job, label=LABEL)
        live, _ = store.open_live_session(
            NewJob(source=JobSource.LIVE, options=TranscribeOptions(model="tiny.en"), owner=alice.id),
            AudioFormat.PCM_S16LE,
            16000,
        )
        ids = {
            "job_id": job,
            "speaker_id": person.id,
            "sample_id": person.samples[0].id,
            "key_id": alice.id,
            "live_id": live.id,
        }
        yield Server(api, {"alice": alice_key, "bob": bob_key, "admin": ADMIN_KEY}, ids)


def _diarized_job(api: Api, owner: str) -> str:
    """A completed diarized job of ``owner`` with a voice print and a webhook delivery pending."""
    store = api.store
    options = TranscribeOptions(model="tiny.en", diarize=True)
    new = NewJob(
        source=JobSource.URL,
        options=options,
        source_url="https://93.184.215.14/a.mp3",
        callback_url="https://93.184.215.14/hook",
        owner=owner,
    )
    job = store.create_job(new, None)
    claimed = store.claim_work("isolation-worker", lease_seconds=60)
    assert claimed is not None and claimed.id == job.id
    segments = [{**segment, "speaker": LABEL} for segment in SEGMENTS]
    result = JobResult(
        text="The quick brown fox.",
        language="en",
        language_probability=0.9,
        duration=7.2,
        segments=segments,
        decoding=DECODING,
        speakers=[{"speaker": LABEL, "duration": 7.0}],
        voices={LABEL: [1 / 16.0] * 256},
    )
    assert store.complete_job(job.id, "isolation-worker", result)
    with store.engine.begin() as conn:  # as the worker stores a diarized job's prints
        voice_library.store_job_voices(conn, job.id, {LABEL: struct.pack("<256f", *([1 / 16.0] * 256))})
    return job.id


def _operations(server: Server) -> list[tuple[str, str]]:
    schema = server.call("admin", "GET", "/docs/openapi.json").json()
    return [(method.upper(), path) for path, item in schema["paths"].items() for method in item]


def _fill(path: str, ids: dict[str, str]) -> tuple[str, bool]:
    """``path`` with the ids of ``ids``, and whether it names something owned."""
    owned = False
    for name in re.findall(r"{(\w+)}", path):
        if name in OWNED:
            path = path.replace(f"{{{name}}}", ids[name])
            owned = True
        elif name in UNOWNED:
            path = path.replace(f"{{{name}}}", UNOWNED[name])
        else:
            raise AssertionError(f"{path}: what does {{{name}}} name? Add it to OWNED or UNOWNED")
    return path, owned


def test_no_route_gives_bob_anything_of_alices(server: Server) -> None:
    operations = _operations(server)
    assert len(operations) > 30
    nobody = {name: str(uuid.uuid4()) for name in server.ids}  # ids of nothing at all
    for method, template in operations:
        body = {"json": {}} if method in ("PATCH", "POST") else {}
        path, owned = _fill(template, server.ids)
        response = server.call("bob", method, path, **body)
        assert response.status_code != 500, f"{method} {template}: {response.text}"
        if owned:
            # Alice's job or person is to Bob what no job or person is: the same answer, word for word
            unknown = server.call("bob", method, _fill(template, nobody)[0], **body)
            assert response.status_code in OWNED.values(), f"{method} {template}: {response.status_code}"
            assert (response.status_code, _masked(response.text, server.ids)) == (
                unknown.status_code,
                _masked(unknown.text, nobody),
            ), f"{method} {template}"
        else:
            leaked = [value for value in server.ids.values() if value in response.text]
            assert not leaked, f"{method} {template} showed Bob {leaked}"


def _masked(text: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        text = text.replace(value, f"<{name}>")
    return text


def test_the_owner_and_the_admin_reach_what_bob_cannot(server: Server) -> None:
    job, person = server.ids["job_id"], server.ids["speaker_id"]
    for who in ("alice", "admin"):
        assert server.call(who, "GET", f"/jobs/{job}").status_code == 200
        assert server.call(who, "GET", f"/jobs/{job}/transcript").status_code == 200
        assert server.call(who, "GET", f"/speakers/{person}").status_code == 200
        assert job in server.call(who, "GET", "/jobs").text
        assert person in server.call(who, "GET", "/speakers").text
    assert job in server.call("admin", "GET", "/jobs", params={"owner": "alice"}).text
    assert job not in server.call("admin", "GET", "/jobs", params={"owner": "bob"}).text
    assert job not in server.call("bob", "GET", "/jobs", params={"owner": "alice"}).text  # asks in vain
    assert server.call("bob", "GET", "/metrics").status_code == 403
    assert server.call("alice", "GET", "/keys").status_code == 403


def test_bob_cannot_take_alices_voices_through_a_body(server: Server) -> None:
    job = server.ids["job_id"]
    took = server.call("bob", "POST", "/speakers", json={"name": "Mallory", "job_id": job, "label": LABEL})
    assert took.status_code == 404, took.text
    mine = server.call("bob", "POST", "/speakers", json={"name": "Bobby"}).json()
    added = server.call(
        "bob", "PATCH", f"/speakers/{mine['id']}", json={"add": [{"job_id": job, "label": LABEL}]}
    )
    assert added.status_code == 404, added.text
    # Alice may: the refusals above are about whose voice it is, not a voice that is not there
    own = server.call("alice", "POST", "/speakers", json={"name": "Carol 2", "job_id": job, "label": LABEL})
    assert own.status_code == 201, own.text
    # and people's names are each owner's: Bob may have a Carol of his own
    assert server.call("bob", "POST", "/speakers", json={"name": "Carol"}).status_code == 201


def test_every_websocket_route_is_checked(server: Server) -> None:
    app = create_app(Settings(database_url=server.api.settings.database_url))
    sockets = {route.path for route in app.routes if isinstance(route, WebSocketRoute)}
    assert sockets == set(SOCKET_CHECKS), "a new WebSocket route needs its isolation check here"
    for check in SOCKET_CHECKS.values():
        check(server)


def _live_resume(server: Server) -> None:
    """Bob cannot resume (follow, feed) Alice's live session: it is as unknown as none."""
    url = server.api.url.replace("http", "ws", 1) + "/live"
    headers = {"Authorization": f"Bearer {server.keys['bob']}"}
    with connect(url, additional_headers=headers, open_timeout=10) as socket:
        socket.send(json.dumps({"type": "resume", "session_id": server.ids["live_id"]}))
        event = json.loads(socket.recv(timeout=10))
        assert event["type"] == "error" and event["code"] == "not_found", event
        assert server.ids["live_id"] not in json.dumps({k: v for k, v in event.items() if k != "message"})


def _realtime(server: Server) -> None:
    """A realtime connection names no session but its own: Bob's opens, and knows nothing of Alice's."""
    url = server.api.url.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    headers = {"Authorization": f"Bearer {server.keys['bob']}"}
    with connect(url, additional_headers=headers, open_timeout=10) as socket:
        event = json.loads(socket.recv(timeout=10))
        assert event["type"] in ("session.created", "transcription_session.created"), event
        assert not any(value in json.dumps(event) for value in server.ids.values())


SOCKET_CHECKS = {"/live": _live_resume, "/v1/realtime": _realtime}


def test_no_key_no_entry_and_the_audio_stays_alices(server: Server) -> None:
    job = server.ids["job_id"]
    assert server.api.client.get(f"/jobs/{job}").status_code == 401
    assert server.api.client.get("/jobs").status_code == 401
    with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
        mine = server.call("bob", "POST", "/transcribe", files={"file": ("a.wav", audio, "audio/wav")})
    assert mine.status_code == 202, mine.text
    mine_id = mine.json()["id"]
    assert server.call("alice", "GET", f"/jobs/{mine_id}/audio").status_code == 404
    assert server.call("bob", "GET", f"/jobs/{mine_id}/audio").status_code == 200
    assert server.call("alice", "POST", f"/jobs/{mine_id}/cancel").status_code == 404
    assert server.call("bob", "POST", f"/jobs/{mine_id}/cancel").status_code == 202


def test_an_idempotency_key_is_each_api_keys_own(server: Server) -> None:
    body = {"url": "https://93.184.215.14/same.mp3"}
    same = {"Idempotency-Key": "the-same-words"}
    alices = server.call("alice", "POST", "/transcribe", json=body, headers=same)
    bobs = server.call("bob", "POST", "/transcribe", json=body, headers=same)
    assert alices.status_code == bobs.status_code == 202, (alices.text, bobs.text)
    assert alices.json()["id"] != bobs.json()["id"]
    again = server.call("bob", "POST", "/transcribe", json=body, headers=same)
    assert again.status_code == 200 and again.json()["id"] == bobs.json()["id"]
