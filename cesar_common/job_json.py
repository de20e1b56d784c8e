"""A job as clients see it: the JSON of ``GET /jobs/{id}``, event streams and webhook bodies.

The wire format is a promise to clients (including those written for the first Cesar API), the tables are
not: :func:`job_document` is the one place a :class:`~cesar_common.db.records.JobRecord` becomes the JSON of
a job. It lives here, below the API, because workers send the same document in webhooks. The schemas of
requests, errors and health are the API's own (``cesar_api.schemas``).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from cesar_common.choices import TRANSCRIPT_FORMATS
from cesar_common.db.records import JobRecord, JobStatus, PublicStatus, WebhookState
from cesar_common.job_options import OptionSpec, option_specs, options_dict, parse_names, parse_option

__all__ = [
    "DecodingOut",
    "JobLinks",
    "JobOptionsOut",
    "JobOut",
    "Schema",
    "SpeakerOut",
    "WebhookOut",
    "job_document",
    "job_json",
    "job_links",
    "job_to_schema",
    "option_fields",
]

EXAMPLE_ID = "3f0c9a52-8d1e-4c53-9a43-1b2f0f6c7d10"


class Schema(BaseModel):
    # Validators and serializers are built on first use, not at import: the API starts faster.
    model_config = ConfigDict(defer_build=True)


def option_fields(*, for_input: bool) -> dict[str, Any]:
    """Pydantic fields for the job options (:mod:`cesar_common.job_options`). In a request every option is
    optional (the model then is the server's default; a decoding option left out or null, its default) and
    checked, a decoding option by :func:`~cesar_common.job_options.parse_option` (it also reads text: a
    form field says ``0,0.2``); a response shows them all but the model, which the job shows at its top."""
    fields: dict[str, Any] = {}
    for spec in option_specs():
        doc = spec.doc
        annotation, default = spec.annotation, spec.default
        checks: dict[str, Any] = {}
        if for_input:
            if spec.decoding:
                default = None
            if default is None:
                annotation = annotation | None
            if annotation == str | None:
                checks["min_length"] = 1 if spec.name == "model" else None
            checks.update(max_length=doc.max_length, pattern=doc.pattern)
            if not _is_list(spec):
                checks.update(ge=doc.ge, le=doc.le)
            if spec.decoding:
                annotation = Annotated[annotation, BeforeValidator(partial(_parsed, spec.name))]
            elif spec.name == "known_speakers":  # a form field says `Diane, Sheila`
                annotation = Annotated[annotation, BeforeValidator(_names)]
        elif spec.name == "model":
            continue
        examples = None if doc.example is None else [doc.example]
        checks = {key: value for key, value in checks.items() if value is not None}
        fields[spec.name] = (
            annotation,
            Field(default=default, description=doc.description, examples=examples, **checks),
        )
    return fields


def _is_list(spec: OptionSpec) -> bool:
    return getattr(spec.annotation, "__origin__", None) is tuple


def _names(value: Any) -> Any:
    try:
        return parse_names(value, label="")
    except ValueError as exc:
        raise PydanticCustomError("invalid_option", str(exc)) from None


def _parsed(name: str, value: Any) -> Any:
    """A decoding option's value read by the one check of every door, its refusal as pydantic's."""
    try:
        return parse_option(name, value, label="")  # the problem's key names the option
    except ValueError as exc:
        raise PydanticCustomError("invalid_option", str(exc)) from None


# The option fields are generated, so the type checker sees the class without them.
if TYPE_CHECKING:

    class JobOptionsOut(Schema):
        """The options a job was submitted with."""

else:
    JobOptionsOut = create_model(
        "JobOptionsOut",
        __base__=Schema,
        __module__=__name__,
        __doc__="The options a job was submitted with (its model is the job's `model`).",
        **option_fields(for_input=False),
    )


# --- responses --------------------------------------------------------------------------------------
class JobLinks(Schema):
    self: str = Field(description="This job.", examples=[f"/jobs/{EXAMPLE_ID}"])
    cancel: str = Field(description="POST here to cancel.", examples=[f"/jobs/{EXAMPLE_ID}/cancel"])
    transcripts: dict[str, str] | None = Field(
        default=None,
        description="Transcript URL per format (`txt`, `srt`, `vtt`, `json`, `tsv`; `rttm` with `diarize`), "
        "once completed.",
        examples=[{"srt": f"/jobs/{EXAMPLE_ID}/transcript?format=srt"}],
    )


class WebhookOut(Schema):
    """The latest delivery of a job's webhook to its ``callback_url``."""

    url: str = Field(examples=["https://example.com/cesar-webhook"])
    event: Literal["job.finished", "transcript.revised"] = Field(
        default="job.finished",
        description="What the delivery tells (its `Cesar-Event`): `job.finished`, the job ended; "
        "`transcript.revised`, its transcript was edited (`PATCH /jobs/{id}/transcript`).",
        examples=["job.finished"],
    )
    state: Literal["waiting", "pending", "delivering", "delivered", "failed"] = Field(
        description="`waiting` until the job ends; then `pending` (a try is due at `next_attempt_at`), "
        "`delivering`, and `delivered` or `failed` (given up).",
        examples=["delivered"],
    )
    delivery_id: str | None = Field(
        default=None, description="The `Cesar-Delivery-Id` header of the delivery (the same on each retry)."
    )
    attempts: int = Field(default=0, description="Tries of this delivery so far.")
    last_status_code: int | None = Field(default=None, description="The receiver's last answer.")
    last_error: str | None = Field(default=None, description="Why the last try did not succeed.")
    next_attempt_at: datetime | None = Field(default=None, description="When the next try is due.")
    delivered_at: datetime | None = None


class SpeakerOut(Schema):
    """One speaker of a diarized transcript."""

    speaker: str = Field(
        description="The name the transcript gives the speaker: a person of the voice library the voice "
        "matched, a name given by an edit, else the diarizer's label (`SPEAKER_00`, ... in order of "
        "appearance).",
        examples=["Diane"],
    )
    duration: float = Field(description="Seconds this speaker talks in the transcript.", examples=[42.5])
    label: str | None = Field(
        default=None,
        description="The diarizer's label of this voice (`SPEAKER_01`): what `POST /speakers` takes with "
        "the job to remember it; null for a speaker an edit made up.",
        examples=["SPEAKER_01"],
    )
    speaker_id: str | None = Field(
        default=None, description="The person of the voice library the voice matched; null for none."
    )
    distance: float | None = Field(
        default=None,
        description="How far the voice is from that person's nearest voice print (cosine distance: 0 is "
        "the same; a match is at most the server's threshold); null for no match.",
        examples=[0.04],
    )


class DecodingOut(Schema):
    """How a completed job was decoded."""

    device: str = Field(description="`cpu` or `cuda`.", examples=["cpu"])
    compute_type: str = Field(description="CTranslate2's compute type.", examples=["int8"])
    mode: Literal["sequential", "batched", "live"] = Field(
        description="`batched`: faster-whisper's batched pipeline, several 30 s windows at once "
        "(long files, and always on CUDA); `sequential`: one window after the other; `live`: a live "
        "session, its growing audio decoded about once a second (LocalAgreement-2).",
        examples=["batched"],
    )
    batch_size: int = Field(description="Windows decoded at once (1 when sequential).", examples=[4])
    parts: int = Field(
        default=1,
        description="Parts the audio was cut into at silences (`CESAR_SPLIT_SECONDS`), each transcribed by "
        "whichever worker was free; 1 when transcribed whole.",
        examples=[1],
    )
    workers: int = Field(default=1, description="Workers the parts ran on.", examples=[1])


class JobOut(Schema):
    """A transcription job.

    The first ten fields keep the meaning they had in the first Cesar API; the rest are new.
    Timestamps are ISO 8601 with a zone (UTC).
    """

    id: str = Field(examples=[EXAMPLE_ID])
    status: PublicStatus = Field(
        description="`queued`, `processing`, then `completed`, `error` or `cancelled`.", examples=["queued"]
    )
    audio_path: str | None = Field(
        description="The uploaded file's name, or the URL of a URL job or a live stream (never a path on "
        "the server).",
        examples=["interview.mp3"],
    )
    model_size: str = Field(description="The model (same as `model`; the first API's name).")
    created_at: datetime
    started_at: datetime | None = Field(description="When a worker last started the job.")
    completed_at: datetime | None = Field(description="When the job reached a final status.")
    result_text: str | None = Field(description="The transcript as plain text, once completed.")
    detected_language: str | None = Field(examples=["en"])
    error_message: str | None = Field(description="Why the job failed or was cancelled.")
    # --- new in this API
    model: str = Field(examples=["tiny.en"])
    progress: float = Field(ge=0.0, le=1.0, description="Fraction of the audio done (0 to 1).")
    queue_position: int | None = Field(
        default=None,
        description="Its place in line, counting from 1, oldest first: a hint (the queue goes fairly between "
        "keys, so a job of a key with less running may pass); null unless queued.",
        examples=[1],
    )
    duration: float | None = Field(description="Audio duration in seconds, once known.", examples=[7.2])
    language_probability: float | None = Field(examples=[0.98])
    attempts: int = Field(description="How many times a worker claimed the job.")
    max_attempts: int
    error_code: str | None = Field(
        description="Machine-readable reason of an error: `decode_failed`, `download_failed`, "
        "`worker_lost`, `cancelled`, ...",
    )
    source: Literal["upload", "url", "live", "sample"] = Field(
        description="`upload`, `url`, `live`, or `sample`: a voice sample for the voice library "
        "(`POST /speakers`), whose worker reads a voice print and writes no transcript."
    )
    cancel_requested: bool = Field(description="A cancel was asked for while the job was running.")
    size_bytes: int | None = Field(description="Size of the uploaded audio.")
    options: JobOptionsOut
    links: JobLinks
    webhook: WebhookOut | None = Field(
        default=None, description="The delivery to `callback_url`; null when the job has none."
    )
    decoding: DecodingOut | None = Field(
        default=None, description="How the job was decoded; null until it is completed."
    )
    segment_count: int = Field(
        default=0,
        description="Segments decoded so far while processing (follow them at `/jobs/{id}/events`, or fetch "
        "them with `/jobs/{id}/transcript?partial=true`); the transcript's segments once completed.",
    )
    speakers: list[SpeakerOut] | None = Field(
        default=None,
        description="Who spoke, once a job with `diarize` is completed: each speaker's name (as its "
        "segments carry it) and total speaking time; null otherwise.",
    )
    revision: int = Field(
        default=0,
        description="The transcript's revision: 0 as transcribed, one more per edit "
        "(`PATCH /jobs/{id}/transcript`); every format serves the latest.",
        examples=[0],
    )


# --- mapping -----------------------------------------------------------------------------------------
def job_links(job_id: str, *, completed: bool, diarized: bool, base_url: str = "") -> dict[str, Any]:
    """The ``links`` of a job (transcript links once it is completed; rttm only when it was diarized)."""
    self_url = f"{base_url}/jobs/{job_id}"
    formats = [fmt for fmt in TRANSCRIPT_FORMATS if diarized or fmt != "rttm"]
    transcripts = {fmt: f"{self_url}/transcript?format={fmt}" for fmt in formats} if completed else None
    return {"self": self_url, "cancel": f"{self_url}/cancel", "transcripts": transcripts}


def job_document(
    record: JobRecord, *, queue_position: int | None = None, base_url: str = ""
) -> dict[str, Any]:
    """The public view of a job as plain values (datetimes still datetimes): what :class:`JobOut` validates
    and :func:`job_json` encodes. ``queue_position`` only shows for queued jobs."""
    options = record.options
    return {
        "id": record.id,
        "status": record.status.value,
        "audio_path": record.source_url or record.filename,  # a URL job's or a live stream's URL
        "model_size": options.model,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "result_text": record.result_text,
        "detected_language": record.detected_language,
        "error_message": record.error_message,
        "model": options.model,
        "progress": min(max(float(record.progress or 0.0), 0.0), 1.0),
        "queue_position": queue_position if record.status is JobStatus.QUEUED else None,
        "duration": record.duration,
        "language_probability": record.language_probability,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "error_code": record.error_code,
        "source": record.source.value,
        "cancel_requested": record.cancel_requested,
        "size_bytes": record.size_bytes,
        "options": {name: value for name, value in options_dict(options).items() if name != "model"},
        "links": job_links(
            record.id,
            completed=record.status is JobStatus.COMPLETED,
            diarized=options.diarize,
            base_url=base_url,
        ),
        "webhook": _webhook(record),
        "decoding": None if record.decoding is None else asdict(record.decoding),
        "segment_count": record.segment_count,
        "speakers": record.speakers,
        "revision": record.revision,
    }


def job_to_schema(record: JobRecord, *, queue_position: int | None = None, base_url: str = "") -> JobOut:
    """The public view of a job. ``queue_position`` only shows for queued jobs."""
    # one validation of a plain dict: several times faster than model_construct field by field
    return JobOut.model_validate(job_document(record, queue_position=queue_position, base_url=base_url))


def job_json(record: JobRecord, *, queue_position: int | None = None, base_url: str = "") -> bytes:
    """:class:`JobOut`'s JSON for the job, byte for byte, without building the model: the API's polled path
    (``GET /jobs/{id}``) and the event streams send it thousands of times a second (a test checks both
    encodings agree)."""
    return _encode(job_document(record, queue_position=queue_position, base_url=base_url))


_encode = msgspec.json.Encoder().encode


def _webhook(record: JobRecord) -> dict[str, Any] | None:
    if record.callback_url is None:
        return None
    delivery = record.webhook
    if delivery is None:  # every field, as WebhookOut would fill them in
        return {
            "url": record.callback_url,
            "event": "job.finished",
            "state": "waiting",
            "delivery_id": None,
            "attempts": 0,
            "last_status_code": None,
            "last_error": None,
            "next_attempt_at": None,
            "delivered_at": None,
        }
    pending = delivery.state is WebhookState.PENDING
    return {
        "url": delivery.url,
        "event": delivery.event,
        "state": delivery.state.value,
        "delivery_id": delivery.id,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": delivery.next_attempt_at if pending else None,
        "delivered_at": delivery.delivered_at,
    }
