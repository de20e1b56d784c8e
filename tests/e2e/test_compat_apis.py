"""The dialects other tools speak, against a real `cesar serve` (real Whisper): OpenAI's transcription API
through the official `openai` package, and whisper-asr-webservice's `/asr` as Bazarr's provider sends it.

Each request is an ordinary job: it is named by `X-Cesar-Job-Id` and listed by `GET /jobs`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import requests
import srt
from serve_helpers import AUDIO_DIR, CesarProcess, running_serve, wait_for

from cesar_common.transcription.audio import head_as_wav, wav_header

SHORT = AUDIO_DIR / "speech_en.wav"
LONG = AUDIO_DIR / "speech_en_long.flac"
SHORT_WORDS = {"quick", "fox", "lazy", "transcription", "services", "fast", "reliable"}
MAX_UPLOAD_MB = 2

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CesarProcess]:
    tmp = tmp_path_factory.mktemp("compat")
    env = {"CESAR_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB), "CESAR_MODEL_ALIASES": "gpt-4o-transcribe=tiny.en",
           "CESAR_LEASE_SECONDS": "60"}  # fmt: skip
    with running_serve(f"sqlite:///{tmp / 'cesar.db'}", log_path=tmp / "serve.log", env=env) as process:
        yield process


@pytest.fixture(scope="module")
def client(serve: CesarProcess) -> openai.OpenAI:
    # max_retries and the timeout left at the client's defaults: errors must not make it retry
    return openai.OpenAI(base_url=f"{serve.url}/v1", api_key="any: this server has no CESAR_API_KEY")


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def listed_job_ids(serve: CesarProcess) -> set[str]:
    return {job["id"] for job in httpx.get(f"{serve.url}/jobs", params={"limit": 1000}).json()}


def request_count(serve: CesarProcess, route: str, status: int) -> int:
    text = httpx.get(f"{serve.url}/metrics").text
    labels = f'method="POST",route="{route}",status="{status}"'
    pattern = rf"^cesar_http_requests_total\{{{re.escape(labels)}\}} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


# --- OpenAI -----------------------------------------------------------------------------------------
def test_json_is_openais_shape_and_the_job_is_listed(client: openai.OpenAI, serve: CesarProcess) -> None:
    with SHORT.open("rb") as audio:
        raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=audio)
    body = raw.http_response.json()
    assert set(body) == {"text", "usage"} and body["usage"] == {"type": "duration", "seconds": 8}
    assert len(SHORT_WORDS & words(raw.parse().text)) >= 5
    job_id = raw.headers["x-cesar-job-id"]
    assert job_id in listed_job_ids(serve)
    job = httpx.get(f"{serve.url}/jobs/{job_id}").json()
    assert job["status"] == "completed" and job["model"] == "tiny.en"


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_plain_formats(client: openai.OpenAI, fmt: str) -> None:
    with SHORT.open("rb") as audio:
        body = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format=fmt)
    assert isinstance(body, str) and len(SHORT_WORDS & words(body)) >= 5
    if fmt == "text":
        assert body.endswith("\n") and "\n" not in body[:-1]
    elif fmt == "srt":
        cues = list(srt.parse(body))
        assert cues and cues[0].start.total_seconds() == 0.0 and cues[-1].end.total_seconds() <= 7.2
    else:
        assert body.startswith("WEBVTT\n\n") and " --> " in body


def test_verbose_json_with_words_and_segments_and_a_prompt(
    client: openai.OpenAI, serve: CesarProcess
) -> None:
    with SHORT.open("rb") as audio:
        raw = client.audio.transcriptions.with_raw_response.create(
            model="gpt-4o-transcribe",  # an alias of tiny.en on this server
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
            prompt="Quick brown fox.",
        )
    body = raw.http_response.json()
    assert (body["task"], body["language"]) == ("transcribe", "english")
    assert body["duration"] == pytest.approx(7.15, abs=0.1) and body["usage"]["type"] == "duration"
    segment_keys = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                    "compression_ratio", "no_speech_prob"}  # fmt: skip
    assert body["segments"] and all(set(segment) == segment_keys for segment in body["segments"])
    assert [segment["id"] for segment in body["segments"]] == list(range(len(body["segments"])))
    assert body["words"] and all(set(word) == {"word", "start", "end"} for word in body["words"])
    assert "lazy" in {word["word"].strip(".").lower() for word in body["words"]}
    parsed = raw.parse()
    assert parsed.words and parsed.segments and parsed.text == body["text"]
    job = httpx.get(f"{serve.url}/jobs/{raw.headers['x-cesar-job-id']}").json()
    assert job["options"]["language"] == "en" and job["options"]["initial_prompt"] == "Quick brown fox."
    assert job["options"]["word_timestamps"] is True

    with SHORT.open("rb") as audio:  # words only: no segments
        body = client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=audio, response_format="verbose_json", timestamp_granularities=["word"]
        ).http_response.json()
    assert "words" in body and "segments" not in body


def test_translation(client: openai.OpenAI) -> None:
    with SHORT.open("rb") as audio, pytest.deprecated_call():  # the SDK deprecates Whisper translations
        raw = client.audio.translations.with_raw_response.create(
            model="whisper-1", file=audio, response_format="verbose_json"
        )
    body = raw.http_response.json()
    assert (body["task"], body["language"]) == ("translate", "english")
    assert len(SHORT_WORDS & words(body["text"])) >= 5 and body["segments"]


def test_streaming_deltas_make_the_final_text(client: openai.OpenAI) -> None:
    with LONG.open("rb") as audio:
        stream = client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True)
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1
    deltas = [event.delta for event in events if event.type == "transcript.text.delta"]
    assert len(deltas) >= 2
    done = events[-1]
    assert "".join(deltas) == done.text and {"chapter", "river", "mill"} <= words(done.text)


def test_errors_are_openais_and_not_retried(
    client: openai.OpenAI, serve: CesarProcess, tmp_path: Path
) -> None:
    route = "/v1/audio/transcriptions"
    before = {status: request_count(serve, route, status) for status in (400, 413)}
    jobs_before = listed_job_ids(serve)

    with SHORT.open("rb") as audio, pytest.raises(openai.BadRequestError) as unknown:
        client.audio.transcriptions.create(model="no-such-model", file=audio)
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"

    with (AUDIO_DIR / "junk.mp3").open("rb") as audio, pytest.raises(openai.BadRequestError) as junk:
        client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert "Invalid file format" in junk.value.message and junk.value.type == "invalid_request_error"

    with SHORT.open("rb") as audio, pytest.raises(openai.BadRequestError) as granularity:
        client.audio.transcriptions.create(model="whisper-1", file=audio, timestamp_granularities=["word"])
    assert granularity.value.param == "timestamp_granularities"

    big = tmp_path / "big.wav"
    size = (MAX_UPLOAD_MB + 1) * 1024 * 1024
    big.write_bytes(wav_header(size) + bytes(size))
    with big.open("rb") as audio, pytest.raises(openai.APIStatusError) as too_large:
        client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert too_large.value.status_code == 413 and too_large.value.type == "invalid_request_error"

    # each refused once: the client did not retry any of them, and no job was made
    assert request_count(serve, route, 400) == before[400] + 3
    assert request_count(serve, route, 413) == before[413] + 1
    assert listed_job_ids(serve) == jobs_before


def test_models(client: openai.OpenAI) -> None:
    names = [model.id for model in client.models.list()]
    assert names[0] == "whisper-1" and {"tiny.en", "gpt-4o-transcribe"} <= set(names)
    assert client.models.retrieve("whisper-1").owned_by == "cesar"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("davinci")


def test_a_client_that_leaves_cancels_its_job(serve: CesarProcess) -> None:
    before = listed_job_ids(serve)
    with LONG.open("rb") as audio, pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{serve.url}/v1/audio/transcriptions",
            files={"file": (LONG.name, audio)},
            data={"model": "whisper-1"},
            timeout=httpx.Timeout(30, read=1.0),  # gives up while its job is queued or running
        )
    (job_id,) = wait_for(lambda: listed_job_ids(serve) - before, timeout=30, what="the request's job")
    job = wait_for(
        lambda: (
            (job := httpx.get(f"{serve.url}/jobs/{job_id}").json())["status"] in {"cancelled", "completed"}
            and job
        ),
        timeout=120,
        what="the job to end",
    )
    assert job["status"] == "cancelled", job


# --- whisper-asr-webservice, as Bazarr calls it ---------------------------------------------------------
def bazarr_audio(path: Path) -> bytes:
    """What Bazarr's provider sends: the track as raw 16 kHz mono s16le PCM (its own ffmpeg's output)."""
    with path.open("rb") as source:
        return head_as_wav(source, 3600)[44:]


def test_bazarr_detects_the_language_then_gets_srt(serve: CesarProcess) -> None:
    pcm = bazarr_audio(SHORT)
    session = requests.Session()
    session.headers["User-Agent"] = "Subliminal/2.1.0"
    # whisperai.py: detect_language()
    reply = session.post(
        f"{serve.url}/detect-language",
        params={"encode": "false"},
        files={"audio_file": pcm},
        timeout=(5, 3600),
    )
    results = reply.json()
    assert (results["language_code"], results["detected_language"]) == ("en", "english")
    assert 0 < results["confidence"] <= 1
    # whisperai.py: download_subtitle()
    reply = session.post(
        f"{serve.url}/asr",
        params={"task": "transcribe", "language": "en", "output": "srt", "encode": "false"},
        files={"audio_file": pcm},
        timeout=(5, 3600),
    )
    assert reply.status_code == 200
    assert reply.headers["Asr-Engine"] == "faster_whisper"
    assert reply.headers["Content-Disposition"] == 'attachment; filename="audio_file.srt"'
    assert reply.headers["Content-Type"].startswith("text/plain")
    cues = list(srt.parse(reply.content.decode("utf-8")))  # Bazarr: pysrt.from_string(content)
    assert cues and len(SHORT_WORDS & words(" ".join(cue.content for cue in cues))) >= 5
    assert reply.headers["X-Cesar-Job-Id"] in listed_job_ids(serve)


@pytest.mark.parametrize("output", ["txt", "vtt", "tsv", "json"])
def test_asr_outputs_of_an_encoded_file(serve: CesarProcess, output: str) -> None:
    with (AUDIO_DIR / "speech_en.mp3").open("rb") as audio:
        reply = requests.post(
            f"{serve.url}/asr",
            params={"output": output, "word_timestamps": "true"},
            files={"audio_file": audio},
        )
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain")  # whatever the format, as that service
    assert reply.headers["Content-Disposition"] == f'attachment; filename="speech_en.mp3.{output}"'
    body = reply.text
    if output == "json":
        data = reply.json()
        assert set(data) == {"language", "segments", "text"} and data["language"] == "en"
        assert data["segments"][0]["id"] == 1 and data["segments"][0]["words"]
        assert data["text"] == "".join(segment["text"] for segment in data["segments"])
        body = data["text"]
    elif output == "tsv":
        assert body.startswith("start\tend\ttext\n") and re.search(r"^\d+\t\d+\t", body.splitlines()[1])
    assert len(SHORT_WORDS & words(body)) >= 4


def test_asr_diarizes_with_whisper_asr_webservices_parameters(serve: CesarProcess) -> None:
    with (AUDIO_DIR / "two_speakers.wav").open("rb") as audio:
        reply = requests.post(
            f"{serve.url}/asr",
            params={"output": "json", "diarize": "true", "min_speakers": "2", "max_speakers": "2"},
            files={"audio_file": audio},
        )
    assert reply.status_code == 200, reply.text
    segments = reply.json()["segments"]
    assert {segment["speaker"] for segment in segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(segment["words"] is None for segment in segments)  # word_timestamps was not asked for
    with (AUDIO_DIR / "two_speakers.wav").open("rb") as audio:
        reply = requests.post(
            f"{serve.url}/asr", params={"output": "rttm", "diarize": "1"}, files={"audio_file": audio}
        )
    assert reply.status_code == 200, reply.text
    assert {line.split()[7] for line in reply.text.splitlines()} == {"SPEAKER_00", "SPEAKER_01"}
    reply = requests.post(
        f"{serve.url}/asr", params={"diarize": "true", "max_speakers": "0"}, files={"audio_file": b"x"}
    )
    assert reply.status_code == 400


def test_asr_refuses_bad_input_with_a_4xx(serve: CesarProcess) -> None:
    reply = requests.post(f"{serve.url}/asr", params={"encode": "false"}, files={"audio_file": b"\x00" * 3})
    assert reply.status_code == 400 and "odd number of bytes" in reply.json()["detail"]
    with (AUDIO_DIR / "junk.mp3").open("rb") as audio:
        reply = requests.post(f"{serve.url}/asr", files={"audio_file": audio})
    assert reply.status_code == 415 and reply.json()["detail"]
    reply = requests.post(f"{serve.url}/asr", files={"file": io.BytesIO(b"x")})
    assert reply.status_code == 400 and "audio_file" in reply.json()["detail"]


def test_the_docs_tag_both_dialects(serve: CesarProcess) -> None:
    spec = httpx.get(f"{serve.url}/docs/openapi.json").json()
    tags = {path: {tag for op in item.values() for tag in op["tags"]} for path, item in spec["paths"].items()}
    assert tags["/v1/audio/transcriptions"] == {"OpenAI-compatible"}
    assert tags["/asr"] == tags["/detect-language"] == {"whisper-asr-webservice-compatible"}
