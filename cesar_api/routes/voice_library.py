"""The voice library: people whose voices diarized jobs name (``/speakers``).

A person's voice prints come from audio samples (a worker reads each as a job of source ``sample``: the
print is ``pending`` until then) or from a finished diarized job's speaker. Voice prints are biometric data:
deleting a person deletes every print of theirs, and the jobs that read their samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from litestar import Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIMediaType, Operation, RequestBody
from litestar.params import PathParameter
from pydantic import ConfigDict, Field

from cesar_api.access import caller_of
from cesar_api.exception_mapper import error_responses
from cesar_api.submit import probe_upload, validated
from cesar_api.uploads import FILE_FIELD, read_json_body, receive_upload
from cesar_common.db.records import JobSource, NewJob, SpeakerRecord
from cesar_common.db.store import JobStore
from cesar_common.db.voice_library import MAX_NAME_LENGTH
from cesar_common.errors import InvalidInputError, UnsupportedMediaError
from cesar_common.job_json import Schema
from cesar_common.job_options import TranscribeOptions
from cesar_common.settings import Settings

__all__ = [
    "add_voice_sample",
    "create_speaker",
    "delete_speaker",
    "delete_voice_sample",
    "get_speaker",
    "list_speakers",
    "update_speaker",
]

SPEAKER_ID = PathParameter(description="The person's id, as `POST /speakers` returned it.", max_length=64)
SAMPLE_ID = PathParameter(description="The voice sample's id (one of the person's `samples`).", max_length=64)


class VoiceSampleOut(Schema):
    """One voice print of a person, and where it came from."""

    id: str
    source: Literal["sample", "job"] = Field(
        description="`sample`: an audio sample sent for this person; `job`: a speaker of a diarized job."
    )
    status: Literal["pending", "ready", "error"] = Field(
        description="`pending` until a worker has read the sample; `ready` once it names voices; `error` "
        "when it could not be read (`error` says why)."
    )
    seconds: float | None = Field(description="Seconds of speech the print was taken from.")
    job_id: str | None = Field(
        description="The diarized job the voice came from, or the job that read the sample."
    )
    label: str | None = Field(description="The speaker's label in that diarized job (`SPEAKER_01`).")
    filename: str | None = Field(description="The sample's file name.")
    error: str | None = Field(description="Why the sample could not be read.")
    created_at: datetime


class PersonOut(Schema):
    """A person of the voice library."""

    id: str
    name: str = Field(examples=["Diane"])
    created_at: datetime
    updated_at: datetime
    samples: list[VoiceSampleOut] = Field(description="The person's voice prints, oldest first.")


class PeopleOut(Schema):
    speakers: list[PersonOut] = Field(description="Everyone in the voice library, by name.")


class JobVoiceIn(Schema):
    """A speaker of a finished diarized job."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    job_id: str = Field(max_length=64, description="A completed job transcribed with `diarize`.")
    label: str = Field(
        max_length=64,
        description="The speaker's label in it (`SPEAKER_01`: its `speakers[].label`).",
        examples=["SPEAKER_01"],
    )


class PersonIn(Schema):
    """A new person, with the voice of a diarized job's speaker (JSON) or with an audio sample
    (multipart: `name` and `file`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, examples=["Diane"])
    job_id: str | None = Field(default=None, max_length=64, description="A completed diarized job.")
    label: str | None = Field(default=None, max_length=64, description="Its speaker's label.")


class PersonPatch(Schema):
    """Changes to a person: a new name, voices of diarized jobs to add, voice samples to remove."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    add: list[JobVoiceIn] = Field(default_factory=list, max_length=32)
    remove: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=256)


def person_out(record: SpeakerRecord) -> PersonOut:
    return PersonOut.model_validate(asdict(record))


def _multipart_schema(*, named: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        FILE_FIELD: {
            "type": "string",
            "format": "binary",
            "description": "A few seconds to a few minutes of the person speaking alone (any format FFmpeg "
            "reads; at least 3 s of speech, at most 10 minutes).",
        }
    }
    if named:
        properties["name"] = {"type": "string", "maxLength": MAX_NAME_LENGTH, "examples": ["Diane"]}
    return {
        "type": "object",
        "properties": properties,
        "required": [FILE_FIELD, *(["name"] if named else [])],
    }


def _body(*, named: bool) -> RequestBody:
    json_ref = "#/components/schemas/PersonIn" if named else "#/components/schemas/JobVoiceIn"
    return RequestBody(
        required=True,
        description="An audio sample (multipart) or a diarized job's speaker (JSON).",
        content={
            "multipart/form-data": OpenAPIMediaType(schema=_multipart_schema(named=named)),  # type: ignore[arg-type]
            "application/json": OpenAPIMediaType(
                schema={"$ref": json_ref},  # type: ignore[arg-type]
                examples={
                    "job": Example(
                        summary="A diarized job's speaker",
                        value={"name": "Diane", "job_id": "3f0c9a52-...", "label": "SPEAKER_01"}
                        if named
                        else {"job_id": "3f0c9a52-...", "label": "SPEAKER_01"},
                    )
                },
            ),
        },
    )


# The routes read their body themselves (an upload is streamed and capped), so Litestar sees no body
# parameter to document: these operation classes describe it.
@dataclass
class CreatePersonOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body(named=True)


@dataclass
class AddSampleOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body(named=False)


_PERSON = {200: ResponseSpec(data_container=PersonOut, generate_examples=False, description="The person.")}


@get(
    "/speakers",
    operation_id="listSpeakers",
    tags=["Voice library"],
    summary="List the voice library",
    description="Everyone the key's diarized jobs may name (the people it enrolled; an admin key: "
    "everyone's), with their voice prints.",
    sync_to_thread=True,
    responses=error_responses(503),
)
def list_speakers(request: Request[Any, Any, Any], store: NamedDependency[JobStore]) -> PeopleOut:
    owner = caller_of(request).visible_owner
    return PeopleOut(speakers=[person_out(record) for record in store.list_speakers(owner)])


@post(
    "/speakers",
    operation_id="createSpeaker",
    tags=["Voice library"],
    summary="Add a person to the voice library",
    description="A name with an audio sample of the person speaking alone (multipart; a worker reads it: "
    "its print is `pending`, then `ready` or `error`), or with a finished diarized job and one of its "
    "speakers' labels (JSON; ready at once). Diarized jobs then name this voice. The sample's audio is "
    "not kept (unless the server keeps all audio, `CESAR_KEEP_AUDIO`). `409` when the name is taken.",
    status_code=201,
    operation_class=CreatePersonOperation,
    responses={**error_responses(400, 404, 409, 413, 415, 422, 503, s409="A person has this name already")},
)
async def create_speaker(
    request: Request[Any, Any, Any], settings: NamedDependency[Settings], store: NamedDependency[JobStore]
) -> Response[PersonOut]:
    content_type, _params = request.content_type
    if content_type == "multipart/form-data":
        record = await _sample(request, settings, store, None)
    elif content_type == "application/json":
        body: PersonIn = validated(PersonIn, await read_json_body(request), request.method, request.url.path)
        if (body.job_id is None) != (body.label is None):
            raise InvalidInputError("a diarized job's voice takes both job_id and label")
        record = await anyio.to_thread.run_sync(
            lambda: store.create_speaker(
                body.name, owner=caller_of(request).owner, job_id=body.job_id, label=body.label
            )
        )
    else:
        raise _unsupported(content_type, "`name` and `file`", "`name`, `job_id` and `label`")
    return Response(person_out(record), status_code=201, headers={"Location": f"/speakers/{record.id}"})


def _unsupported(content_type: str, form: str, json: str) -> UnsupportedMediaError:
    return UnsupportedMediaError(
        f"unsupported Content-Type {content_type or '(none)'!r}: send multipart/form-data with {form}, or "
        f"application/json with {json}"
    )


async def _sample(
    request: Request[Any, Any, Any], settings: Settings, store: JobStore, speaker_id: str | None
) -> SpeakerRecord:
    """An audio sample for ``speaker_id`` (or for a new person the form names), queued for a worker."""
    async with receive_upload(request, max_bytes=settings.max_upload_bytes) as upload:
        name = upload.fields.get("name")
        if speaker_id is None and not name:
            raise InvalidInputError("a new person needs a `name` field", extra={"field": "name"})
        seconds = await anyio.to_thread.run_sync(probe_upload, upload.file, settings)
        caller = caller_of(request)
        new = NewJob(
            source=JobSource.SAMPLE,
            options=TranscribeOptions(model=settings.model),
            filename=upload.filename,
            content_type=upload.content_type,
            max_attempts=settings.max_attempts,
            owner=caller.owner,
            limits=caller.key,
            audio_seconds=seconds,
        )
        record, _job = await anyio.to_thread.run_sync(
            lambda: store.add_voice_sample(
                speaker_id, name, new, upload.file, max_bytes=settings.max_upload_bytes
            )
        )
    return record


@get(
    "/speakers/{speaker_id:str}",
    operation_id="getSpeaker",
    tags=["Voice library"],
    summary="Get a person",
    description="The person's name and voice prints (a sample's `pending` until a worker has read it).",
    sync_to_thread=True,
    responses={**_PERSON, **error_responses(400, 404, 503)},
)
def get_speaker(speaker_id: Annotated[str, SPEAKER_ID], store: NamedDependency[JobStore]) -> PersonOut:
    return person_out(store.get_speaker(speaker_id))


@dataclass
class UpdatePersonOperation(Operation):
    def __post_init__(self) -> None:
        schema: Any = {"$ref": "#/components/schemas/PersonPatch"}
        self.request_body = RequestBody(
            required=True, content={"application/json": OpenAPIMediaType(schema=schema)}
        )


@patch(
    "/speakers/{speaker_id:str}",
    operation_id="updateSpeaker",
    tags=["Voice library"],
    summary="Rename a person, add or remove voices",
    description="`name` renames (jobs completed later use it; finished transcripts keep theirs); `add` "
    "takes diarized jobs' speakers as more voice prints; `remove` deletes voice prints by id. All or "
    "nothing.",
    operation_class=UpdatePersonOperation,
    responses={**_PERSON, **error_responses(400, 404, 409, 422, 503, s409="A person has this name already")},
)
async def update_speaker(
    speaker_id: Annotated[str, SPEAKER_ID], request: Request[Any, Any, Any], store: NamedDependency[JobStore]
) -> PersonOut:
    data: PersonPatch = validated(
        PersonPatch, await read_json_body(request), request.method, request.url.path
    )
    record = await anyio.to_thread.run_sync(
        lambda: store.update_speaker(
            speaker_id,
            name=data.name,
            add=[(voice.job_id, voice.label) for voice in data.add],
            remove=data.remove,
        )
    )
    return person_out(record)


@delete(
    "/speakers/{speaker_id:str}",
    operation_id="deleteSpeaker",
    tags=["Voice library"],
    summary="Delete a person",
    description="The person and every voice print of theirs (and the jobs that read their samples). "
    "Transcripts that named them keep the name.",
    status_code=204,
    sync_to_thread=True,
    responses=error_responses(400, 404, 503),
)
def delete_speaker(speaker_id: Annotated[str, SPEAKER_ID], store: NamedDependency[JobStore]) -> None:
    store.delete_speaker(speaker_id)


@post(
    "/speakers/{speaker_id:str}/samples",
    operation_id="addVoiceSample",
    tags=["Voice library"],
    summary="Add a voice print to a person",
    description="An audio sample (multipart `file`; a worker reads it) or a diarized job's speaker (JSON "
    "`job_id` and `label`).",
    status_code=201,
    operation_class=AddSampleOperation,
    responses=error_responses(400, 404, 413, 415, 422, 503),
)
async def add_voice_sample(
    speaker_id: Annotated[str, SPEAKER_ID],
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    store: NamedDependency[JobStore],
) -> Response[PersonOut]:
    content_type, _params = request.content_type
    if content_type == "multipart/form-data":
        record = await _sample(request, settings, store, speaker_id)
    elif content_type == "application/json":
        voice: JobVoiceIn = validated(
            JobVoiceIn, await read_json_body(request), request.method, request.url.path
        )
        record = await anyio.to_thread.run_sync(
            lambda: store.update_speaker(speaker_id, add=[(voice.job_id, voice.label)])
        )
    else:
        raise _unsupported(content_type, "`file`", "`job_id` and `label`")
    return Response(person_out(record), status_code=201)


@delete(
    "/speakers/{speaker_id:str}/samples/{sample_id:str}",
    operation_id="deleteVoiceSample",
    tags=["Voice library"],
    summary="Delete one voice print of a person",
    description="The print goes, with the job that read it when it came from a sample; the person stays "
    "(with no print left, they name nobody).",
    status_code=200,
    sync_to_thread=True,
    responses={**_PERSON, **error_responses(400, 404, 503)},
)
def delete_voice_sample(
    speaker_id: Annotated[str, SPEAKER_ID],
    sample_id: Annotated[str, SAMPLE_ID],
    store: NamedDependency[JobStore],
) -> PersonOut:
    return person_out(store.update_speaker(speaker_id, remove=[sample_id]))
