"""Correcting a completed job's transcript: ``PATCH /jobs/{id}/transcript`` and ``GET /jobs/{id}/revisions``.

Every edit makes a new revision (the store keeps each, and the machine's as revision 0); every format of
``GET /jobs/{id}/transcript`` serves the latest, ``?revision=`` an earlier one. The edits themselves are
:mod:`cesar_common.transcript_edits`: the models here describe them for OpenAPI and check their shapes (a
400 names the field), the module checks them against the transcript (a 422 names the edit).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import MediaType, Response, get, patch
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from pydantic import BeforeValidator, ConfigDict, Field, field_validator

from cesar_api.exception_mapper import error_responses
from cesar_api.routes.job_routes import JOB_ID
from cesar_api.transcripts import completed_transcript
from cesar_common.db.records import JobRecord
from cesar_common.db.store import JobStore
from cesar_common.job_json import Schema, SpeakerOut
from cesar_common.text import control_character
from cesar_common.transcript_edits import MAX_EDITS, MAX_NAME_LENGTH, MAX_TEXT_LENGTH, parse_edits

__all__ = ["REVISION_HEADER", "edit_transcript", "list_revisions", "transcript_json"]

#: the response header that says which revision a transcript is
REVISION_HEADER = "X-Transcript-Revision"
#: the largest PATCH body: MAX_EDITS edits of a long text each would be more, and no client sends that
MAX_BODY_BYTES = 2 * 1024 * 1024
#: the longest ``author``
MAX_AUTHOR_LENGTH = 255


def _json_number(value: Any) -> Any:
    """A JSON number, not a string of digits nor ``true`` (Litestar validates bodies leniently)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    return value


def _json_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


Number = Annotated[int, BeforeValidator(_json_number), Field(ge=0)]
_SEGMENT = Field(description="The segment's `id`, as the edits before this one left the transcript.")
_NAME = Field(min_length=1, max_length=MAX_NAME_LENGTH, examples=["Diane"])


class _EditIn(Schema):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class TextEditIn(_EditIn):
    """A segment's new text. Its words still as heard keep their times; words changed or typed in have
    none and are left out of its `words`, and the segment says `edited`."""

    op: Literal["text"]
    segment: Number = _SEGMENT
    text: str = Field(max_length=MAX_TEXT_LENGTH, examples=["The quick brown fox."])


class SpeakerEditIn(_EditIn):
    """The segment (and its words) said by another speaker, one of the transcript's or a new name."""

    op: Literal["speaker"]
    segment: Number = _SEGMENT
    speaker: str = _NAME


class RenameEditIn(_EditIn):
    """A speaker renamed in the whole transcript (renamed to another speaker's name, the two become one)."""

    op: Literal["rename"]
    speaker: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, examples=["SPEAKER_00"])
    to: str = _NAME
    remember: Annotated[bool, BeforeValidator(_json_bool)] = Field(
        default=False,
        description="Also add the job's voice print of this speaker to the voice library under the new "
        "name (a person made if new): diarized jobs then name this voice.",
    )


class MergeEditIn(_EditIn):
    """Neighbouring segments made one, said by the first one's speaker."""

    op: Literal["merge"]
    segments: list[Number] = Field(min_length=2, examples=[[4, 5]])


class SplitEditIn(_EditIn):
    """A segment cut in two, before one of its words or at a character of its text (one of them). The time
    at the cut comes from the words on each side, or is estimated from the text's length."""

    op: Literal["split"]
    segment: Number = _SEGMENT
    word: Number | None = Field(
        default=None, description="Cut before `words[word]`: the second part starts with that word."
    )
    char: Number | None = Field(default=None, description="Cut the segment's `text` at this character.")


class RestoreEditIn(_EditIn):
    """The transcript as an earlier revision had it, word times included: how an edit is undone."""

    op: Literal["restore"]
    revision: Number | Literal["original"] = Field(description="A revision's number; `original`: 0.")


EditIn = Annotated[
    TextEditIn | SpeakerEditIn | RenameEditIn | MergeEditIn | SplitEditIn | RestoreEditIn,
    Field(discriminator="op"),
]


class TranscriptPatchIn(Schema):
    """Edits of a completed job's transcript, made on the revision the client last fetched."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    revision: Number = Field(
        description="The revision the edits were made on (the job's `revision`, or the transcript's "
        f"`{REVISION_HEADER}`); `409` with the current one when someone edited it meanwhile.",
        examples=[0],
    )
    edits: list[EditIn] = Field(
        min_length=1,
        max_length=MAX_EDITS,
        description="Applied in order, as one revision. Segment ids are renumbered from 0 after each edit: "
        "each edit names segments as the edits before it left them.",
        examples=[[{"op": "text", "segment": 3, "text": "The quick brown fox."}]],
    )
    author: str | None = Field(
        default=None,
        max_length=MAX_AUTHOR_LENGTH,
        description="Who made them, as you name them (shown by `GET /jobs/{id}/revisions`).",
        examples=["diane@example.com"],
    )

    @field_validator("author")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if (found := control_character(value)) is not None:
            raise ValueError(f"contains a control character ({found})")
        return value.strip() or None


class WordOut(Schema):
    start: float
    end: float
    word: str = Field(description="As spelled, with its leading space.")
    probability: float
    speaker: str | None = None


class SegmentOut(Schema):
    id: int
    start: float
    end: float
    text: str
    speaker: str | None = None
    edited: bool = Field(
        default=False,
        description="Its text was corrected: `words` holds only the words still as heard (with their "
        "times); a word typed in has none and is not there. Shown only when true.",
    )
    words: list[WordOut] | None = Field(default=None, description="With `word_timestamps` only.")


class TranscriptOut(Schema):
    """The transcript as `GET /jobs/{id}/transcript?format=json` gives it, with its revision."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    revision: int = Field(description="0 as transcribed, one more per edit.", examples=[1])
    text: str
    language: str | None
    language_probability: float | None
    duration: float
    segments: list[SegmentOut]
    speakers: list[SpeakerOut] | None = Field(default=None, description="When diarized.")


class RevisionOut(Schema):
    revision: int = Field(description="0: the machine's transcript; then one per edit.")
    author: str | None = Field(description="Who made the edit, as they said.")
    created_at: datetime = Field(description="When (for revision 0: when the job completed).")
    edits: list[dict[str, Any]] | None = Field(
        description="What the edit did, as sent (normalised); null for revision 0."
    )


class RevisionsOut(Schema):
    job_id: str
    revision: int = Field(description="The latest revision: the one every format serves.")
    revisions: list[RevisionOut] = Field(description="Oldest first; none until the job is completed.")


def transcript_json(record: JobRecord) -> bytes:
    """A completed job's transcript read ``with_segments`` as the json format gives it, with its revision."""
    return json.dumps(
        {**completed_transcript(record).to_dict(), "revision": record.revision}, ensure_ascii=False
    ).encode()


_REVISION_HEADER = ResponseHeader(
    name=REVISION_HEADER, documentation_only=True, description="The transcript's revision."
)


@patch(
    "/jobs/{job_id:str}/transcript",
    operation_id="editTranscript",
    tags=["Jobs"],
    summary="Correct a completed job's transcript",
    description="Edits a segment's text, moves a segment to another speaker, renames a speaker (and "
    "remembers their voice), merges or splits segments, or restores an earlier revision; the edits of one "
    "request make one new revision, with who made it and when. Every format of `GET /jobs/{id}/transcript` "
    "then serves it; `?revision=original` the machine's. Word times stay true: a word edited loses its "
    "times rather than keeping wrong ones. Followers of `GET /jobs/{id}/events?revisions=true` get a "
    "`revision` event, and the job's `callback_url` a `transcript.revised` webhook. `409` with "
    "`extra.revision` when the transcript is no longer at `revision` (edit the latest), and for a job not "
    "completed; `422` naming the edit that does not fit.",
    sync_to_thread=True,
    request_max_body_size=MAX_BODY_BYTES,
    response_headers=[_REVISION_HEADER],
    responses={
        200: ResponseSpec(
            data_container=TranscriptOut, generate_examples=False, description="The new revision."
        ),
        **error_responses(
            400,
            404,
            409,
            413,
            422,
            503,
            s409="The transcript is no longer at `revision` (`extra.revision`: the latest), or the job is "
            "not completed",
            s422="An edit that does not fit the transcript (`edit 2: no segment 40 ...`), or a name the "
            "voice library refuses",
        ),
    },
)
def edit_transcript(
    job_id: Annotated[str, JOB_ID], data: JSONBody[TranscriptPatchIn], store: NamedDependency[JobStore]
) -> Response[bytes]:
    edits = parse_edits([edit.model_dump(exclude_none=True) for edit in data.edits])
    record = store.edit_transcript(job_id, data.revision, edits, data.author)
    return Response(
        transcript_json(record),
        media_type=MediaType.JSON,
        headers={REVISION_HEADER: str(record.revision)},
    )


@get(
    "/jobs/{job_id:str}/revisions",
    operation_id="listRevisions",
    tags=["Jobs"],
    summary="A transcript's revisions",
    description="Who edited the transcript, when and how: revision 0 (the machine's), then one per "
    "`PATCH /jobs/{id}/transcript`. `GET /jobs/{id}/transcript?revision=N` serves any of them.",
    sync_to_thread=True,
    responses=error_responses(400, 404, 503),
)
def list_revisions(job_id: Annotated[str, JOB_ID], store: NamedDependency[JobStore]) -> RevisionsOut:
    found = store.list_revisions(job_id)
    listed = [
        RevisionOut(revision=item.revision, author=item.author, created_at=item.created_at, edits=item.edits)
        for item in found
    ]
    return RevisionsOut(job_id=job_id, revision=found[-1].revision if found else 0, revisions=listed)
