"""Text with a NUL or another control character is a 4xx naming the field, never a 503 or a stored value,
on SQLite and on PostgreSQL (which cannot store a NUL at all). File names only shown lose such characters."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from api_helpers import AUDIO_DIR, BACKENDS, Api, error_body, job_count, module_database, running_api

PUBLIC = "https://93.184.215.14/a.mp3"


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_database(request, tmp_path_factory) as url, running_api(url) as running:
        yield running


def form_upload(
    api: Api, name: str = "speech_en.wav", content_type: str = "audio/wav", **fields: str
) -> httpx.Response:
    with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
        return api.client.post("/transcribe", files={"file": (name, audio, content_type)}, data=fields)


REFUSED_FIELDS = {
    "initial_prompt": "names\x00and jargon",
    "language": "e\x00n",
    "model": "tiny.en\x00",
    "callback_url": "https://example.com/\x00hook",
}


@pytest.mark.parametrize("field", sorted(REFUSED_FIELDS))
def test_a_control_character_in_an_upload_field_is_refused(api: Api, field: str) -> None:
    before = job_count(api.store)
    body = error_body(form_upload(api, **{field: REFUSED_FIELDS[field]}), 400)
    assert field in body["detail"] and "control character" in body["detail"]
    assert job_count(api.store) == before


@pytest.mark.parametrize("field", ["url", "callback_url", "initial_prompt", "model"])
def test_a_control_character_in_a_url_job_is_refused(api: Api, field: str) -> None:
    job = {"url": PUBLIC, field: f"{PUBLIC if 'url' in field else 'text'}\x00x"}
    before = job_count(api.store)
    response = api.client.post("/transcribe", json=job)
    assert response.status_code in (400, 422), response.text
    assert "control character" in response.json()["detail"]
    assert job_count(api.store) == before


def test_a_prompt_may_span_lines(api: Api) -> None:
    response = form_upload(api, initial_prompt="Cesar\nLitestar\tfaster-whisper")
    assert response.status_code == 202, response.text
    assert response.json()["options"]["initial_prompt"] == "Cesar\nLitestar\tfaster-whisper"


def test_control_characters_leave_a_file_name_and_its_media_type(api: Api) -> None:
    """Sent as raw bytes (an HTTP client would escape them): NUL, ESC and a line break in the part's
    file name and Content-Type."""
    boundary = "cesar-boundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="talk\x1b[31m\x00red.wav"\r\n'
        "Content-Type: audio/wav\x00\x1b\r\n\r\n"
    ).encode("latin-1")
    body = head + (AUDIO_DIR / "speech_en.wav").read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = api.client.post("/transcribe", content=body, headers=headers)
    assert response.status_code == 202, response.text
    job = api.store.get_job(response.json()["id"])
    assert (job.filename, job.content_type) == ("talk[31mred.wav", "audio/wav")


@pytest.mark.parametrize(
    "path",
    ["/jobs/abc%00def", "/jobs/abc%1bdef/transcript", "/jobs/" + "a" * 37, "/jobs/abc%00/cancel"],
)
def test_a_job_id_with_a_control_character_is_not_found(api: Api, path: str) -> None:
    method = api.client.post if path.endswith("/cancel") else api.client.get
    error_body(method(path), 404)


def test_a_cursor_with_a_nul_is_invalid(api: Api) -> None:
    cursor = base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|abc\x00|").decode()
    body = error_body(api.client.get("/jobs", params={"cursor": cursor}), 422)
    assert body["detail"] == "invalid cursor"


def test_an_idempotency_key_outside_printable_ascii_is_refused(api: Api) -> None:
    # HTTP itself keeps NUL out of headers; what passes (obs-text) is refused by Cesar
    headers = [("Idempotency-Key", "k\xe9y".encode("latin-1"))]
    response = api.client.post("/transcribe", json={"url": PUBLIC}, headers=headers)
    assert response.status_code == 422, response.text
