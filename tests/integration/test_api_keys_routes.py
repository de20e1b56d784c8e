"""The /keys routes through a running API, on SQLite and PostgreSQL, called with the server's own key
(CESAR_API_KEY: an admin with no limits): a key made and shown once, listed, changed, revoked with its jobs;
what a user key reads of itself (GET /keys/me) and may not do; `cesar keys --server` once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from api_helpers import BACKENDS, Api, error_body, module_database, running_api
from click.testing import CliRunner

from cesar.cli import cli
from cesar_api.access import FRESH_SECONDS
from cesar_common.db.records import JobSource, JobStatus, NewJob, TranscribeOptions

ADMIN_KEY = "the-servers-own-key"


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_database(request, tmp_path_factory) as url, running_api(url, api_key=ADMIN_KEY) as running:
        running.client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield running


def _queue(api: Api, owner: str, seconds: float) -> str:
    new = NewJob(
        source=JobSource.URL,
        options=TranscribeOptions(model="tiny.en"),
        source_url="https://example.com/a.mp3",
        owner=owner,
        audio_seconds=seconds,
    )
    return api.store.create_job(new, None).id


def test_an_admin_makes_changes_and_revokes_keys(api: Api) -> None:
    client = api.client
    made = client.post("/keys", json={"name": "carol", "max_queued": 2, "audio_hours_per_day": 1,
                                      "expires_at": "2030-01-01"})  # fmt: skip
    assert made.status_code == 201, made.text
    carol = made.json()
    assert made.headers["location"] == f"/keys/{carol['id']}"
    assert carol["key"].startswith(f"cesar_{carol['prefix']}_") and carol["status"] == "active"
    assert (carol["max_queued"], carol["audio_hours_per_day"], carol["requests_per_second"]) == (2, 1.0, None)
    assert carol["expires_at"] == "2030-01-01T00:00:00Z"  # a date alone: 00:00 UTC

    # refusals: a name taken (any case) 409, a value the store refuses 422, a shape or type 400
    assert error_body(client.post("/keys", json={"name": "CAROL"}), 409)["code"] == "conflict"
    assert error_body(client.post("/keys", json={"name": "dan", "max_queued": 0}), 422)["extra"] == {
        "field": "max_queued"
    }
    shapes = [
        {"max_queued": "2"},
        {"admin": 1},
        {"x": 1},
        {"expires_at": "soon"},
        {"expires_at": "2030-01-01T10:00"},
    ]
    for bad in shapes:
        error_body(client.post("/keys", json={"name": "dan", **bad}), 400)
    error_body(client.post("/keys", json={"name": "me"}), 400)  # GET /keys/me is the caller's own

    # the list and one key (by name, prefix or id): never the key, never its hash
    listed = client.get("/keys").json()["keys"]
    assert carol["id"] in {key["id"] for key in listed}
    assert not any("key" in key or "key_hash" in key for key in listed)
    for who in ("Carol", carol["prefix"], carol["id"]):
        assert client.get(f"/keys/{who}").json() == {k: v for k, v in carol.items() if k != "key"}
    assert error_body(client.get("/keys/nobody"), 404)["code"] == "not_found"

    # PATCH: the fields given change (null lifts a limit), the others stay
    changed = client.patch("/keys/carol", json={"max_queued": None, "priority": 3, "expires_at": None}).json()
    assert (changed["max_queued"], changed["audio_hours_per_day"], changed["priority"]) == (None, 1.0, 3)
    assert changed["expires_at"] is None
    assert client.patch("/keys/carol", json={}).json() == changed
    error_body(client.patch("/keys/carol", json={"requests_per_second": -1}), 422)

    # revoke: with cancel_jobs, the key's queued jobs end (another owner's stay); again, with no body, it
    # changes nothing
    mine, theirs = _queue(api, carol["id"], 60), _queue(api, "", 60)
    revoked = client.post("/keys/carol/revoke", json={"cancel_jobs": True}).json()
    assert (revoked["status"], revoked["cancelled"]) == ("revoked", 1)
    assert api.store.get_job(mine).status is JobStatus.CANCELLED
    assert api.store.get_job(theirs).status is JobStatus.QUEUED
    again = client.post("/keys/carol/revoke").json()
    assert (again["revoked_at"], again["cancelled"]) == (revoked["revoked_at"], 0)
    api.store.request_cancel(theirs)

    # the server's own key: an admin, no limits; without a key, nothing
    me = client.get("/keys/me").json()
    assert (me["name"], me["admin"], me["prefix"]) == ("admin", True, None)
    assert me["limits"] == {"max_queued": None, "audio_hours_per_day": None, "requests_per_second": None}
    assert me["remaining"] == {"queued": None, "audio_hours_today": None}
    error_body(httpx.get(f"{api.url}/keys"), 401)


def test_a_user_key_reads_its_own_limits_only(api: Api) -> None:
    client = api.client
    erin = client.post("/keys", json={"name": "erin", "max_queued": 3, "audio_hours_per_day": 2}).json()
    _queue(api, erin["id"], 1800)
    time.sleep(FRESH_SECONDS)  # the API's copy of the keys is read again once this old: then it has erin's
    as_erin = {"Authorization": f"Bearer {erin['key']}"}
    me = httpx.get(f"{api.url}/keys/me", headers=as_erin)
    assert me.status_code == 200, me.text
    assert me.json() == {
        "name": "erin",
        "admin": False,
        "prefix": erin["prefix"],
        "limits": {"max_queued": 3, "audio_hours_per_day": 2.0, "requests_per_second": None},
        "usage": {"queued": 1, "audio_hours_today": 0.5},
        "remaining": {"queued": 2, "audio_hours_today": 1.5},
    }
    error_body(httpx.get(f"{api.url}/keys", headers=as_erin), 403)
    error_body(httpx.post(f"{api.url}/keys", headers=as_erin, json={"name": "mallory", "admin": True}), 403)


def test_cesar_keys_through_a_server(api: Api) -> None:
    runner = CliRunner()
    env = {"CESAR_API_KEY": ADMIN_KEY, "CESAR_SERVER": api.url, "CESAR_DATABASE_URL": None}
    made = runner.invoke(cli, ["keys", "create", "frank", "--max-queued", "4"], env=env)
    assert made.exit_code == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("cesar_") and api.store.get_key("frank").max_queued == 4
    lifted = runner.invoke(
        cli, ["keys", "update", "frank", "--max-queued", "none", "--server", api.url], env=env
    )
    assert lifted.exit_code == 0 and "limits   none\n" in lifted.stdout, lifted.stderr
    listed = runner.invoke(cli, ["keys", "list"], env=env).stdout
    assert "\nfrank\t" in listed and key not in listed
    refused = runner.invoke(cli, ["keys", "revoke", "nobody"], env=env)
    assert refused.exit_code == 1 and refused.stderr == "error: no API key named 'nobody' (404)\n"
