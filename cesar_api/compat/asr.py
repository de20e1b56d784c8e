"""whisper-asr-webservice's API: ``POST /asr`` and ``POST /detect-language``, for the subtitle tools that
speak it (Bazarr's Whisper provider, Subgen...).

As that service (``ahmetoner/whisper-asr-webservice`` 1.9): the audio comes as the multipart part
``audio_file``; options in the query string; the answer to ``/asr`` is the transcript in ``output`` (``txt``,
``vtt``, ``srt``, ``tsv`` or ``json``) as ``text/plain`` whatever the format, with ``Asr-Engine`` and a
``Content-Disposition`` naming ``<file>.<output>``. ``encode=false`` means the part is raw 16 kHz mono
16-bit little-endian PCM (what Bazarr sends, decoded by its own ffmpeg). Unlike that service, each request
is an ordinary queued job (``X-Cesar-Job-Id``), bad input is a 4xx (``{"detail": ...}``, FastAPI's shape)
rather than a 500, and voice activity detection stays on unless ``vad_filter=false`` is sent.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Annotated, Any
from urllib.parse import quote

import anyio.to_thread
from litestar import MediaType, Request, Response, Router, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from litestar.types import Guard

from cesar_api.access import caller_of
from cesar_api.compat.job_wait import ClientGone, queue_upload, wait_for_end
from cesar_api.compat.openapi_specs import AsrOperation, AsrTranscribeOperation, asr_errors
from cesar_api.exception_mapper import problem_of
from cesar_api.schemas import TranscribeForm
from cesar_api.submit import job_options, validated
from cesar_api.transcripts import completed_transcript
from cesar_api.uploads import receive_upload
from cesar_common.choices import WHISPER_LANGUAGE_NAMES, Task, TranscriptFormat
from cesar_common.db.records import JobRecord, JobStatus
from cesar_common.errors import ClientError
from cesar_common.job_options import DECODING_NAMES, MAX_SPEAKERS
from cesar_common.settings import Settings
from cesar_common.transcription.audio import SAMPLE_RATE, head_as_wav, wav_header
from cesar_common.transcription.result import TranscriptionResult
from cesar_common.transcription.writers import render

__all__ = ["asr_router"]

TAG = "whisper-asr-webservice-compatible"
AUDIO_FIELD = "audio_file"
ENGINE = "faster_whisper"
#: what /detect-language listens to, as whisper-asr-webservice does (Whisper decides on one window)
DETECT_SECONDS = 30.0
JOB_HEADER = "X-Cesar-Job-Id"

_TASK = QueryParameter(description="`transcribe` or `translate` (into English).")
_LANGUAGE = QueryParameter(description="The spoken language's code (e.g. `en`); none: detected.")
_PROMPT = QueryParameter(max_length=4096, description="Text to prime the decoder with.")
_VAD = QueryParameter(description="`false` turns voice activity detection off (default: on).")
_WORDS = QueryParameter(description="`true`: word times (in `json`).")
_OUTPUT = QueryParameter(
    description="`txt`, `vtt`, `srt`, `tsv`, `json` or `rttm` (speaker turns, with `diarize`)."
)
_DIARIZE = QueryParameter(description="`true`: label who spoke when (`speaker` on segments and words).")
_MIN_SPEAKERS = QueryParameter(
    ge=1, le=MAX_SPEAKERS, description="With `diarize`: at least this many speakers."
)
_MAX_SPEAKERS = QueryParameter(
    ge=1, le=MAX_SPEAKERS, description="With `diarize`: at most this many speakers."
)
_DETERMINISTIC = frozenset({"decode_failed", "audio_too_long", "unknown_language", "invalid_input"})
_ENCODE = QueryParameter(
    name="encode",
    description="`true`: any audio or video file (decoded by Cesar). `false`: raw 16 kHz mono 16-bit "
    "little-endian PCM, no header.",
)


@asynccontextmanager
async def _received(
    request: Request[Any, Any, Any], settings: Settings, encode: bool, *, head: bool
) -> AsyncIterator[tuple[IO[bytes], str]]:
    """The uploaded audio as a file a worker can decode, and the client's file name (both gone on
    leaving). ``head``: only the first :data:`DETECT_SECONDS` of it."""
    content_type, _params = request.content_type
    if content_type != "multipart/form-data":
        raise ClientError(f"send multipart/form-data with the audio in an `{AUDIO_FIELD}` part")
    async with receive_upload(request, max_bytes=settings.max_upload_bytes, file_field=AUDIO_FIELD) as upload:
        name = upload.filename or AUDIO_FIELD
        if encode and not head:
            yield upload.file, name
            return
        if encode:
            audio: IO[bytes] = io.BytesIO(
                await anyio.to_thread.run_sync(head_as_wav, upload.file, DETECT_SECONDS)
            )
        else:
            audio = await anyio.to_thread.run_sync(_pcm_as_wav, upload.file, upload.size, head)
        with audio:
            yield audio, name


def _pcm_as_wav(file: IO[bytes], size: int, head: bool) -> IO[bytes]:
    """Raw 16 kHz mono s16le PCM (``encode=false``) behind a WAV header, so it is a file like any other."""
    if size % 2:
        raise ClientError("encode=false takes raw 16-bit PCM: the part has an odd number of bytes")
    if size == 0:
        raise ClientError(f"the `{AUDIO_FIELD}` part is empty")
    length = min(size, int(DETECT_SECONDS * SAMPLE_RATE) * 2) if head else size
    wav = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    wav.write(wav_header(length))
    file.seek(0)
    left = length
    while left and (chunk := file.read(min(left, 1024 * 1024))):
        wav.write(chunk)
        left -= len(chunk)
    wav.seek(0)
    return wav


async def _run(
    request: Request[Any, Any, Any], settings: Settings, encode: bool, form: dict[str, str], *, head: bool
) -> tuple[JobRecord, str]:
    """Queue the uploaded audio as a job with the options in ``form``; its completed record and the
    client's file name once it ends (an :class:`_Answer` when it ended otherwise)."""
    fields = validated(TranscribeForm, form, request.method, request.url.path, source="query")
    options = job_options(fields, settings)
    async with _received(request, settings, encode, head=head) as (audio, name):
        job = await queue_upload(
            request.app.state.store,
            settings,
            options,
            audio,
            caller_of(request),
            filename=name,
            content_type=None,
        )
    record = await wait_for_end(request, job)
    if record.status is not JobStatus.COMPLETED:
        status = 400 if record.status is JobStatus.CANCELLED or _client_fault(record) else 500
        body = {"detail": record.error_message or f"the transcription ended {record.status.value}"}
        raise _Answer(Response(body, status_code=status, headers={JOB_HEADER: record.id}))
    return record, name


def _client_fault(record: JobRecord) -> bool:
    return (record.error_code or "") in {
        "decode_failed",
        "audio_too_long",
        "unknown_language",
        "invalid_input",
    }


class _Answer(Exception):
    """A finished answer to send as it is (a job that ended without a transcript)."""

    def __init__(self, response: Response[Any]) -> None:
        super().__init__("answer")
        self.response = response


def _bool(value: str | None, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    answer = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
              "off": False}.get(value.strip().lower())  # fmt: skip
    if answer is None:
        raise ClientError(f"query parameter {name} must be true or false, not {value!r}")
    return answer


def asr_json(result: TranscriptionResult) -> dict[str, Any]:
    """whisper-asr-webservice's ``output=json`` with its faster_whisper engine: the segments as
    faster-whisper's (texts with their leading space), their texts joined, and the language."""
    segments: list[dict[str, Any]] = []
    for segment in result.segments:
        decoded = segment.decoded
        segments.append(
            {
                "id": segment.id + 1,  # faster-whisper counts segments from 1
                "seek": decoded.seek if decoded else 0,
                "start": segment.start,
                "end": segment.end,
                "text": f" {segment.text}",
                "tokens": list(decoded.tokens or ()) if decoded else [],
                "avg_logprob": decoded.avg_logprob if decoded else 0.0,
                "compression_ratio": decoded.compression_ratio if decoded else 0.0,
                "no_speech_prob": decoded.no_speech_prob if decoded else 0.0,
                "words": None
                if segment.words is None
                else [
                    {"start": w.start, "end": w.end, "word": f" {w.word}", "probability": w.probability}
                    for w in segment.words
                ],
                "temperature": decoded.temperature if decoded else 0.0,
            }
        )
        if segment.speaker is not None:  # as whisper-asr-webservice's whisperx engine labels them
            segments[-1]["speaker"] = segment.speaker
            words: list[dict[str, Any]] = segments[-1]["words"] or []
            for word, data in zip(segment.words or (), words, strict=True):
                data["speaker"] = word.speaker
    text = "".join(str(segment["text"]) for segment in segments)
    return {"language": result.language, "segments": segments, "text": text}


_ERRORS = asr_errors(
    {
        400: "A bad query parameter or part, or a transcription that failed on its audio",
        401: "Missing or wrong API key (only when the server sets CESAR_API_KEY)",
        413: "The file is larger than CESAR_MAX_UPLOAD_MB",
        415: "Not an audio or video file FFmpeg can read",
        422: "A value Cesar refuses, such as an unknown language or min_speakers above max_speakers",
        500: "The job's worker was lost too often",
        503: "The job database cannot be reached, or the server sheds load (with Retry-After)",
    }
)


@post(
    "/asr",
    operation_id="asrTranscribe",
    operation_class=AsrTranscribeOperation,
    summary="Transcribe (whisper-asr-webservice-compatible)",
    description="As whisper-asr-webservice's `POST /asr`: the audio in the multipart part `audio_file`, "
    "options in the query. Answers the transcript in `output` as `text/plain` (whatever the format) with "
    "`Asr-Engine` and `Content-Disposition` headers, once the job it makes has ended. Voice activity "
    "detection stays on unless `vad_filter=false`; `diarize=true` labels the speakers (with "
    "`min_speakers`, `max_speakers`). Cesar's decoding options (`hotwords`, `temperature`, ...) are query "
    "parameters of their own names.",
    status_code=200,
    media_type=MediaType.TEXT,
    responses={
        200: ResponseSpec(
            data_container=str,
            media_type="text/plain",
            generate_examples=False,
            description="The transcript.",
        ),
        **_ERRORS,
    },
)
async def asr(
    request: Request[Any, Any, Any],
    encode: Annotated[str | None, _ENCODE] = None,
    task: Annotated[Task, _TASK] = "transcribe",
    language: Annotated[str | None, _LANGUAGE] = None,
    initial_prompt: Annotated[str | None, _PROMPT] = None,
    vad_filter: Annotated[str | None, _VAD] = None,
    word_timestamps: Annotated[str | None, _WORDS] = None,
    output: Annotated[TranscriptFormat, _OUTPUT] = "txt",
    diarize: Annotated[str | None, _DIARIZE] = None,
    min_speakers: Annotated[int | None, _MIN_SPEAKERS] = None,
    max_speakers: Annotated[int | None, _MAX_SPEAKERS] = None,
) -> Response[Any]:
    settings: Settings = request.app.state.settings
    if language is not None and language not in WHISPER_LANGUAGE_NAMES:
        raise ClientError(f"unknown language {language!r}: use a code such as en, de, fr")
    form = {
        "task": task,
        "vad": str(_bool(vad_filter, "vad_filter", True)).lower(),
        "word_timestamps": str(_bool(word_timestamps, "word_timestamps", False)).lower(),
    }
    if language:
        form["language"] = language
    if initial_prompt:
        form["initial_prompt"] = initial_prompt
    for name in DECODING_NAMES:  # not declared above: the one check of every door reads them as text
        if value := request.query_params.get(name):
            form[name] = value
    diarized = _bool(diarize, "diarize", False)
    if output == "rttm" and not diarized:  # refused before the job runs, not answered with an empty file
        raise ClientError("output=rttm is the speaker turns: it needs diarize=true")
    if diarized:
        form["diarize"] = "true"
        if min_speakers is not None:
            form["min_speakers"] = str(min_speakers)
        if max_speakers is not None:
            form["max_speakers"] = str(max_speakers)
    try:
        record, name = await _run(request, settings, _bool(encode, "encode", True), form, head=False)
    except _Answer as answer:
        return answer.response
    result = completed_transcript(record)
    body = render(result, output) if output != "json" else _json_text(asr_json(result))
    headers = {
        "Asr-Engine": ENGINE,
        "Content-Disposition": f'attachment; filename="{quote(name)}.{output}"',
        JOB_HEADER: record.id,
    }
    return Response(body, media_type=MediaType.TEXT, headers=headers)


def _json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


@post(
    "/detect-language",
    operation_id="asrDetectLanguage",
    operation_class=AsrOperation,
    summary="Detect the spoken language (whisper-asr-webservice-compatible)",
    description="As whisper-asr-webservice's `POST /detect-language`: `audio_file` part, `encode` query "
    'parameter; answers `{"detected_language": "english", "language_code": "en", "confidence": '
    "0.98}` from the first 30 s, transcribed as a job. An English-only model (`tiny.en`) says English.",
    status_code=200,
    responses={
        200: ResponseSpec(
            data_container=dict[str, Any], generate_examples=False, description="The language."
        ),
        **_ERRORS,
    },
)
async def detect_language(
    request: Request[Any, Any, Any], encode: Annotated[str | None, _ENCODE] = None
) -> Response[Any]:
    settings: Settings = request.app.state.settings
    try:
        record, _name = await _run(request, settings, _bool(encode, "encode", True), {}, head=True)
    except _Answer as answer:
        return answer.response
    code = record.detected_language or "en"
    body = {
        "detected_language": WHISPER_LANGUAGE_NAMES.get(code, code),
        "language_code": code,
        "confidence": record.language_probability if record.language_probability is not None else 0.0,
    }
    return Response(body, headers={JOB_HEADER: record.id})


def asr_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Errors in FastAPI's shape, ``{"detail": ...}``, as whisper-asr-webservice answers them."""
    if isinstance(exc, ClientGone):
        return Response({"detail": "client closed request"}, status_code=499)
    problem = problem_of(request, exc)
    return Response({"detail": problem.detail}, status_code=problem.status, headers=problem.headers or None)


def asr_router(guards: list[Guard]) -> Router:
    return Router(
        path="/",
        route_handlers=[asr, detect_language],
        guards=guards,
        tags=[TAG],
        security=[{}, {"BearerAuth": []}],
        exception_handlers={Exception: asr_error_response},
    )
