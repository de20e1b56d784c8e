"""Submitting work: ``POST /transcribe`` (multipart upload or JSON URL) and ``POST /transcribe/url``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIMediaType, Operation, RequestBody
from litestar.params import HeaderParameter

from cesar_api.access import caller_of
from cesar_api.exception_mapper import error_responses
from cesar_api.schemas import TranscribeForm, UrlJobIn
from cesar_api.submit import (
    Submitted,
    check_callback,
    job_options,
    probe_upload,
    submit_upload_job,
    submit_url_job,
    validated,
)
from cesar_api.uploads import FILE_FIELD, read_json_body, receive_upload
from cesar_common.db.idempotency import MAX_KEY_LENGTH, check_key
from cesar_common.db.store import JobStore
from cesar_common.errors import UnsupportedMediaError
from cesar_common.job_json import JobOut, job_to_schema
from cesar_common.settings import Settings

__all__ = ["create_transcription", "create_url_transcription"]

IDEMPOTENCY_HEADER = "Idempotency-Key"

_DESCRIPTION = """\
Queue a transcription and answer `202 Accepted` at once with the job and a `Location` header; poll
`GET /jobs/{id}` until it is `completed` (or `error`, `cancelled`), then fetch the transcript.

**Upload** (`multipart/form-data`): the audio in the `file` part, plus optional fields `model`, `language`,
`task`, `word_timestamps`, `vad`, `initial_prompt`, the speaker options and the decoding options (`hotwords`,
`temperature`, `no_speech_threshold`, ...: a list as `0,0.2,0.4`). The upload streams into the job database;
one larger than `CESAR_MAX_UPLOAD_MB` gives `413`, one with no decodable audio `415` (no job is created).

**URL** (`application/json`): `{"url": "https://...", "model": "tiny.en"}`; a worker downloads the audio.
`http`/`https` only; private and loopback addresses are refused unless the server allows them.

**A live stream** (`application/json` with `"live": true`): an Icecast or Shoutcast stream, or an HLS
`.m3u8` playlist, transcribed while it plays: a live session (`source` `live`) whose worker follows the URL,
with its segments at `/jobs/{id}/events`, until the stream ends, `max_seconds` of audio, a cancel, or
`CESAR_LIVE_IDLE_SECONDS` without audio. It takes no decoding options (`422`). Where the stream dropped is in
the transcript's JSON (`gaps`).

Both forms take `callback_url`: once the job ends, Cesar POSTs its JSON there (a webhook, signed with
`Cesar-Signature` when the server has `CESAR_WEBHOOK_SECRET`); the address policy applies to it too.

**Retrying safely**: send an `Idempotency-Key` header (at most 255 characters). The same key with the same
request within 24 hours answers `200` with the job it created instead of queueing another; the same key
with a different request gives `422`.

`curl -F file=@interview.mp3 -F model=tiny.en http://127.0.0.1:5000/transcribe`
"""

IDEMPOTENCY_KEY = HeaderParameter(
    name=IDEMPOTENCY_HEADER,
    required=False,
    min_length=1,
    max_length=MAX_KEY_LENGTH,
    description="Makes a retried submit safe: the same key with the same request within 24 hours returns "
    "the job it created (`200`) instead of a new one; with a different request, `422`.",
    examples=[Example(value="interview-42-upload-1")],
)


def _submit_responses() -> dict[int, ResponseSpec]:
    return {
        200: ResponseSpec(
            data_container=JobOut,
            generate_examples=False,
            description="The job this `Idempotency-Key` already created (the same request within 24 hours)",
        ),
        **error_responses(
            400,
            408,
            413,
            415,
            422,
            503,
            s422="A value Cesar refuses: model outside the allowlist, refused URL or callback_url, speaker "
            "counts that contradict each other, an Idempotency-Key already used with a different request",
        ),
    }


_MULTIPART_EXAMPLE = {"file": "(binary audio)", "model": "tiny.en", "language": "en", "vad": "true"}
_JSON_EXAMPLE = {"url": "https://example.com/interview.mp3", "model": "tiny.en"}
_LIVE_EXAMPLE = {
    "url": "https://radio.example/live.m3u8",
    "live": True,
    "max_seconds": 3600,
    "language": "en",
}


def _multipart_schema() -> dict[str, Any]:
    schema = TranscribeForm.model_json_schema()
    schema["title"] = "TranscribeUpload"
    audio = {
        "type": "string",
        "format": "binary",
        "contentMediaType": "application/octet-stream",
        "description": "The audio or video file (wav, flac, mp3, m4a, ogg, webm, ...).",
    }
    fields = {name: _not_null(prop) for name, prop in schema["properties"].items()}
    schema["properties"] = {FILE_FIELD: audio, **fields}
    schema["required"] = [FILE_FIELD]
    return schema


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A form field is text or absent, never null: keep the non-null branch of ``anyOf``."""
    branches = [branch for branch in prop.get("anyOf", []) if branch.get("type") != "null"]
    if len(branches) != 1:
        return prop
    rest = {key: value for key, value in prop.items() if key not in ("anyOf", "default")}
    return {**branches[0], **rest}


def _json_body() -> OpenAPIMediaType:
    return OpenAPIMediaType(
        schema={"$ref": "#/components/schemas/UrlJobIn"},  # type: ignore[arg-type]
        examples={
            "url": Example(summary="Transcribe a URL", value=_JSON_EXAMPLE),
            "live": Example(summary="Transcribe a live stream while it plays", value=_LIVE_EXAMPLE),
        },
    )


# Both routes read their body themselves (streamed, capped, one set of error messages), so Litestar sees
# no body parameter to document: these operation classes describe it.
@dataclass
class TranscribeOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="An upload (multipart) or a URL to fetch (JSON).",
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=_multipart_schema(),  # type: ignore[arg-type]
                    examples={"upload": Example(summary="Upload a file", value=_MULTIPART_EXAMPLE)},
                ),
                "application/json": _json_body(),
            },
        )


@dataclass
class UrlTranscribeOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True, description="The URL to fetch.", content={"application/json": _json_body()}
        )


def _accepted(submitted: Submitted) -> Response[JobOut]:
    """202 with the new job; 200 with the job an Idempotency-Key already named."""
    record = submitted.record
    return Response(
        content=job_to_schema(record, queue_position=submitted.position),
        status_code=202 if submitted.created else 200,
        headers={"Location": f"/jobs/{record.id}"},
    )


def _checked_key(key: str | None) -> str | None:
    """The ``Idempotency-Key``, checked before any of the body is read (422 when unusable)."""
    return None if key is None else check_key(key.strip())


@post(
    "/transcribe",
    operation_id="createTranscription",
    tags=["Transcription"],
    summary="Transcribe an uploaded file or a URL",
    description=_DESCRIPTION,
    status_code=202,
    operation_class=TranscribeOperation,
    response_description="The job was queued; `Location` names it.",
    responses=_submit_responses(),
)
async def create_transcription(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    store: NamedDependency[JobStore],
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[JobOut]:
    key = _checked_key(idempotency_key)
    content_type, _params = request.content_type
    if content_type == "multipart/form-data":
        return await _submit_upload(request, settings, store, key)
    if _is_json(content_type):
        return await _submit_url(request, settings, store, key)
    raise UnsupportedMediaError(
        f"unsupported Content-Type {content_type or '(none)'!r}: send multipart/form-data with a "
        "`file` part, or application/json with a `url`"
    )


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


async def _submit_url(
    request: Request[Any, Any, Any], settings: Settings, store: JobStore, key: str | None
) -> Response[JobOut]:
    data = await read_json_body(request)
    job_in: UrlJobIn = validated(UrlJobIn, data, request.method, request.url.path)
    return _accepted(
        await anyio.to_thread.run_sync(
            lambda: submit_url_job(store, settings, job_in, caller_of(request), idempotency_key=key)
        )
    )


async def _submit_upload(
    request: Request[Any, Any, Any], settings: Settings, store: JobStore, key: str | None
) -> Response[JobOut]:
    async with receive_upload(request, max_bytes=settings.max_upload_bytes) as upload:
        form: TranscribeForm = validated(TranscribeForm, upload.fields, request.method, request.url.path)
        options = job_options(form, settings)
        callback_url = await anyio.to_thread.run_sync(check_callback, form.callback_url, settings)
        seconds = await anyio.to_thread.run_sync(probe_upload, upload.file, settings)
        submitted = await anyio.to_thread.run_sync(
            lambda: submit_upload_job(
                store,
                settings,
                options,
                upload.file,
                caller_of(request),
                filename=upload.filename,
                content_type=upload.content_type,
                audio_seconds=seconds,
                callback_url=callback_url,
                idempotency_key=key,
            )
        )
    return _accepted(submitted)


@post(
    "/transcribe/url",
    operation_id="createUrlTranscription",
    tags=["Transcription"],
    summary="Transcribe audio from a URL",
    description="The first API's path for URL jobs: the same as `POST /transcribe` with a JSON body. "
    "A worker downloads the audio (at most `CESAR_MAX_UPLOAD_MB`).",
    status_code=202,
    operation_class=UrlTranscribeOperation,
    response_description="The job was queued; `Location` names it.",
    responses=_submit_responses(),
)
async def create_url_transcription(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    store: NamedDependency[JobStore],
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[JobOut]:
    key = _checked_key(idempotency_key)
    content_type, _params = request.content_type
    if not _is_json(content_type):
        raise UnsupportedMediaError(
            f"unsupported Content-Type {content_type or '(none)'!r}: send application/json with a `url`"
        )
    return await _submit_url(request, settings, store, key)
