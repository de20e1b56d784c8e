"""Turning a validated request into a queued job (blocking calls: run these in a worker thread)."""

from __future__ import annotations

from typing import IO

from cesar_common.db.records import JobRecord, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.errors import LanguageError, ModelNotAllowedError
from cesar_common.schemas import WHISPER_LANGUAGES, JobOptionsIn, UrlJobIn
from cesar_common.settings import Settings


def options_from(request: JobOptionsIn, settings: Settings) -> TranscribeOptions:
    """The engine options a request asks for, refusing models outside the allowlist (422)."""
    model = request.model or settings.model
    if model not in settings.allowed_models:
        allowed = ", ".join(sorted(settings.allowed_models))
        raise ModelNotAllowedError(
            f"model {model!r} is not allowed on this server: use one of {allowed}",
            extra={"allowed": sorted(settings.allowed_models)},
        )
    if request.language is not None and request.language not in WHISPER_LANGUAGES:
        raise LanguageError(f"unknown language {request.language!r}: use an ISO 639 code such as en, de, fr")
    return TranscribeOptions(
        model=model,
        language=request.language,
        task=request.task,
        word_timestamps=request.word_timestamps,
        vad=request.vad,
        initial_prompt=request.initial_prompt or None,
    )


def submit_url_job(store: JobStore, settings: Settings, request: UrlJobIn) -> tuple[JobRecord, int | None]:
    """Queue a URL job after the address policy accepts the URL (it resolves the host: blocking)."""
    from cesar_common.urlpolicy import validate_url

    options = options_from(request, settings)
    url = validate_url(request.url, allow_private=settings.allow_private_urls, resolve=True)
    new = NewJob(source=JobSource.URL, options=options, source_url=url, max_attempts=settings.max_attempts)
    record = store.create_job(new, None)
    return record, store.queue_position(record)


def probe_upload(file: IO[bytes]) -> None:
    """415 unless ``file`` holds decodable audio (PyAV, imported on first use to keep start-up fast)."""
    from cesar_common.transcription.audio import probe_audio

    probe_audio(file)


def submit_upload_job(
    store: JobStore,
    settings: Settings,
    options: TranscribeOptions,
    file: IO[bytes],
    *,
    filename: str | None,
    content_type: str | None,
) -> tuple[JobRecord, int | None]:
    """Stream ``file`` into a new job (the store writes it in chunks and queues the job at the end)."""
    new = NewJob(
        source=JobSource.UPLOAD,
        options=options,
        filename=filename,
        content_type=content_type,
        max_attempts=settings.max_attempts,
    )
    record = store.create_job(new, file, max_bytes=settings.max_upload_bytes)
    return record, store.queue_position(record)
