"""Errors that say what to do: the audio under the wrong form field names the right one, an invalid choice
lists the valid ones, ``/v1`` names OpenAI's parameters, and ``rttm`` of a job transcribed without diarize
is a 409 that says so (SQLite and PostgreSQL) rather than an empty file."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_helpers import (
    AUDIO_DIR,
    DECODING,
    PUBLIC_URL,
    SEGMENTS,
    Api,
    completed_job,
    error_body,
)
from click.testing import CliRunner

from cesar.cli import cli
from cesar_common.choices import OPENAI_RESPONSE_FORMATS, TASKS, TRANSCRIPT_FORMATS
from cesar_common.db.records import (
    PUBLIC_STATUSES,
    JobRecord,
    JobResult,
    JobSource,
    JobStatus,
    NewJob,
    TranscribeOptions,
)
from cesar_common.db.store import JobStore

SPEECH = AUDIO_DIR / "speech_en.wav"


def sent_as(api: Api, path: str, field: str, **kwargs: object) -> dict[str, object]:
    with SPEECH.open("rb") as audio:
        response = api.client.post(path, files={field: ("speech_en.wav", audio)}, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 400, response.text
    return response.json()  # type: ignore[no-any-return]


def listed(values: tuple[str, ...] | list[str]) -> str:
    return "use one of " + ", ".join(values)


def diarized_job(store: JobStore) -> JobRecord:
    """A completed job that asked for diarize, with its speakers, finished as a worker finishes one."""
    for queued in store.list_jobs(status=JobStatus.QUEUED, limit=1000).jobs:
        store.request_cancel(queued.id)
    options = TranscribeOptions(model="tiny.en", diarize=True)
    job = store.create_job(NewJob(source=JobSource.URL, options=options, source_url=PUBLIC_URL), None)
    claimed = store.claim_work("test-worker", lease_seconds=60)
    assert claimed is not None and claimed.id == job.id
    segments = [{**segment, "speaker": f"SPEAKER_0{n}"} for n, segment in enumerate(SEGMENTS)]
    speakers = [{"speaker": segment["speaker"], "duration": 3.0} for segment in segments]
    result = JobResult("text", "en", 0.97, 7.2, segments=segments, decoding=DECODING, speakers=speakers)
    assert store.complete_job(job.id, "test-worker", result)
    return store.get_job(job.id)


# --- the audio under the wrong name ----------------------------------------------------------------------
def test_a_file_under_the_wrong_field_names_the_right_one(api: Api) -> None:
    body = sent_as(api, "/transcribe", "audio")
    assert body["detail"] == "the form part `audio` holds a file: send the audio in the `file` part"
    assert body["extra"] == {"field": "file"}
    body = sent_as(api, "/asr", "file")
    assert body == {"detail": "the form part `file` holds a file: send the audio in the `audio_file` part"}
    body = sent_as(api, "/v1/audio/transcriptions", "upload", data={"model": "whisper-1"})
    error = body["error"]
    assert isinstance(error, dict)
    assert error["message"] == "the form part `upload` holds a file: send the audio in the `file` part"
    assert error["param"] == "file"


def test_a_long_text_field_says_where_the_audio_goes(api: Api) -> None:
    response = api.client.post(
        "/transcribe", files={"file": ("a.wav", b"RIFF")}, data={"audio": "x" * 70_000}
    )
    assert error_body(response, 400)["detail"] == (
        "the form field `audio` is longer than 64 KiB (the audio goes in the `file` part)"
    )


# --- invalid choices list the valid ones -----------------------------------------------------------------
def test_an_invalid_choice_lists_the_valid_ones(api: Api) -> None:
    job = completed_job(api.store)
    detail = error_body(api.client.get(f"/jobs/{job.id}/transcript", params={"format": "docx"}), 400)[
        "detail"
    ]
    assert detail.endswith(
        f"invalid query parameter 'format': Invalid enum value 'docx': {listed(TRANSCRIPT_FORMATS)}"
    )
    detail = error_body(api.client.get("/jobs", params={"status": "done"}), 400)["detail"]
    assert detail.endswith(listed([status.value for status in PUBLIC_STATUSES]))
    for query, choices in (({"output": "docx"}, TRANSCRIPT_FORMATS), ({"task": "summarize"}, TASKS)):
        with SPEECH.open("rb") as audio:
            response = api.client.post("/asr", params=query, files={"audio_file": ("a.wav", audio)})
        assert response.status_code == 400 and response.json()["detail"].endswith(listed(choices))
    with SPEECH.open("rb") as audio:
        response = api.client.post(
            "/transcribe", files={"file": ("a.wav", audio)}, data={"task": "summarize"}
        )
    assert "'transcribe' or 'translate'" in error_body(response, 400)["detail"]
    body = sent_as(
        api, "/v1/audio/transcriptions", "file", data={"model": "whisper-1", "response_format": "docx"}
    )
    assert str(body["error"]).count(listed(OPENAI_RESPONSE_FORMATS)) == 1


# --- /v1 speaks OpenAI's names ---------------------------------------------------------------------------
@pytest.mark.parametrize(("prompt", "why"), [("x" * 2001, "at most 2000 characters"), ("a\x1bb", "U+001B")])
def test_v1_names_the_prompt_as_openai_does(api: Api, prompt: str, why: str) -> None:
    body = sent_as(api, "/v1/audio/transcriptions", "file", data={"model": "whisper-1", "prompt": prompt})
    error = body["error"]
    assert isinstance(error, dict)
    assert error["param"] == "prompt"
    assert "'prompt'" in error["message"] and why in error["message"]
    assert "initial_prompt" not in str(body)


# --- rttm needs diarize ----------------------------------------------------------------------------------
def test_rttm_of_a_job_without_diarize_is_a_409_that_says_so(api: Api) -> None:
    plain = completed_job(api.store)
    body = error_body(api.client.get(f"/jobs/{plain.id}/transcript", params={"format": "rttm"}), 409)
    assert "was transcribed without diarize" in body["detail"] and body["extra"] == {"diarize": False}
    links = api.client.get(f"/jobs/{plain.id}").json()["links"]["transcripts"]
    assert set(links) == set(TRANSCRIPT_FORMATS) - {"rttm"}  # no link to a 409

    diarized = diarized_job(api.store)
    links = api.client.get(f"/jobs/{diarized.id}").json()["links"]["transcripts"]
    assert set(links) == set(TRANSCRIPT_FORMATS)
    turns = api.client.get(links["rttm"])
    assert turns.status_code == 200
    assert [line.split()[7] for line in turns.text.splitlines()] == ["SPEAKER_00", "SPEAKER_01"]


def test_asr_refuses_rttm_without_diarize_before_any_job(api: Api) -> None:
    before = api.client.get("/jobs", params={"limit": 1}).json()
    with SPEECH.open("rb") as audio:
        response = api.client.post("/asr", params={"output": "rttm"}, files={"audio_file": ("a.wav", audio)})
    assert response.status_code == 400
    assert response.json() == {"detail": "output=rttm is the speaker turns: it needs diarize=true"}
    assert api.client.get("/jobs", params={"limit": 1}).json() == before


def test_the_commands_refuse_rttm_without_diarize_before_any_work(api: Api, tmp_path: Path) -> None:
    before = api.client.get("/jobs", params={"limit": 1}).json()
    output = tmp_path / "turns.rttm"
    for command in (
        ["transcribe", str(SPEECH), "-f", "rttm"],
        ["transcribe", str(SPEECH), "-o", str(output)],
        ["submit", str(SPEECH), "--wait", "-f", "rttm", "--server", api.url],
        ["submit", str(SPEECH), "--wait", "-o", str(output), "--server", api.url],
    ):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, result.output
        assert result.stderr == "error: rttm is the speaker turns: it needs --diarize\n"
    assert not output.exists()
    assert api.client.get("/jobs", params={"limit": 1}).json() == before
