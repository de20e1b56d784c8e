"""The API's schemas and small helpers, without a database or a server."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from litestar.exceptions import ValidationException

from cesar_api.exception_mapper import _validation_detail
from cesar_api.schemas import TranscribeForm, UrlJobIn
from cesar_api.submit import job_options
from cesar_common.choices import TRANSCRIPT_FORMATS, WHISPER_LANGUAGES
from cesar_common.db.records import (
    Decoding,
    JobRecord,
    JobSource,
    JobStatus,
    TranscribeOptions,
    WebhookDeliveryRecord,
    WebhookState,
)
from cesar_common.errors import LanguageError, ModelNotAllowedError
from cesar_common.job_json import job_json, job_to_schema
from cesar_common.settings import Settings
from cesar_common.transcription.writers import FORMATS
from cesar_common.urlpolicy import is_loopback

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

RECORD = JobRecord(
    id="job-1",
    status=JobStatus.QUEUED,
    source=JobSource.UPLOAD,
    source_url=None,
    filename="talk.mp3",
    content_type="audio/mpeg",
    size_bytes=1234,
    options=TranscribeOptions(model="tiny.en", language="en"),
    created_at=NOW,
    started_at=None,
    completed_at=None,
    progress=0.0,
    attempts=0,
    max_attempts=3,
    worker_id="w-secret",
    lease_expires_at=None,
    cancel_requested=False,
    result_text=None,
    detected_language=None,
    language_probability=None,
    duration=None,
    segments=None,
    error_message=None,
    error_code=None,
)


def test_whisper_languages_match_faster_whisper() -> None:
    from cesar_common.transcription.faster_whisper_adapter import LANGUAGE_CODES

    assert LANGUAGE_CODES == WHISPER_LANGUAGES


def test_transcript_formats_match_the_writers() -> None:
    assert set(TRANSCRIPT_FORMATS) == set(FORMATS)


def test_job_schema_of_an_upload() -> None:
    job = job_to_schema(RECORD, queue_position=3)
    data = job.model_dump(mode="json")
    assert data["audio_path"] == "talk.mp3"
    assert data["model_size"] == data["model"] == "tiny.en"
    assert data["queue_position"] == 3
    assert data["created_at"] == "2025-01-02T03:04:05Z"
    assert data["links"] == {"self": "/jobs/job-1", "cancel": "/jobs/job-1/cancel", "transcripts": None}
    assert "worker_id" not in data  # internal fields stay inside


def test_job_schema_of_a_completed_url_job() -> None:
    record = dataclasses.replace(
        RECORD,
        status=JobStatus.COMPLETED,
        source=JobSource.URL,
        source_url="https://example.org/a.mp3",
        filename=None,
        progress=1.7,
    )
    data = job_to_schema(record, queue_position=5, base_url="http://host").model_dump(mode="json")
    assert data["audio_path"] == "https://example.org/a.mp3"
    assert data["queue_position"] is None  # only queued jobs have one
    assert data["progress"] == 1.0
    assert data["links"]["transcripts"]["srt"] == "http://host/jobs/job-1/transcript?format=srt"


def test_options_from_a_request() -> None:
    settings = Settings(database_url="sqlite://", models=["tiny.en", "base.en"], model="tiny.en")
    options = job_options(TranscribeForm(language="DE", word_timestamps=True), settings)
    assert options == TranscribeOptions(model="tiny.en", language="de", word_timestamps=True)
    assert job_options(TranscribeForm(model="base.en", language="auto"), settings).language is None
    with pytest.raises(ModelNotAllowedError, match="'large-v3' is not allowed"):
        job_options(TranscribeForm(model="large-v3"), settings)
    with pytest.raises(LanguageError, match="'xx'"):
        job_options(TranscribeForm(language="xx"), settings)


def test_request_models_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        UrlJobIn.model_validate({"url": "https://example.org/a.mp3", "callback": "x"})
    with pytest.raises(ValueError, match="pattern"):
        TranscribeForm.model_validate({"language": "english!"})


def test_validation_detail_names_the_first_problem() -> None:
    exc = ValidationException(
        "Validation failed for GET /jobs",
        extra=[{"message": "Expected `int`, got `str`", "key": "limit", "source": "query"}],
    )
    assert _validation_detail(exc.detail, exc.extra) == (
        "Validation failed for GET /jobs: invalid query parameter 'limit': Expected `int`, got `str`"
    )
    assert _validation_detail("plain", None) == "plain"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("192.168.1.2", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"status": JobStatus.PROCESSING, "started_at": NOW.replace(microsecond=123456), "progress": 0.31},
        {
            "status": JobStatus.COMPLETED,
            "source": JobSource.URL,
            "source_url": "https://example.org/a.mp3",
            "filename": None,
            "completed_at": NOW,
            "progress": 1.0,
            "result_text": 'Hello — «world» \u2028 "quoted" \\ back',
            "detected_language": "en",
            "language_probability": 0.987654321,
            "duration": 70.123,
            "decoding": Decoding(device="cpu", compute_type="int8", mode="batched", batch_size=4),
            "segment_count": 12,
        },
        {"status": JobStatus.ERROR, "error_message": "bad", "error_code": "decode_failed", "progress": 0.5},
        {"callback_url": "https://hooks.example.com/x"},
        {
            "status": JobStatus.COMPLETED,
            "callback_url": "https://hooks.example.com/x",
            "webhook": WebhookDeliveryRecord(
                id="d-1",
                job_id="job-1",
                url="https://hooks.example.com/x",
                state=WebhookState.PENDING,
                attempts=2,
                next_attempt_at=NOW,
                last_status_code=503,
                last_error="HTTP 503",
                worker_id=None,
                lease_expires_at=None,
                created_at=NOW,
                delivered_at=None,
            ),
        },
        {
            "options": TranscribeOptions(
                model="base", task="translate", word_timestamps=True, initial_prompt="Hi"
            )
        },
    ],
)
def test_job_json_is_the_schemas_json(changes: dict[str, object]) -> None:
    """The polled path encodes the job without the pydantic model: byte for byte the same JSON."""
    record = dataclasses.replace(RECORD, **changes)  # type: ignore[arg-type]
    for position in (None, 4):
        expected = job_to_schema(record, queue_position=position).model_dump_json().encode()
        assert job_json(record, queue_position=position) == expected
