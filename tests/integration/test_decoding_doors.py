"""The decoding options at every door: stored with the job (only those off their defaults, in one column),
shown in its JSON, part of its idempotency fingerprint; a bad value refused by the one check
(``job_options.parse_option``) naming the option, as each door says it: 400 from ``POST /transcribe``
(multipart and JSON), an OpenAI 400 with its ``param`` from ``/v1``, a 400 from ``/asr``, one line and exit 1
from ``cesar transcribe`` and ``cesar submit``; no job made. Then a real worker decodes with them, reached
through each HTTP door."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_helpers import AUDIO_DIR, PUBLIC_URL, Api, job_count, running_api
from click.testing import CliRunner
from sqlalchemy import select

from cesar.cli import cli
from cesar_common.db.tables import jobs
from cesar_common.job_options import DECODING_NAMES, DecodingOptions
from cesar_common.settings import Settings
from cesar_worker.worker import run_worker

SPEECH = AUDIO_DIR / "speech_en.wav"
#: (option, a value every door refuses, what the refusal says)
REFUSED = [
    ("temperature", "1.5", "'1.5' is not a number from 0 to 1"),
    ("temperature", "0,0.2,warm", "'warm' is not a number from 0 to 1"),
    ("no_speech_threshold", "2", "must be a number from 0 to 1, not '2'"),
    ("log_prob_threshold", "1", "must be a number from -10 to 0, not '1'"),
    ("compression_ratio_threshold", "0.5", "must be a number from 1 to 10"),
    ("repetition_penalty", "0", "must be a number from 1 to 5"),
    ("no_repeat_ngram_size", "2.5", "must be a whole number from 0 to 20"),
    ("suppress_tokens", "-1,-2", "'-2' is not a whole number from -1 to 51865"),
    ("vad_threshold", "1.2", "must be a number from 0 to 1"),
    ("vad_min_silence_ms", "-1", "must be a whole number from 0 to 10000"),
    ("vad_speech_pad_ms", "lots", "must be a whole number from 0 to 2000"),
    ("clip_timestamps", "5,2", "in order, each ending after it starts: not 5 then 2"),
    ("hotwords", "x" * 1001, "at most 1000 characters long, not 1001"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from dbtools import migrate

    url = f"sqlite:///{tmp_path_factory.mktemp('decoding') / 'cesar.db'}"
    migrate(url)
    with running_api(url) as running:
        yield running


def stored(api: Api, job_id: str) -> Any:
    """The job's ``decoding_options`` column as the database holds it."""
    with api.store.engine.connect() as conn:
        return conn.execute(select(jobs.c.decoding_options).where(jobs.c.id == job_id)).scalar_one()


# --- stored, shown, fingerprinted ---------------------------------------------------------------------------
def test_a_form_upload_stores_them_and_the_job_shows_them(api: Api) -> None:
    fields = {
        "temperature": "0, 0.2,0.4",
        "hotwords": "Cesar",
        "suppress_tokens": "-1,13",
        "vad_min_silence_ms": "500",
        "no_speech_threshold": "0.5",
        "condition_on_previous_text": "true",
    }
    with SPEECH.open("rb") as audio:
        response = api.client.post("/transcribe", files={"file": ("speech_en.wav", audio)}, data=fields)
    assert response.status_code == 202, response.text
    job = response.json()
    expected = {
        "temperature": [0.0, 0.2, 0.4],
        "hotwords": "Cesar",
        "suppress_tokens": [-1, 13],
        "vad_min_silence_ms": 500,
        "no_speech_threshold": 0.5,
        "condition_on_previous_text": True,
    }
    defaults = {name: value for name, value in _as_json(DecodingOptions()).items() if name not in expected}
    assert {name: job["options"][name] for name in DECODING_NAMES} == expected | defaults
    assert api.client.get(f"/jobs/{job['id']}").json()["options"] == job["options"]
    assert stored(api, job["id"]) == expected  # only those off their defaults
    assert api.store.get_job(job["id"]).options.decoding_options == DecodingOptions(
        hotwords="Cesar",
        temperature=(0.0, 0.2, 0.4),
        suppress_tokens=(-1, 13),
        vad_min_silence_ms=500,
        no_speech_threshold=0.5,
        condition_on_previous_text=True,
    )


def test_a_job_without_them_stores_nothing_and_shows_the_defaults(api: Api) -> None:
    with SPEECH.open("rb") as audio:
        job = api.client.post("/transcribe", files={"file": ("speech_en.wav", audio)}).json()
    assert stored(api, job["id"]) is None
    assert {name: job["options"][name] for name in DECODING_NAMES} == _as_json(DecodingOptions())


@pytest.mark.parametrize("path", ["/transcribe", "/transcribe/url"])
def test_a_json_url_job_takes_lists_numbers_or_text(api: Api, path: str) -> None:
    body = {"url": PUBLIC_URL, "temperature": [0, 0.2], "clip_timestamps": "0,3", "no_repeat_ngram_size": 3}
    response = api.client.post(path, json=body)
    assert response.status_code == 202, response.text
    options = response.json()["options"]
    assert (options["temperature"], options["clip_timestamps"], options["no_repeat_ngram_size"]) == (
        [0.0, 0.2], [0.0, 3.0], 3
    )  # fmt: skip
    assert api.client.post(path, json={"url": PUBLIC_URL, "temperature": 0.4}).json()["options"][
        "temperature"
    ] == [0.4]


def test_they_are_part_of_the_idempotency_fingerprint(api: Api) -> None:
    key = {"Idempotency-Key": f"decoding-{time.monotonic_ns()}"}
    body = {"url": PUBLIC_URL, "temperature": "0,0.2", "hotwords": "Cesar"}
    first = api.client.post("/transcribe", json=body, headers=key)
    assert first.status_code == 202, first.text
    again = api.client.post("/transcribe", json={**body, "temperature": [0, 0.2]}, headers=key)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    for changed in ({**body, "temperature": "0,0.4"}, {**body, "hotwords": "Litestar"}, {"url": PUBLIC_URL}):
        response = api.client.post("/transcribe", json=changed, headers=key)
        assert (response.status_code, response.json()["code"]) == (422, "idempotency_key_reused"), changed


# --- refused at every door, naming the option ------------------------------------------------------------
@pytest.mark.parametrize(("name", "value", "why"), REFUSED, ids=[f"{n}={v[:10]}" for n, v, _ in REFUSED])
def test_every_door_refuses_a_bad_value_naming_it(api: Api, name: str, value: str, why: str) -> None:
    before = job_count(api.store)
    with SPEECH.open("rb") as audio:
        form = api.client.post("/transcribe", files={"file": ("a.wav", audio)}, data={name: value})
    for response in (form, api.client.post("/transcribe/url", json={"url": PUBLIC_URL, name: value})):
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["extra"][0]["key"] == name and why in body["detail"], body
        assert f"parameter '{name}'" in body["detail"]

    with SPEECH.open("rb") as audio:
        openai = api.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", audio)},
            data={"model": "whisper-1", name: value},
        )
    assert openai.status_code == 400, openai.text
    error = openai.json()["error"]
    assert (error["param"], error["type"]) == (name, "invalid_request_error") and why in error["message"]

    with SPEECH.open("rb") as audio:
        asr = api.client.post("/asr", params={name: value}, files={"audio_file": ("a.wav", audio)})
    assert asr.status_code == 400, asr.text
    assert f"query parameter '{name}'" in asr.json()["detail"] and why in asr.json()["detail"]

    for command in (["transcribe", str(SPEECH)], ["submit", str(SPEECH), "--server", api.url]):
        result = CliRunner().invoke(cli, [*command, f"--{name.replace('_', '-')}", value])
        assert result.exit_code == 1, result.output
        flag = f"--{name.replace('_', '-')}"
        assert result.stderr.startswith(f"error: {flag}") and result.stderr.count("\n") == 1, result.stderr
        assert why in result.stderr
    assert job_count(api.store) == before


def test_a_boolean_that_is_neither_is_refused_too(api: Api) -> None:
    with SPEECH.open("rb") as audio:
        form = api.client.post(
            "/transcribe", files={"file": ("a.wav", audio)}, data={"condition_on_previous_text": "maybe"}
        )
    assert form.status_code == 400 and form.json()["extra"][0]["key"] == "condition_on_previous_text"
    with SPEECH.open("rb") as audio:
        openai = api.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", audio)},
            data={"model": "whisper-1", "condition_on_previous_text": "maybe"},
        )
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "condition_on_previous_text"


def test_vad_options_need_vad_at_every_door(api: Api) -> None:
    before = job_count(api.store)
    why = "vad_threshold tunes voice activity detection, which is off (vad=false)"
    with SPEECH.open("rb") as audio:
        form = api.client.post(
            "/transcribe", files={"file": ("a.wav", audio)}, data={"vad": "false", "vad_threshold": "0.3"}
        )
    assert form.status_code == 422 and form.json()["detail"].startswith(why), form.text
    assert form.json()["extra"] == {"field": "vad_threshold"}
    with SPEECH.open("rb") as audio:
        asr = api.client.post(
            "/asr",
            params={"vad_filter": "false", "vad_threshold": "0.3"},
            files={"audio_file": ("a.wav", audio)},
        )
    assert asr.status_code == 422 and asr.json()["detail"].startswith(why), asr.text
    result = CliRunner().invoke(cli, ["transcribe", str(SPEECH), "--no-vad", "--vad-min-silence-ms", "300"])
    assert result.exit_code == 1 and result.stderr == (
        "error: --vad-min-silence-ms tunes voice activity detection, which is off (--no-vad): leave it out "
        "or turn VAD on\n"
    )
    assert job_count(api.store) == before


def test_a_live_stream_takes_none(api: Api) -> None:
    response = api.client.post("/transcribe", json={"url": PUBLIC_URL, "live": True, "hotwords": "Cesar"})
    assert response.status_code == 422, response.text
    assert "applies to files only" in response.json()["detail"]
    assert response.json()["extra"] == {"field": "hotwords"}


def test_cesar_submit_sends_them(api: Api) -> None:
    flags = ["--temperature", "0,0.2", "--hotwords", "Cesar", "--suppress-tokens", "-1,13"]
    for source in (str(SPEECH), PUBLIC_URL):  # a file (form fields) and a URL (JSON)
        result = CliRunner().invoke(cli, ["submit", source, "--server", api.url, *flags])
        assert result.exit_code == 0, result.output
        job_id = result.stdout.split()[0]
        assert api.store.get_job(job_id).options.decoding_options == DecodingOptions(
            hotwords="Cesar", temperature=(0.0, 0.2), suppress_tokens=(-1, 13)
        )


def _as_json(options: DecodingOptions) -> dict[str, Any]:
    """The decoding options as a job's JSON shows them."""
    values = {name: getattr(options, name) for name in DECODING_NAMES}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


# --- a real worker decodes with them, whichever door they came through -------------------------------------
@pytest.fixture
def served(sqlite_url: str) -> Iterator[Api]:
    """The API and a worker (the real tiny.en, in a thread) on a database of the test's own."""
    stop = threading.Event()
    settings = Settings(database_url=sqlite_url, offline=True, live_sessions=0, poll_max_seconds=0.2)
    worker = threading.Thread(
        target=run_worker, args=(settings,), kwargs={"worker_id": "decoding", "stop_event": stop}, daemon=True
    )
    with running_api(sqlite_url) as running:
        worker.start()
        try:
            yield running
        finally:
            stop.set()
            worker.join(30)


def test_a_worker_decodes_with_the_options_each_door_sent(served: Api) -> None:
    with SPEECH.open("rb") as audio:
        job = served.client.post(
            "/transcribe", files={"file": ("speech_en.wav", audio)}, data={"hotwords": "brown"}
        ).json()
    done = _final(served.client, job["id"])
    assert done["status"] == "completed" and "brown fox" in done["result_text"], done

    # OpenAI's temperature, and a fallback: the first sentence alone, every window unsure, so decoded again
    # at each temperature of the list
    with SPEECH.open("rb") as audio:
        verbose = served.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("speech_en.wav", audio)},
            data={
                "model": "whisper-1",
                "response_format": "verbose_json",
                "temperature": "0,0.5,1",
                "log_prob_threshold": "0",
                "clip_timestamps": "0,3.2",
            },
            timeout=120,
        )
    assert verbose.status_code == 200, verbose.text
    segments = verbose.json()["segments"]
    assert segments and {segment["temperature"] for segment in segments} == {1.0}
    assert "lazy" in verbose.json()["text"] and "reliable" not in verbose.json()["text"]

    with SPEECH.open("rb") as audio:
        asr = served.client.post(
            "/asr", params={"suppress_tokens": "-1,13"}, files={"audio_file": ("a.wav", audio)}, timeout=120
        )
    assert asr.status_code == 200, asr.text
    assert "reliable" in asr.text and "." not in asr.text


def _final(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("completed", "error", "cancelled"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")
