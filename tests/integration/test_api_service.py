"""Health, the optional API key and the OpenAPI docs, over HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import httpx
import pytest
from api_helpers import (
    AUDIO_DIR,
    Api,
    error_body,
    health_when,
    job_count,
    running_api,
    upload,
    url_job,
)
from dbtools import age

from cesar_api.app import create_app
from cesar_common.db.tables import workers
from cesar_common.settings import Settings

UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
KEY = "correct horse battery staple"


@pytest.fixture(scope="module")
def spec(api: Api) -> dict[str, object]:
    response = api.client.get("/docs/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


# --- health -----------------------------------------------------------------------------------------
def test_health_reports_database_workers_and_queue(api_db: str) -> None:
    with running_api(api_db, lease_seconds=1.0) as api:
        before = api.store.queue_counts()
        url_job(api.store)
        api.store.register_worker("w-health", host="test-host", pid=4242)

        response = api.client.get("/health")  # the first look: nothing older to reuse
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["database"]["reachable"] is True
        assert body["database"]["backend"] in ("sqlite", "postgresql")
        assert body["workers"]["count"] == 1
        assert body["workers"]["last_seen_at"].endswith("Z")
        assert body["queue"]["queued"] == before.queued + 1
        assert body["queue"]["processing"] == before.processing

        age(api.store.engine, workers, "last_seen_at", 3600, id="w-health")  # no heartbeat since: gone
        body = health_when(api, lambda r: r.json()["workers"]["count"] == 0).json()
        assert body["status"] == "degraded"
        api.store.unregister_worker("w-health")


def test_health_is_503_when_the_database_is_unreachable(api: Api) -> None:
    app = create_app(Settings(database_url=UNREACHABLE_URL))
    from litestar.testing import TestClient

    with TestClient(app) as client:
        response = client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["database"] == {
            "reachable": False,
            "writable": False,
            "backend": "postgresql",
            "error": "database_unavailable",
        }
        # every other route says so in the error shape, without the driver's details
        error = client.get("/jobs")
        assert error.status_code == 503
        assert error.json()["code"] == "database_unavailable"
        assert error.json()["detail"] == "the job database is unavailable"
        assert "127.0.0.1" not in error.text and "Traceback" not in error.text


# --- auth ---------------------------------------------------------------------------------------------
def test_api_key_guards_every_route_but_health_and_docs(api_db: str) -> None:
    with running_api(api_db, api_key=KEY) as api:
        before = job_count(api.store)
        job = url_job(api.store)
        protected = [
            ("GET", "/jobs"),
            ("GET", f"/jobs/{job.id}"),
            ("GET", f"/jobs/{job.id}/transcript"),
            ("POST", f"/jobs/{job.id}/cancel"),
            ("DELETE", f"/jobs/{job.id}"),
            ("POST", "/transcribe/url"),
        ]
        for header in (None, "Bearer wrong", f"Basic {KEY}", KEY, "Bearer"):
            headers = {"Authorization": header} if header else {}
            for method, path in protected:
                response = api.client.request(method, path, headers=headers, json={"url": "https://x.org/a"})
                body = error_body(response, 401)
                assert body["code"] == "unauthorized"
                assert response.headers["www-authenticate"].startswith("Bearer")
            # an upload is refused before a byte is stored
            with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
                response = api.client.post("/transcribe", files={"file": audio}, headers=headers)
            assert error_body(response, 401)
        assert job_count(api.store) == before + 1

        for path in ("/health", "/health/live", "/docs", "/docs/openapi.json", "/docs/static/swagger-ui.css"):
            assert api.client.get(path).status_code == 200, path

        good = {"Authorization": f"Bearer {KEY}"}
        assert api.client.get(f"/jobs/{job.id}", headers=good).status_code == 200
        with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
            assert api.client.post("/transcribe", files={"file": audio}, headers=good).status_code == 202
        assert api.client.post(f"/jobs/{job.id}/cancel", headers=good).status_code == 202


def test_without_a_key_no_header_is_needed(api: Api) -> None:
    assert api.settings.api_key is None
    assert upload(api).status_code == 202
    assert api.client.get("/jobs").status_code == 200


# --- docs ---------------------------------------------------------------------------------------------
OPERATIONS = {
    ("post", "/transcribe"): "createTranscription",
    ("post", "/transcribe/url"): "createUrlTranscription",
    ("get", "/jobs"): "listJobs",
    ("get", "/jobs/{job_id}"): "getJob",
    ("get", "/jobs/{job_id}/transcript"): "getTranscript",
    ("get", "/jobs/{job_id}/audio"): "getJobAudio",
    ("post", "/jobs/{job_id}/cancel"): "cancelJob",
    ("delete", "/jobs/{job_id}"): "deleteJob",
    ("post", "/jobs/{job_id}/webhook/redeliver"): "redeliverWebhook",
    ("patch", "/jobs/{job_id}/transcript"): "editTranscript",
    ("get", "/jobs/{job_id}/revisions"): "listRevisions",
    ("get", "/speakers"): "listSpeakers",
    ("post", "/speakers"): "createSpeaker",
    ("get", "/speakers/{speaker_id}"): "getSpeaker",
    ("patch", "/speakers/{speaker_id}"): "updateSpeaker",
    ("delete", "/speakers/{speaker_id}"): "deleteSpeaker",
    ("post", "/speakers/{speaker_id}/samples"): "addVoiceSample",
    ("delete", "/speakers/{speaker_id}/samples/{sample_id}"): "deleteVoiceSample",
    ("post", "/keys"): "createKey",
    ("get", "/keys"): "listKeys",
    ("get", "/keys/me"): "getMyKey",
    ("get", "/keys/{key_id}"): "getKey",
    ("patch", "/keys/{key_id}"): "updateKey",
    ("post", "/keys/{key_id}/revoke"): "revokeKey",
    ("get", "/jobs/{job_id}/events"): "followJob",
    ("post", "/session"): "openSession",
    ("delete", "/session"): "closeSession",
    ("get", "/metrics"): "getMetrics",
    ("get", "/health"): "getHealth",
    ("get", "/health/live"): "getLiveness",
    ("post", "/v1/audio/transcriptions"): "openaiCreateTranscription",
    ("post", "/v1/audio/translations"): "openaiCreateTranslation",
    ("get", "/v1/models"): "openaiListModels",
    ("get", "/v1/models/{model_id}"): "openaiGetModel",
    ("post", "/asr"): "asrTranscribe",
    ("post", "/detect-language"): "asrDetectLanguage",
}

#: open to anyone, even with CESAR_API_KEY set (forgetting a session cookie needs no key)
PUBLIC = {("get", "/health"), ("get", "/health/live"), ("delete", "/session")}


def error_schema(path: str) -> str:
    """Cesar's errors, but OpenAI's and whisper-asr-webservice's on the routes that speak their dialects."""
    if path.startswith("/v1/"):
        return "OpenAIErrorOut"
    return "AsrErrorOut" if path in ("/asr", "/detect-language") else "ErrorOut"


def test_openapi_documents_every_operation(spec: dict[str, object]) -> None:
    assert str(spec["openapi"]).startswith("3.1")
    paths: dict[str, dict[str, dict[str, object]]] = spec["paths"]  # type: ignore[assignment]
    found = {(method, path) for path, item in paths.items() for method in item}
    assert found == set(OPERATIONS)
    for (method, path), operation_id in OPERATIONS.items():
        operation = paths[path][method]
        assert operation["operationId"] == operation_id
        assert operation["tags"] and operation["summary"] and operation["description"]
        responses: dict[str, dict[str, object]] = operation["responses"]  # type: ignore[assignment]
        errors = {code for code in responses if code.startswith(("4", "5"))}
        assert errors or operation_id in ("closeSession", "getLiveness"), f"{operation_id} documents no error"
        for code in errors:
            content = responses[code]["content"]["application/json"]  # type: ignore[index]
            if path != "/health":
                assert content["schema"] == {"$ref": f"#/components/schemas/{error_schema(path)}"}
                assert content["examples"], f"{operation_id} {code} has no example"
        if (method, path) not in PUBLIC:
            assert "401" in responses
            assert operation["security"] == [{}, {"BearerAuth": []}]


def test_openapi_documents_the_errors_each_route_gives(spec: dict[str, object]) -> None:
    paths: dict[str, dict[str, dict[str, dict[str, object]]]] = spec["paths"]  # type: ignore[assignment]
    assert {"400", "413", "415", "422"} <= set(paths["/transcribe"]["post"]["responses"])
    assert {"404", "409"} <= set(paths["/jobs/{job_id}/transcript"]["get"]["responses"])
    assert {"404", "409"} <= set(paths["/jobs/{job_id}"]["delete"]["responses"])
    assert "503" in paths["/health"]["get"]["responses"]
    body = paths["/transcribe"]["post"]["requestBody"]["content"]  # type: ignore[index]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    link = paths["/jobs"]["get"]["responses"]["200"]["headers"]  # type: ignore[index]
    assert {"Link", "X-Next-Cursor"} <= set(link)


def test_openapi_schemas_come_from_pydantic(spec: dict[str, object]) -> None:
    schemas = spec["components"]["schemas"]  # type: ignore[index]
    assert schemas["UrlJobIn"]["additionalProperties"] is False
    language = schemas["UrlJobIn"]["properties"]["language"]["anyOf"][0]
    assert language["pattern"]
    job = schemas["JobOut"]["properties"]
    assert {"audio_path", "model_size", "queue_position", "links"} <= set(job)


def test_docs_page_loads_its_assets_from_cesar(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls, page.text[:500]
    for url in urls:
        assert url.startswith("/docs/static/"), url
        asset = api.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500
    assert "cdn" not in page.text.lower()
    assert "SwaggerUIBundle" in page.text
    js = api.client.get("/docs/static/swagger-ui-bundle.js")
    assert "javascript" in js.headers["content-type"]
    assert api.client.get("/docs/static/nope.js").status_code == 404


def test_api_answers_while_an_upload_streams(api: Api) -> None:
    """A slow upload does not block other requests: the body is read asynchronously."""

    sent_head, finish = threading.Event(), threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        sent_head.set()
        finish.wait(60)  # the rest comes once the test has had its answer
        yield (AUDIO_DIR / "speech_en.wav").read_bytes() + b"\r\n--B--\r\n"

    result: dict[str, httpx.Response] = {}

    def post() -> None:
        with httpx.Client(base_url=api.url) as client:
            result["r"] = client.post(
                "/transcribe",
                content=slow_body(),
                headers={"content-type": "multipart/form-data; boundary=B"},
            )

    thread = threading.Thread(target=post)
    thread.start()
    assert sent_head.wait(30)
    assert api.client.get("/health").status_code == 200  # answered while the upload is still open
    assert thread.is_alive()
    finish.set()
    thread.join()
    assert result["r"].status_code == 202, result["r"].text
