"""Turning a validated request into a queued job (blocking calls: run these in a worker thread).

With an ``Idempotency-Key`` the store returns the job the key already names instead of a new one
(``Submitted.created`` is then False and the route answers 200 rather than 202).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from litestar.exceptions import ValidationException
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from cesar_api.access import Caller
from cesar_api.schemas import LiveStartIn, SubmitFields, UrlJobIn
from cesar_common.choices import WHISPER_LANGUAGES
from cesar_common.db.records import AudioFormat, JobRecord, JobSource, NewJob
from cesar_common.db.store import JobStore
from cesar_common.errors import InvalidInputError, LanguageError, ModelNotAllowedError, URLRefusedError
from cesar_common.job_options import TranscribeOptions, check_options, decoding_json, options_from
from cesar_common.settings import Settings

__all__ = [
    "Submitted",
    "check_callback",
    "job_options",
    "probe_upload",
    "submit_upload_job",
    "submit_url_job",
    "validated",
]


@dataclass(frozen=True, slots=True)
class Submitted:
    record: JobRecord
    position: int | None
    created: bool = True


def job_options(request: SubmitFields, settings: Settings) -> TranscribeOptions:
    """The engine options a request asks for, refusing models outside the allowlist, options that
    contradict each other (:func:`~cesar_common.job_options.check_options`), speakers for a live session
    where no final pass would find them, and decoding options for a live session, which decodes as it
    hears (422)."""
    asked = request.options()
    model = asked["model"] or settings.model
    if model not in settings.allowed_models:
        allowed = ", ".join(sorted(settings.allowed_models))
        raise ModelNotAllowedError(
            f"model {model!r} is not allowed on this server: use one of {allowed}",
            extra={"allowed": sorted(settings.allowed_models)},
        )
    language = asked["language"]
    if language is not None and language not in WHISPER_LANGUAGES:
        raise LanguageError(f"unknown language {language!r}: use an ISO 639 code such as en, de, fr")
    options = check_options(options_from(asked, model=model))
    live = isinstance(request, LiveStartIn) or (isinstance(request, UrlJobIn) and request.live)
    decoding = decoding_json(options.decoding_options)
    if live and decoding is not None:
        raise InvalidInputError(
            f"a live stream is decoded as it plays, with Cesar's own decoding: {', '.join(decoding)} "
            "applies to files only (send it without live)",
            extra={"field": next(iter(decoding))},
        )
    if options.diarize and live and not settings.live_final_pass:
        raise InvalidInputError(
            "a live session's speakers are found by its final pass, which this server does not run "
            "(CESAR_LIVE_FINAL_PASS=false): start the session without diarize"
        )
    return options


def check_callback(url: str | None, settings: Settings) -> str | None:
    """The callback URL if the address policy accepts it (it resolves the host: blocking), else 422."""
    if url is None:
        return None
    from cesar_common.urlpolicy import validate_url

    try:
        return validate_url(
            url, allow_private=settings.allow_private_urls, allowed=settings.allow_private_networks
        )
    except URLRefusedError as exc:
        raise URLRefusedError(str(exc).replace("URL refused", "callback_url refused", 1)) from exc


def submit_url_job(
    store: JobStore,
    settings: Settings,
    request: UrlJobIn,
    caller: Caller,
    *,
    idempotency_key: str | None = None,
) -> Submitted:
    """Queue a URL job after the address policy accepts the URL (it resolves the host: blocking): a file
    its worker downloads, or with ``live`` a live session whose worker follows the stream."""
    from cesar_common.urlpolicy import validate_url

    options = job_options(request, settings)
    max_seconds = _live_length(request, settings)
    url = validate_url(
        request.url, allow_private=settings.allow_private_urls, allowed=settings.allow_private_networks
    )
    new = NewJob(
        source=JobSource.LIVE if request.live else JobSource.URL,
        options=options,
        source_url=url,
        max_attempts=settings.max_attempts,
        callback_url=check_callback(request.callback_url, settings),
        idempotency_key=idempotency_key,
        owner=caller.owner,
        limits=caller.key,
    )
    if request.live:
        record, created = store.open_live_session(new, AudioFormat.CONTAINER, None, max_seconds=max_seconds)
    else:
        record, created = store.create_job_idempotent(new, None)
    return Submitted(record, store.queue_position(record), created)


def _live_length(request: UrlJobIn, settings: Settings) -> float | None:
    """A live stream's own maximum length (None: the server's), refused when it is no live stream's or is
    more than the server allows (422)."""
    if request.max_seconds is None:
        return None
    if not request.live:
        raise InvalidInputError("max_seconds is the length of a live stream: send it with live: true")
    if request.max_seconds > settings.live_max_seconds:
        raise InvalidInputError(
            f"max_seconds is at most {settings.live_max_seconds:g} on this server (CESAR_LIVE_MAX_SECONDS)",
            extra={"max_seconds": settings.live_max_seconds},
        )
    return request.max_seconds


def probe_upload(file: IO[bytes], settings: Settings) -> float | None:
    """415 unless ``file`` holds decodable audio, 422 when its header says it is longer than the server
    accepts (PyAV, imported on first use to keep start-up fast). Its duration, when the header says."""
    from cesar_common.transcription.audio import probe_audio, too_long

    info = probe_audio(file)
    if info.duration is not None and info.duration > settings.max_audio_seconds:
        raise too_long(info.duration, settings.max_audio_seconds)
    return info.duration


def submit_upload_job(
    store: JobStore,
    settings: Settings,
    options: TranscribeOptions,
    file: IO[bytes],
    caller: Caller,
    *,
    filename: str | None,
    content_type: str | None,
    audio_seconds: float | None,
    callback_url: str | None = None,
    idempotency_key: str | None = None,
) -> Submitted:
    """Stream ``file`` into a new job of ``caller`` (the store writes it in chunks and queues the job at
    the end, within the caller's quotas: ``audio_seconds`` is what :func:`probe_upload` found).
    ``callback_url`` must have passed :func:`check_callback`."""
    new = NewJob(
        source=JobSource.UPLOAD,
        options=options,
        filename=filename,
        content_type=content_type,
        max_attempts=settings.max_attempts,
        callback_url=callback_url,
        idempotency_key=idempotency_key,
        owner=caller.owner,
        limits=caller.key,
        audio_seconds=audio_seconds,
    )
    record, created = store.create_job_idempotent(new, file, max_bytes=settings.max_upload_bytes)
    return Submitted(record, store.queue_position(record), created)


def validated(model: type[BaseModel], data: Any, method: str, path: str, *, source: str = "body") -> Any:
    """``model`` from ``data``, or a 400 listing the problems (the same shape Litestar gives); ``source``:
    where the request sent them (``query`` for ``/asr``'s options)."""
    if not isinstance(data, dict):
        raise ValidationException(
            f"Validation failed for {method} {path}", extra=[{"message": "expected a JSON object"}]
        )
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        problems = [
            {"message": error["msg"], "key": ".".join(str(part) for part in error["loc"]), "source": source}
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ValidationException(f"Validation failed for {method} {path}", extra=problems) from None
