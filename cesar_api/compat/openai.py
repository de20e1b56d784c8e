"""OpenAI's transcription API: ``POST /v1/audio/transcriptions`` and ``/translations``, ``GET /v1/models``.

Requests and answers follow OpenAI's (the ``openai`` SDKs, Open WebUI, LibreChat, n8n... need no change but
their base URL). Each request is an ordinary job (:mod:`cesar_api.compat.job_wait`), named by the
``X-Cesar-Job-Id`` header, and the answer comes when it ends; a client that disconnects first cancels it.

Errors take OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``. OpenAI's clients retry 408,
409, 429 and every 5xx (the Python one twice, after waits): a request that cannot succeed again (bad
fields, no audio, an unknown model, a transcription that failed on its audio) is a 4xx, never a 409 or a
5xx; only failures a retry may get past (the database away, a worker lost) are 5xx.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from litestar import MediaType, Request, Response, Router, get, post
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter
from litestar.response import Stream
from litestar.types import Guard

from cesar_api.access import caller_of
from cesar_api.compat.job_wait import ClientGone, cancel, follow_to_end, queue_upload, wait_for_end
from cesar_api.compat.openapi_specs import (
    OpenAITranscriptionOperation,
    OpenAITranslationOperation,
    openai_errors,
)
from cesar_api.exception_mapper import problem_of
from cesar_api.schemas import TranscribeForm
from cesar_api.submit import job_options, validated
from cesar_api.transcripts import completed_transcript
from cesar_api.uploads import receive_upload
from cesar_common.choices import (
    OPENAI_GRANULARITIES,
    OPENAI_GRANULARITY_FIELD,
    OPENAI_RESPONSE_FORMATS,
    WHISPER_LANGUAGE_NAMES,
    Task,
)
from cesar_common.db.records import JobRecord, JobStatus
from cesar_common.errors import ClientError
from cesar_common.job_options import DECODING_NAMES, parse_option
from cesar_common.settings import Settings
from cesar_common.transcription import model_store
from cesar_common.transcription.result import TranscriptionResult
from cesar_common.transcription.writers import FORMATS, render

__all__ = ["OpenAIError", "openai_router", "parse_request", "resolve_model"]

TAG = "OpenAI-compatible"
#: the model name every OpenAI client knows: the server's default model
WHISPER_1 = "whisper-1"
_STREAMABLE = ("json", "text")
#: the form fields each route takes beside ``file`` (OpenAI refuses others, as does Cesar): OpenAI's, and
#: Cesar's decoding options by their own names (``temperature`` is OpenAI's too)
_FIELDS: dict[Task, frozenset[str]] = {
    "transcribe": frozenset(
        {
            "model",
            "language",
            "prompt",
            "response_format",
            OPENAI_GRANULARITY_FIELD,
            "stream",
            "chunking_strategy",
            *DECODING_NAMES,
        }
    ),
    "translate": frozenset({"model", "prompt", "response_format", *DECODING_NAMES}),
}
#: the job error codes a new request with the same audio and fields would meet again
_DETERMINISTIC = frozenset(
    {"decode_failed", "audio_too_long", "unknown_language", "model_not_found", "model_not_allowed",
     "device_unavailable", "cancelled", "invalid_input", "bad_request"}
)  # fmt: skip
JOB_HEADER = "X-Cesar-Job-Id"
_STARTED = int(time.time())
#: the job fields that OpenAI's requests call otherwise: a refused value is named as the client sent it
_OPENAI_NAMES = {"initial_prompt": "prompt"}


# --- the request --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AudioRequest:
    task: Task
    model: str  # the allowed model it names
    language: str | None
    prompt: str | None
    response_format: str
    words: bool
    segments: bool
    stream: bool
    #: the decoding options sent (``temperature``, ``hotwords``, ...), as sent: the job's form reads them
    decoding: dict[str, str]


def resolve_model(name: str, settings: Settings) -> str:
    """The allowed model ``name`` stands for: ``whisper-1``, an alias, or an allowed model's own name."""
    if name == WHISPER_1:
        return settings.model
    model = settings.model_aliases.get(name, name)
    if model not in settings.allowed_models:
        raise OpenAIError(
            f"The model `{name}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return model


def parse_request(
    task: Task, fields: dict[str, str], lists: dict[str, list[str]], settings: Settings
) -> AudioRequest:
    """The fields of a transcription or translation, checked as OpenAI checks them (400 otherwise)."""
    for name in [*fields, *lists]:
        if name not in _FIELDS[task]:
            raise OpenAIError(f"Unrecognized request argument supplied: {name}", param=name)
    model_name = fields.get("model", "").strip()
    if not model_name:
        raise OpenAIError("you must provide a model parameter", param="model")
    response_format = fields.get("response_format", "json").strip() or "json"
    if response_format not in OPENAI_RESPONSE_FORMATS:
        raise OpenAIError(
            f"Invalid value '{response_format}' for response_format: use one of "
            + ", ".join(OPENAI_RESPONSE_FORMATS),
            param="response_format",
        )
    decoding = {name: fields[name] for name in DECODING_NAMES if fields.get(name, "").strip()}
    for name, value in decoding.items():  # the check of every door, refused in OpenAI's terms
        try:
            parse_option(name, value)
        except ValueError as exc:
            raise OpenAIError(str(exc), param=name) from None
    granularities = [value.strip() for value in lists.get(OPENAI_GRANULARITY_FIELD, [])]
    for value in granularities:
        if value not in OPENAI_GRANULARITIES:
            raise OpenAIError(
                f"Invalid value '{value}' for timestamp_granularities: use word or segment",
                param="timestamp_granularities",
            )
    if granularities and response_format != "verbose_json":
        raise OpenAIError(
            "timestamp_granularities requires response_format=verbose_json", param="timestamp_granularities"
        )
    stream = _boolean(fields.get("stream", "false"), "stream")
    if stream and response_format not in _STREAMABLE:
        raise OpenAIError("stream=true needs response_format json or text", param="stream")
    chunking = fields.get("chunking_strategy", "auto").strip()
    if chunking != "auto":  # Cesar always cuts at the pauses voice activity detection finds
        raise OpenAIError("chunking_strategy must be auto", param="chunking_strategy")
    language = fields.get("language", "").strip() or None
    if language is not None and language not in WHISPER_LANGUAGE_NAMES:
        raise OpenAIError(
            f"Invalid language '{language}': use an ISO-639-1 code such as en", param="language"
        )
    return AudioRequest(
        task=task,
        model=resolve_model(model_name, settings),
        language=language,
        prompt=fields.get("prompt") or None,
        response_format=response_format,
        words="word" in granularities,
        segments="segment" in granularities or not granularities,
        stream=stream,
        decoding=decoding,
    )


def _boolean(value: str, param: str) -> bool:
    answer = {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())
    if answer is None:
        raise OpenAIError(f"{param} must be true or false, not {value!r}", param=param)
    return answer


# --- the answers ---------------------------------------------------------------------------------------
def usage(duration: float | None) -> dict[str, Any]:
    """What OpenAI bills: whole seconds of audio."""
    return {"type": "duration", "seconds": math.ceil(duration or 0.0)}


def answer(request: AudioRequest, record: JobRecord) -> Response[Any]:
    """The completed job in the asked ``response_format``."""
    result = completed_transcript(record)
    headers = {JOB_HEADER: record.id}
    if request.response_format == "json":
        return Response({"text": result.text, "usage": usage(result.duration)}, headers=headers)
    if request.response_format == "verbose_json":
        return Response(verbose(request, result), headers=headers)
    if request.response_format == "text":
        return Response(result.text + "\n", media_type=MediaType.TEXT, headers=headers)
    fmt = request.response_format
    return Response(render(result, fmt), media_type=FORMATS[fmt].media_type, headers=headers)


def verbose(request: AudioRequest, result: TranscriptionResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": request.task,
        "language": "english"
        if request.task == "translate"
        else WHISPER_LANGUAGE_NAMES.get(result.language or "", result.language or ""),
        "duration": result.duration,
        "text": result.text,
    }
    if request.segments:
        body["segments"] = [
            {
                "id": segment.id,
                "seek": segment.decoded.seek if segment.decoded else 0,
                "start": segment.start,
                "end": segment.end,
                "text": segment.text,
                "tokens": list(segment.decoded.tokens or ()) if segment.decoded else [],
                "temperature": segment.decoded.temperature if segment.decoded else 0.0,
                "avg_logprob": segment.decoded.avg_logprob if segment.decoded else 0.0,
                "compression_ratio": segment.decoded.compression_ratio if segment.decoded else 0.0,
                "no_speech_prob": segment.decoded.no_speech_prob if segment.decoded else 0.0,
            }
            for segment in result.segments
        ]
    if request.words:
        body["words"] = [
            {"word": word.word, "start": word.start, "end": word.end}
            for segment in result.segments
            for word in segment.words or ()
        ]
    body["usage"] = usage(result.duration)
    return body


def failed(record: JobRecord) -> OpenAIError:
    """Why the job did not complete, as the error a client should see (4xx unless a retry may help)."""
    code = record.error_code or ("cancelled" if record.status is JobStatus.CANCELLED else "internal_error")
    message = record.error_message or f"the transcription ended {record.status.value}"
    if code in _DETERMINISTIC:
        return OpenAIError(message, code=code, job_id=record.id)
    return OpenAIError(message, status=500, kind="server_error", code=code, job_id=record.id)


async def stream_events(request: Request[Any, Any, Any], job: JobRecord) -> AsyncIterator[bytes]:
    """``transcript.text.delta`` for each segment as it is decoded, then ``transcript.text.done``. If the
    reader goes away first, the job is cancelled."""
    ended = False
    said: list[str] = []
    try:
        async for kind, data in follow_to_end(request, job, watch_client=False):
            if kind == "segment":
                text = str(data.get("text", "")).strip()
                if text:
                    delta = text if not said else f" {text}"
                    said.append(text)
                    yield _sse({"type": "transcript.text.delta", "delta": delta})
                continue
            ended = True
            record: JobRecord = data
            if record.status is JobStatus.COMPLETED:
                result = completed_transcript(record)
                done = {"type": "transcript.text.done", "text": result.text, "usage": usage(result.duration)}
                yield _sse(done)
            else:
                yield _sse(failed(record).body())
    finally:
        if not ended:
            with anyio.CancelScope(shield=True):
                await cancel(request.app.state.store, job.id)


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


# --- errors ---------------------------------------------------------------------------------------------
class OpenAIError(ClientError):
    """An error already in OpenAI's terms."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind, self.param, self.error_code, self.job_id = kind, param, code, job_id

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.error_code,
            }
        }


def openai_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Every error on ``/v1`` in OpenAI's shape (the router's exception handler)."""
    if isinstance(exc, OpenAIError):
        headers = {JOB_HEADER: exc.job_id} if exc.job_id else {}
        return Response(exc.body(), status_code=exc.status, headers=headers or None)
    if isinstance(exc, ClientGone):  # nobody to read it
        return Response({"error": {"message": "client closed request"}}, status_code=499)
    problem = problem_of(request, exc)
    status = problem.status
    if status in (409, 415, 422):  # the request cannot succeed as it is: OpenAI says 400
        status = 400
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = {401: "invalid_api_key", 413: "file_too_large"}.get(status, problem.code)
    if status == 429:  # OpenAI's words: a rate limit, or a quota used up
        rate = isinstance(problem.extra, dict) and problem.extra.get("limit") == "requests_per_second"
        kind = code = "rate_limit_exceeded" if rate else "insufficient_quota"
        kind = "requests" if rate else kind
    param = _param_of(problem.extra)
    error = OpenAIError(problem.detail, status=status, kind=kind, param=param, code=code)
    return Response(error.body(), status_code=status, headers=problem.headers or None)


def _param_of(extra: Any) -> str | None:
    """The field a validation problem names (Litestar's and Cesar's 400s list them), or an error's
    ``field`` (the part that should hold the audio)."""
    if isinstance(extra, list):
        first = next((item for item in extra if isinstance(item, dict) and item.get("key")), None)
        return str(first["key"]) if first else None
    if isinstance(extra, dict) and extra.get("field"):
        return str(extra["field"])
    return None


# --- routes ----------------------------------------------------------------------------------------------
_ERRORS = openai_errors(
    (400, "Bad fields, no audio in the file, an unknown model, or a transcription failed on its audio",
     "invalid_request_error", "model_not_found"),
    (401, "Missing, wrong, revoked or expired API key (only on a server with keys)", "invalid_request_error",
     "invalid_api_key"),
    (404, "No such model", "invalid_request_error", "model_not_found"),
    (413, "The file is larger than CESAR_MAX_UPLOAD_MB", "invalid_request_error", "file_too_large"),
    (429, "A limit of the key: its queued jobs or audio hours per day (`insufficient_quota`), or its "
     "requests per second (`rate_limit_exceeded`, with Retry-After)", "insufficient_quota",
     "insufficient_quota"),
    (500, "The job's worker was lost too often, or another failure a retry may get past", "server_error",
     "worker_lost"),
    (503, "The job database cannot be reached, or the server sheds load (`overloaded`, with Retry-After)",
     "server_error", "database_unavailable"),
)  # fmt: skip
_TRANSCRIPTION_ERRORS = {status: _ERRORS[status] for status in (400, 401, 413, 429, 500, 503)}

_DESCRIPTION = """\
As OpenAI's `POST /v1/audio/{path}`: multipart with `file` and `model` (`whisper-1` is the server's default
model; an allowed model's name, or an alias from `CESAR_MODEL_ALIASES`, works too){more}, `prompt`,
`response_format` (`json`, `text`, `srt`, `vtt`, `verbose_json`) and `temperature` (`0`, the default, decodes
deterministically, with no fallback: send a list such as `0,0.2,0.4,0.6,0.8,1.0` for Whisper's fallback).
Cesar's other decoding options (`hotwords`, `no_speech_threshold`, ...) are form fields of their own names
(the manual's Decoding options).{extra}

The request is an ordinary job (`X-Cesar-Job-Id` names it; it shows in `GET /jobs`), answered when it ends.
A client that disconnects first cancels it. Errors come as `{{"error": {{"message", "type", "param",
"code"}}}}`; only failures a retry may get past are 5xx (OpenAI's clients retry those)."""


async def _transcribe(request: Request[Any, Any, Any], task: Task) -> Response[Any] | Stream:
    settings: Settings = request.app.state.settings
    store = request.app.state.store
    content_type, _params = request.content_type
    if content_type != "multipart/form-data":
        raise OpenAIError("the request must be multipart/form-data with a `file` part", param="file")
    async with receive_upload(
        request, max_bytes=settings.max_upload_bytes, repeatable=frozenset({OPENAI_GRANULARITY_FIELD})
    ) as upload:
        asked = parse_request(task, upload.fields, upload.lists, settings)
        form = {"model": asked.model, "task": task, "word_timestamps": str(asked.words).lower()}
        if asked.language:
            form["language"] = asked.language
        if asked.prompt:
            form["initial_prompt"] = asked.prompt
        form.update(asked.decoding)
        options = job_options(_validated_as_openai(form, request), settings)
        try:
            job = await queue_upload(
                store,
                settings,
                options,
                upload.file,
                caller_of(request),
                filename=upload.filename,
                content_type=upload.content_type,
            )
        except ClientError as exc:
            if exc.status_code == 415:  # OpenAI's words for a file it cannot read
                raise OpenAIError(f"Invalid file format: {exc.message}", param="file") from exc
            raise
    if asked.stream:
        return Stream(
            stream_events(request, job),
            media_type="text/event-stream",
            headers={JOB_HEADER: job.id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    record = await wait_for_end(request, job)
    if record.status is not JobStatus.COMPLETED:
        raise failed(record)
    return answer(asked, record)


def _validated_as_openai(form: dict[str, str], request: Request[Any, Any, Any]) -> TranscribeForm:
    """The job's fields from OpenAI's, checked; a refused one is named as OpenAI's (``prompt``)."""
    try:
        form_in: TranscribeForm = validated(TranscribeForm, form, request.method, request.url.path)
    except ValidationException as exc:
        problems = exc.extra if isinstance(exc.extra, list) else []
        renamed = [
            {**problem, "key": _OPENAI_NAMES.get(str(problem.get("key")), problem.get("key"))}
            if isinstance(problem, dict)
            else problem
            for problem in problems
        ]
        raise ValidationException(exc.detail, extra=renamed) from None
    return form_in


@post(
    "/audio/transcriptions",
    operation_id="openaiCreateTranscription",
    operation_class=OpenAITranscriptionOperation,
    summary="Transcribe audio (OpenAI-compatible)",
    description=_DESCRIPTION.format(
        path="transcriptions",
        more=", `language` (ISO-639-1)",
        extra=" `timestamp_granularities[]` (`word`, `segment`; with `verbose_json`) and `stream=true` "
        "(server-sent `transcript.text.delta` events as segments are decoded, then `transcript.text.done`).",
    ),
    status_code=200,
    responses={
        200: ResponseSpec(
            data_container=dict[str, Any], generate_examples=False, description="The transcript."
        ),
        **_TRANSCRIPTION_ERRORS,
    },
)
async def create_transcription(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
    return await _transcribe(request, "transcribe")


@post(
    "/audio/translations",
    operation_id="openaiCreateTranslation",
    operation_class=OpenAITranslationOperation,
    summary="Translate audio into English (OpenAI-compatible)",
    description=_DESCRIPTION.format(path="translations", more="", extra=""),
    status_code=200,
    responses={
        200: ResponseSpec(
            data_container=dict[str, Any], generate_examples=False, description="The English text."
        ),
        **_TRANSCRIPTION_ERRORS,
    },
)
async def create_translation(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
    return await _transcribe(request, "translate")


def model_names(settings: Settings) -> list[str]:
    """``whisper-1``, the allowed models, then the aliases."""
    names = [WHISPER_1, *sorted(settings.allowed_models), *sorted(settings.model_aliases)]
    return list(dict.fromkeys(names))


def _model(name: str, settings: Settings, present: dict[str, bool]) -> dict[str, Any]:
    """OpenAI's model object, and whether the model's files are on the API's host (``present``)."""
    model = settings.model if name == WHISPER_1 else settings.model_aliases.get(name, name)
    return {
        "id": name,
        "object": "model",
        "created": _STARTED,
        "owned_by": "cesar",
        "present": present[model],
    }


async def _presence(request: Request[Any, Any, Any], settings: Settings) -> dict[str, bool]:
    """Which allowed models are on this host: remembered, looked up again (off the event loop) only when
    the models directory changed or the answers are old (:class:`model_store.PresenceCache`)."""
    cache: model_store.PresenceCache = request.app.state.model_presence
    names = sorted(settings.allowed_models)
    known = cache.fresh(names)
    return known if known is not None else await anyio.to_thread.run_sync(cache.refresh, names)


@get(
    "/models",
    operation_id="openaiListModels",
    summary="List the models (OpenAI-compatible)",
    description="`whisper-1` (the default model), the allowed models and the aliases, as OpenAI lists them, "
    "each with `present`: whether its files are on the API's host (a model is downloaded on first use "
    "unless it is; `cesar models import` adds one without internet).",
    responses={401: _ERRORS[401]},
)
async def list_models(request: Request[Any, Any, Any]) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    present = await _presence(request, settings)
    return {"object": "list", "data": [_model(name, settings, present) for name in model_names(settings)]}


@get(
    "/models/{model_id:str}",
    operation_id="openaiGetModel",
    summary="Get a model (OpenAI-compatible)",
    description="One of the names `GET /v1/models` lists; others are a 404 `model_not_found`.",
    responses={status: _ERRORS[status] for status in (400, 401, 404)},
)
async def get_model(
    request: Request[Any, Any, Any],
    model_id: Annotated[str, PathParameter(max_length=256, description="A name `GET /v1/models` lists.")],
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    if model_id not in model_names(settings):
        raise OpenAIError(
            f"The model '{model_id}' does not exist", status=404, param="model", code="model_not_found"
        )
    return _model(model_id, settings, await _presence(request, settings))


def openai_router(guards: list[Guard]) -> Router:
    """The ``/v1`` routes, behind ``guards`` (the API key), answering errors in OpenAI's shape."""
    return Router(
        path="/v1",
        route_handlers=[create_transcription, create_translation, list_models, get_model],
        guards=guards,
        tags=[TAG],
        security=[{}, {"BearerAuth": []}],
        exception_handlers={Exception: openai_error_response},
    )
