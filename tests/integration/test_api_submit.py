"""Submitting jobs over HTTP: uploads, URLs, and every way a submission is refused (SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import (
    AUDIO_DIR,
    PUBLIC_URL,
    Api,
    error_body,
    job_count,
    running_api,
    upload,
)

from cesar_common.db.records import JobStatus
from cesar_common.job_options import DECODING_NAMES, DecodingOptions


@pytest.fixture(scope="module")
def api(api_db: str) -> Iterator[Api]:
    with running_api(api_db, models=["base.en"]) as running:
        yield running


def open_temp_files() -> set[str]:
    """Deleted or temp-dir files this process (the server runs in it) holds open."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if os.path.dirname(target) == tempfile.gettempdir() or target.endswith("(deleted)"):
            found.add(target)
    return found


@pytest.mark.parametrize("name", ["speech_en.wav", "speech_en.mp3", "speech_en.m4a"])
def test_upload_queues_a_job(api: Api, name: str) -> None:
    response = upload(api, name, model="tiny.en", language="en", word_timestamps="true", vad="false")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["audio_path"] == name  # the client's file name, never a server path
    assert job["source"] == "upload"
    assert job["model"] == job["model_size"] == "tiny.en"
    queued = api.store.list_jobs(status=JobStatus.QUEUED, limit=1000).jobs
    assert job["queue_position"] == len(queued)  # the newest job is last in line
    assert job["size_bytes"] == (AUDIO_DIR / name).stat().st_size
    decoding = {name: job["options"].pop(name) for name in DECODING_NAMES}  # docs/decoding.md
    defaults = {name: getattr(DecodingOptions(), name) for name in DECODING_NAMES}
    assert decoding == {name: list(v) if isinstance(v, tuple) else v for name, v in defaults.items()}
    assert job["options"] == {
        "language": "en",
        "task": "transcribe",
        "word_timestamps": True,
        "vad": False,
        "initial_prompt": None,
        "diarize": False,
        "num_speakers": None,
        "min_speakers": None,
        "max_speakers": None,
        "name_speakers": True,
        "known_speakers": None,
    }
    assert job["speakers"] is None
    stored = api.store.get_job(job["id"])
    assert stored.status is JobStatus.QUEUED
    # the audio arrived whole, through the store, in order
    assert b"".join(api.store.iter_audio(job["id"])) == (AUDIO_DIR / name).read_bytes()


def test_upload_leaves_no_temporary_file(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the API runs in this process: its temporary files go to a directory of this test's own (the suite
    # runs in parallel, and other tests' processes use the system's)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before_fds = open_temp_files()
    for name in ("speech_en_long.flac", "junk.mp3"):  # accepted (1.2 MB), refused
        with (AUDIO_DIR / name).open("rb") as audio:
            api.client.post("/transcribe", files={"file": (name, audio)})
    assert open_temp_files() <= before_fds
    assert list(tmp_path.iterdir()) == []


def test_the_default_model_applies_and_a_client_path_is_cut_to_its_name(api: Api) -> None:
    with (AUDIO_DIR / "speech_en.ogg").open("rb") as audio:
        response = api.client.post("/transcribe", files={"file": ("C:\\Users\\me\\talk.ogg", audio)})
    job = response.json()
    assert response.status_code == 202, response.text
    assert job["audio_path"] == "talk.ogg"
    assert job["model"] == api.settings.model


@pytest.mark.parametrize("path", ["/transcribe", "/transcribe/url"])
def test_url_job_is_queued(api: Api, path: str) -> None:
    response = api.client.post(path, json={"url": PUBLIC_URL, "model": "base.en", "task": "translate"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["source"] == "url"
    assert job["audio_path"] == PUBLIC_URL
    assert job["model"] == "base.en"
    assert job["options"]["task"] == "translate"
    assert api.store.get_job(job["id"]).source_url == PUBLIC_URL


def test_diarization_options_in_both_forms(api: Api) -> None:
    response = upload(api, "speech_en.wav", diarize="true", num_speakers="2", max_speakers="3")
    assert response.status_code == 202, response.text
    options = response.json()["options"]
    assert (options["diarize"], options["num_speakers"], options["max_speakers"]) == (True, 2, 3)
    stored = api.store.get_job(response.json()["id"]).options
    assert (stored.diarize, stored.num_speakers, stored.min_speakers) == (True, 2, None)
    response = api.client.post("/transcribe", json={"url": PUBLIC_URL, "diarize": True, "min_speakers": 2})
    assert response.status_code == 202, response.text
    assert response.json()["options"]["min_speakers"] == 2
    for wrong in ({"num_speakers": 0}, {"max_speakers": 33}, {"min_speakers": "two"}):
        response = api.client.post("/transcribe", json={"url": PUBLIC_URL, "diarize": True, **wrong})
        assert response.status_code in (400, 422), response.text


@pytest.mark.parametrize("name", ["junk.mp3", "not_audio.mp3", "empty.wav"])
def test_upload_without_audio_is_415_and_creates_no_job(api: Api, name: str) -> None:
    before = job_count(api.store)
    body = error_body(upload(api, name), 415)
    assert body["code"] == "unsupported_media"
    assert name in body["detail"]
    assert job_count(api.store) == before


def test_upload_over_the_limit_is_413_and_creates_no_job(api_db: str) -> None:
    with running_api(api_db, max_upload_mb=1) as api:
        before = job_count(api.store)
        # just over the file cap: refused while streaming (the request itself is within the body limit)
        data = (AUDIO_DIR / "speech_en_long.flac").read_bytes()[: 1024 * 1024 + 4096]
        response = api.client.post("/transcribe", files={"file": ("long.flac", data)})
        assert error_body(response, 413)["code"] == "too_large"

        # a chunked body with no Content-Length, far over the cap
        def chunks() -> Iterator[bytes]:
            yield b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
            for _ in range(3):
                yield bytes(1024 * 1024)
            yield b"\r\n--XyZ--\r\n"

        response = api.client.post(
            "/transcribe", content=chunks(), headers={"content-type": "multipart/form-data; boundary=XyZ"}
        )
        assert response.status_code == 413, response.text
        assert job_count(api.store) == before
        # a Content-Length beyond the whole request limit is refused before anything is read
        response = api.client.post(
            "/transcribe",
            content=bytes(4 * 1024 * 1024),
            headers={"content-type": "multipart/form-data; boundary=XyZ"},
        )
        assert error_body(response, 413)["code"] == "too_large"
        # a file of exactly the limit is fine (it is not audio: 415, not 413)
        response = api.client.post("/transcribe", files={"file": ("zeros.wav", bytes(1024 * 1024))})
        assert error_body(response, 415)
        assert job_count(api.store) == before


def test_only_the_default_model_is_allowed_unless_more_are_listed(api_db: str) -> None:
    with running_api(api_db) as api:
        body = error_body(upload(api, model="base.en"), 422)
        assert body["code"] == "model_not_allowed" and body["extra"]["allowed"] == ["tiny.en"]
        assert upload(api, model="tiny.en").status_code == 202


def test_model_outside_the_allowlist_is_422(api_db: str) -> None:
    with running_api(api_db, models=["tiny.en", "base.en"]) as api:
        body = error_body(upload(api, model="large-v3"), 422)
        assert body["code"] == "model_not_allowed"
        assert "large-v3" in body["detail"] and "tiny.en" in body["detail"]
        response = api.client.post("/transcribe/url", json={"url": PUBLIC_URL, "model": "/etc/passwd"})
        assert error_body(response, 422)["code"] == "model_not_allowed"
        assert upload(api, model="base.en").status_code == 202


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/a.mp3", "http"),
        ("file:///etc/passwd", "http"),
        ("https:///no-host.mp3", "host"),
        ("not a url", "http"),
        ("http://127.0.0.1:5000/jobs", "loopback"),
        ("http://10.1.2.3/a.mp3", "private"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://metadata.google.internal/", "metadata"),
    ],
)
def test_refused_urls_are_422(api: Api, url: str, fragment: str) -> None:
    before = job_count(api.store)
    body = error_body(api.client.post("/transcribe/url", json={"url": url}), 422)
    assert body["code"] == "url_refused"
    assert fragment in body["detail"]
    assert job_count(api.store) == before


def test_private_urls_pass_when_allowed(api_db: str) -> None:
    with running_api(api_db, allow_private_urls=True) as api:
        response = api.client.post("/transcribe", json={"url": "http://127.0.0.1:8000/a.mp3"})
        assert response.status_code == 202, response.text
        # metadata addresses never do
        response = api.client.post("/transcribe", json={"url": "http://169.254.169.254/"})
        assert error_body(response, 422)["code"] == "url_refused"


def test_unknown_language_is_422_and_auto_detects(api: Api) -> None:
    assert error_body(upload(api, language="xx"), 422)["code"] == "unknown_language"
    response = upload(api, language="auto")
    assert response.status_code == 202
    assert response.json()["options"]["language"] is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"url": ', "JSON is malformed"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"url": 5}', "url"),
        (b'{"url": "https://example.com/a.mp3", "speed": "fast"}', "speed"),
        (b'{"model": "tiny.en"}', "url"),
        (b'{"url": "https://example.com/a.mp3", "vad": "sometimes"}', "vad"),
        (b'{"url": "https://example.com/a.mp3", "task": "summarise"}', "task"),
    ],
)
@pytest.mark.parametrize("path", ["/transcribe", "/transcribe/url"])
def test_bad_json_bodies_are_400(api: Api, path: str, body: bytes, fragment: str) -> None:
    before = job_count(api.store)
    response = api.client.post(path, content=body, headers={"content-type": "application/json"})
    error = error_body(response, 400)
    assert fragment in error["detail"] or fragment in str(error["extra"])
    assert job_count(api.store) == before


def test_bad_multipart_is_400_or_422(api: Api) -> None:
    before = job_count(api.store)
    post = api.client.post
    # no file part
    body = error_body(post("/transcribe", data={"model": "tiny.en"}, files={"other": ("a", b"x")}), 400)
    assert "`file`" in body["detail"]
    # unknown field, wrong type
    error = error_body(upload(api, speed="fast"), 400)
    assert "speed" in str(error["extra"])
    error = error_body(upload(api, vad="sometimes"), 400)
    assert "vad" in str(error["extra"])
    # truncated body, missing boundary, garbage
    headers = {"content-type": "multipart/form-data; boundary=XyZ"}
    truncated = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
    assert error_body(post("/transcribe", content=truncated, headers=headers), 400)
    assert error_body(post("/transcribe", content=b"junk", headers=headers), 400)
    no_boundary = {"content-type": "multipart/form-data"}
    assert error_body(post("/transcribe", content=b"--x\r\n", headers=no_boundary), 400)
    # two files
    with (AUDIO_DIR / "speech_en.wav").open("rb") as one, (AUDIO_DIR / "speech_en.mp3").open("rb") as two:
        files = [("file", ("a.wav", one)), ("file", ("b.mp3", two))]
        assert "more than one" in error_body(post("/transcribe", files=files), 400)["detail"]
    # a body that is neither multipart nor JSON
    response = post("/transcribe", content=b"url=x", headers={"content-type": "text/plain"})
    assert error_body(response, 415)["code"] == "unsupported_media"
    assert job_count(api.store) == before


def test_unknown_routes_and_methods_have_the_error_shape(api: Api) -> None:
    assert error_body(api.client.get("/nowhere"), 404)["code"] == "not_found"
    response = api.client.put("/transcribe", json={})
    assert error_body(response, 405)["code"] == "method_not_allowed"


def test_an_unexpected_error_is_a_generic_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals at /srv/cesar")

    monkeypatch.setattr(api.store, "job_view", broken)
    body = error_body(api.client.get("/jobs/anything"), 500)
    assert body == {
        "status_code": 500,
        "detail": "internal server error",
        "code": "internal_error",
        "extra": None,
    }


def test_uploads_keep_coming_after_errors(api: Api) -> None:
    """The service keeps running after refusals: a good upload still works."""
    for name in ("junk.mp3", "empty.wav"):
        assert upload(api, name).status_code == 415
    assert upload(api).status_code == 202


def test_audio_longer_than_the_cap_is_refused_at_submit(api_db: str, tmp_path: Path) -> None:
    import wave

    one_hertz = tmp_path / "one-hertz.wav"  # 32 KB claiming 16,000 s at one sample a second
    with wave.open(str(one_hertz), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(1)
        out.writeframes(b"\x01\x02" * 16000)
    with running_api(api_db, max_audio_seconds=5) as api:
        before = job_count(api.store)
        body = error_body(upload(api), 422)  # 7.2 s of speech
        assert body["code"] == "audio_too_long" and "CESAR_MAX_AUDIO_SECONDS" in body["detail"]
        with one_hertz.open("rb") as audio:
            response = api.client.post("/transcribe", files={"file": ("one-hertz.wav", audio, "audio/wav")})
        assert "samples a second" in error_body(response, 415)["detail"]
        assert job_count(api.store) == before
