"""Following jobs: list, get, transcript, audio, cancel, delete, webhook redelivery."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import MediaType, Request, Response, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, Schema
from litestar.params import PathParameter, QueryParameter
from litestar.response import Stream

from cesar_api.access import SERVER_KEY, caller_of
from cesar_api.auth import OWNER_READ_BY_ROUTE
from cesar_api.exception_mapper import error_responses
from cesar_api.reads import run_read
from cesar_api.transcripts import completed_transcript, partial_transcript
from cesar_common.choices import TranscriptFormat
from cesar_common.db import job_reads
from cesar_common.db.records import AudioFormat, JobRecord, JobSource, JobStatus, PublicStatus
from cesar_common.db.store import JobStore
from cesar_common.errors import ConflictError, NotFoundError
from cesar_common.job_json import JobOut, job_json, job_to_schema
from cesar_common.transcription.audio import wav_header
from cesar_common.transcription.writers import FORMATS, render

__all__ = [
    "JOB_ID",
    "cancel_job",
    "delete_job",
    "get_audio",
    "get_job",
    "get_transcript",
    "list_jobs",
    "redeliver_webhook",
]

MAX_PAGE = 1000
JOB_ID = PathParameter(
    description="The job's id, as `POST /transcribe` returned it.",
    examples=[Example(value="3f0c9a52-8d1e-4c53-9a43-1b2f0f6c7d10")],
    max_length=64,
)


@get(
    "/jobs",
    operation_id="listJobs",
    tags=["Jobs"],
    summary="List jobs, newest first",
    description="The body is a JSON list of jobs (as in the first API). When there are more, the next page's "
    'URL comes in `Link: <...>; rel="next"` and its cursor in `X-Next-Cursor`.',
    sync_to_thread=True,
    response_headers=[
        ResponseHeader(
            name="Link",
            documentation_only=True,
            description='`<URL of the next page>; rel="next"`, only when there is a next page.',
        ),
        ResponseHeader(
            name="X-Next-Cursor",
            documentation_only=True,
            description="The next page's `cursor`, only when there is a next page.",
        ),
    ],
    responses=error_responses(400, 404, 422, 503, s404="`owner` names no key"),
)
def list_jobs(
    request: Request[Any, Any, Any],
    store: NamedDependency[JobStore],
    status: Annotated[
        PublicStatus | None,
        QueryParameter(description="Only jobs with this status.", examples=[Example(value="completed")]),
    ] = None,
    limit: Annotated[
        int, QueryParameter(ge=1, le=MAX_PAGE, description=f"Jobs per page (at most {MAX_PAGE}).")
    ] = 100,
    cursor: Annotated[
        str | None,
        QueryParameter(max_length=512, description="The `X-Next-Cursor` of the previous page."),
    ] = None,
    owner: Annotated[
        str | None,
        QueryParameter(
            max_length=100,
            description="Only the jobs of this key (its name, id or prefix; `admin` for the server's own "
            "`CESAR_API_KEY`): for admin keys. A user key lists its own jobs only, whatever it asks.",
        ),
    ] = None,
) -> Response[list[JobOut]]:
    caller = caller_of(request)
    listed = caller.visible_owner
    if listed is None and owner is not None:
        listed = "" if owner == SERVER_KEY.name else store.get_key(owner).id
    page = store.list_jobs(
        status=JobStatus(status) if status else None, limit=limit, cursor=cursor, owner=listed
    )
    positions = _queue_positions(store, page.jobs)
    jobs = [job_to_schema(job, queue_position=positions.get(job.id)) for job in page.jobs]
    headers: dict[str, str] = {}
    if page.next_cursor:
        query = {
            key: value
            for key, value in (("status", status), ("limit", str(limit)), ("owner", owner))
            if value
        }
        query["cursor"] = page.next_cursor
        next_url = str(request.url.with_replacements(query=urlencode(query)))
        headers = {"Link": f'<{next_url}>; rel="next"', "X-Next-Cursor": page.next_cursor}
    return Response(content=jobs, headers=headers)


def _queue_positions(store: JobStore, jobs: list[JobRecord]) -> dict[str, int]:
    """Queue positions of the queued jobs on a page with one query, not one per job.

    A page is a contiguous run of the newest-first order, and the queue is the same order reversed, so
    consecutive queued jobs on a page are consecutive in the queue: the first one's rank counts down.
    """
    queued = [job for job in jobs if job.status is JobStatus.QUEUED]
    if not queued:
        return {}
    first = store.queue_position(queued[0])
    if first is None:  # claimed meanwhile; the next poll shows it
        return {}
    return {job.id: max(first - offset, 1) for offset, job in enumerate(queued)}


@get(
    "/jobs/{job_id:str}",
    operation_id="getJob",
    tags=["Jobs"],
    summary="Get a job",
    opt={OWNER_READ_BY_ROUTE: True},
    description="The job's status, progress and, once completed, its text. `queue_position` counts from 1 "
    "while the job is queued.",
    responses={
        200: ResponseSpec(data_container=JobOut, generate_examples=False, description="The job."),
        **error_responses(400, 404, 503),
    },
)
async def get_job(job_id: Annotated[str, JOB_ID], request: Request[Any, Any, Any]) -> Response[bytes]:
    # The route clients poll, kept lean: the store straight from the app's state (resolving the dependency
    # costs a tenth of the request), the JSON encoded from the record (schemas.job_json), and on SQLite the
    # read on the driver's cursor (JobStore.job_view).
    store: JobStore = request.app.state.store
    view = await run_read(store, store.job_view, job_id)
    if not caller_of(request).sees(view.job.owner):  # another key's job is as unknown as none
        raise job_reads.not_found(job_id)
    return Response(job_json(view.job, queue_position=view.queue_position), media_type=MediaType.JSON)


@dataclass
class TranscriptOperation(Operation):
    """The transcript comes in one of several media types; document them all."""

    def __post_init__(self) -> None:
        if self.responses and "200" in self.responses:
            ok = self.responses["200"]
            ok.content = {  # type: ignore[union-attr]
                # the json transcript is an object; every other format is text
                fmt.media_type: OpenAPIMediaType(
                    schema=Schema(type="object" if fmt.name == "json" else "string")  # type: ignore[arg-type]
                )
                for fmt in FORMATS.values()
            }


_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _download_name(record: JobRecord, extension: str) -> str:
    stem = (record.filename or "").rsplit(".", 1)[0] if record.filename else ""
    stem = _UNSAFE_FILENAME.sub("_", stem).strip("._")[:100] or f"transcript-{record.id}"
    return f"{stem}{extension}"


@get(
    "/jobs/{job_id:str}/transcript",
    operation_id="getTranscript",
    tags=["Jobs"],
    summary="Download a transcript",
    description="The completed job's transcript as `txt` (default), `srt`, `vtt`, `json` (segments, and "
    "words when asked for), `tsv` or `rttm` (speaker turns: only for a job with `diarize`), as a download "
    "(`Content-Disposition`): its latest revision (`PATCH /jobs/{id}/transcript` corrects it), or the one "
    "`revision` names; `X-Transcript-Revision` says which. `409` until it is completed, and for `rttm` of "
    "a job without `diarize`; `404` for a revision the job does not have.",
    sync_to_thread=True,
    media_type="text/plain; charset=utf-8",
    operation_class=TranscriptOperation,
    response_description="The transcript in the asked format.",
    response_headers=[
        ResponseHeader(
            name="X-Transcript-Revision",
            documentation_only=True,
            description="The revision served (once the job is completed).",
        )
    ],
    responses=error_responses(
        400,
        404,
        409,
        503,
        s409="The job is not completed (yet): no transcript; or `rttm` of a job transcribed without diarize",
    ),
)
def get_transcript(
    job_id: Annotated[str, JOB_ID],
    store: NamedDependency[JobStore],
    # named as the query parameter: validation errors name the parameter by this name
    format: Annotated[
        TranscriptFormat,
        QueryParameter(description="Output format.", examples=[Example(value="srt")]),
    ] = "txt",
    partial: Annotated[
        bool,
        QueryParameter(description="While the job is processing, what is decoded so far (else `409`)."),
    ] = False,
    revision: Annotated[
        str | None,
        QueryParameter(
            pattern=r"^(original|[0-9]{1,9})$",
            description="An earlier revision of the transcript: `original` (or 0) is the machine's, before "
            "any edit; `GET /jobs/{id}/revisions` lists them. Left out: the latest.",
            examples=[Example(value="original")],
        ),
    ] = None,
) -> Response[str]:
    fmt = format
    record = store.get_job(job_id, with_segments=True)
    if fmt == "rttm" and not record.options.diarize:  # an empty file would read as "nobody spoke"
        raise ConflictError(
            f"job {record.id} was transcribed without diarize: it has no speaker turns (rttm); submit "
            "it again with diarize=true",
            extra={"diarize": False},
        )
    live = store.live_state(record.id) if record.source is JobSource.LIVE else None
    gaps = () if live is None else live.gaps  # where a live stream URL dropped
    headers: dict[str, str] = {}
    if partial and revision is None and record.status is JobStatus.PROCESSING:
        result = partial_transcript(store.live_segments(record.id), gaps)
    elif record.status is JobStatus.COMPLETED:
        record = _at_revision(store, record, revision)
        result = completed_transcript(record, gaps)
        headers["X-Transcript-Revision"] = str(record.revision)
    else:
        status = record.status.value
        will = "it has no transcript" if record.is_final else "its transcript exists once it is completed"
        if record.status is JobStatus.PROCESSING:
            will += " (partial=true gives what is decoded so far)"
        raise ConflictError(f"job {record.id} is {status}: {will}", extra={"status": status})
    output = FORMATS[fmt]
    headers["Content-Disposition"] = f'attachment; filename="{_download_name(record, output.extension)}"'
    return Response(content=render(result, fmt), media_type=output.media_type, headers=headers)


def _at_revision(store: JobStore, record: JobRecord, revision: str | None) -> JobRecord:
    """A completed job read ``with_segments``, with the transcript of ``revision`` (None: its latest)."""
    number = record.revision if revision is None else 0 if revision == "original" else int(revision)
    if number == record.revision:
        return record
    past = store.transcript_revision(record.id, number)
    return replace(
        record, result_text=past.text, segments=past.segments, speakers=past.speakers, revision=number
    )


@dataclass
class AudioOperation(Operation):
    """The audio is a WAV file or the bytes a client sent: document both as binary."""

    def __post_init__(self) -> None:
        if self.responses and "200" in self.responses:
            binary = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))
            self.responses["200"].content = {  # type: ignore[union-attr]
                "audio/wav": binary,
                "application/octet-stream": binary,
            }


#: an upload's own media type is given back only when it names audio or video: the client chose it
_MEDIA_TYPE = re.compile(r"(audio|video)/[A-Za-z0-9.+-]{1,100}")


@get(
    "/jobs/{job_id:str}/audio",
    operation_id="getJobAudio",
    tags=["Jobs"],
    summary="Download a job's audio",
    description="The audio the job was given, while the server stores it: until the job ends, and after "
    "that only with `CESAR_KEEP_AUDIO`. A live session sent as `pcm_s16le` comes as a WAV file (16-bit mono "
    "at the session's sample rate), with the audio received so far while it runs; any other job's audio "
    "comes as it was received. No range requests. `404` for an unknown job and for audio not stored (a URL "
    "job's, a finished job's).",
    sync_to_thread=True,
    operation_class=AudioOperation,
    response_description="The audio.",
    responses=error_responses(400, 404, 503, s404="No job with this id, or its audio is not stored"),
)
def get_audio(job_id: Annotated[str, JOB_ID], store: NamedDependency[JobStore]) -> Stream:
    record = store.get_job(job_id)
    live = store.live_state(job_id) if record.source is JobSource.LIVE else None
    size, chunks = store.audio_snapshot(job_id)
    if size == 0:
        raise NotFoundError(_no_audio(record), extra={"job_id": record.id})
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    if live is not None and live.audio_format is AudioFormat.PCM_S16LE and live.sample_rate:
        samples = size - size % 2  # a client may have sent half a sample last: a WAV holds whole ones
        header = wav_header(samples, rate=live.sample_rate)
        headers["Content-Length"] = str(len(header) + samples)
        headers["Content-Disposition"] = f'attachment; filename="live-{record.id}.wav"'
        return Stream(_wav_body(header, chunks, samples), media_type="audio/wav", headers=headers)
    media_type = record.content_type or ""
    name = _UNSAFE_FILENAME.sub("_", record.filename or "").strip("._")[:100] or f"audio-{record.id}"
    headers["Content-Length"] = str(size)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    if not _MEDIA_TYPE.fullmatch(media_type):
        media_type = "application/octet-stream"
    return Stream(chunks, media_type=media_type, headers=headers)


def _no_audio(record: JobRecord) -> str:
    if record.source is JobSource.URL:
        return f"job {record.id} is a URL job: its worker fetches the audio, the server does not store it"
    if record.is_final:
        return (
            f"the audio of job {record.id} is no longer stored: a finished job's audio is deleted unless "
            "the server keeps it (CESAR_KEEP_AUDIO)"
        )
    return f"no audio of job {record.id} has arrived yet"


def _wav_body(header: bytes, chunks: Iterator[bytes], samples: int) -> Iterator[bytes]:
    yield header
    left = samples
    for chunk in chunks:
        piece = chunk[:left]
        left -= len(piece)
        if piece:
            yield piece


@post(
    "/jobs/{job_id:str}/cancel",
    operation_id="cancelJob",
    tags=["Jobs"],
    summary="Cancel a job",
    description="A queued job ends `cancelled` at once; a processing one stops between segments "
    "(`cancel_requested` is true until it does). `409` for a job that already ended.",
    status_code=202,
    sync_to_thread=True,
    request_max_body_size=64 * 1024,
    response_description="Cancelled, or asked to stop.",
    responses=error_responses(400, 404, 409, 503, s409="The job already ended"),
)
def cancel_job(job_id: Annotated[str, JOB_ID], store: NamedDependency[JobStore]) -> JobOut:
    record = store.request_cancel(job_id)
    position = store.queue_position(record) if record.status is JobStatus.QUEUED else None
    return job_to_schema(record, queue_position=position)


@delete(
    "/jobs/{job_id:str}",
    operation_id="deleteJob",
    tags=["Jobs"],
    summary="Delete a finished job",
    description="Removes a `completed`, `error` or `cancelled` job with its audio and results. "
    "`409` while it is queued or processing: cancel it first.",
    status_code=204,
    sync_to_thread=True,
    responses=error_responses(400, 404, 409, 503, s409="The job is queued or processing"),
)
def delete_job(job_id: Annotated[str, JOB_ID], store: NamedDependency[JobStore]) -> None:
    store.delete_job(job_id)


@post(
    "/jobs/{job_id:str}/webhook/redeliver",
    operation_id="redeliverWebhook",
    tags=["Jobs"],
    summary="Send a job's webhook again",
    description="Queues one more delivery of a finished job's JSON to its `callback_url`, with a new "
    "`Cesar-Delivery-Id`; a delivery still waiting for its next try is sent now instead. The job's "
    "`webhook` shows how it goes. `409` when the job has no `callback_url` or has not ended.",
    status_code=202,
    sync_to_thread=True,
    request_max_body_size=64 * 1024,
    response_description="The delivery is queued.",
    responses=error_responses(400, 404, 409, 503, s409="The job has no callback_url, or has not ended yet"),
)
def redeliver_webhook(job_id: Annotated[str, JOB_ID], store: NamedDependency[JobStore]) -> JobOut:
    return job_to_schema(store.redeliver_webhook(job_id))
