"""What the API's own routes take and answer beside a job's JSON (:mod:`cesar_common.job_json`): the fields
of a submit, errors, health."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, create_model, field_validator

from cesar_common.db.records import AudioFormat
from cesar_common.job_json import Schema, option_fields
from cesar_common.job_options import MAX_SPEAKERS
from cesar_common.text import TEXT_WHITESPACE, control_character

__all__ = [
    "DatabaseHealth",
    "ErrorOut",
    "HealthOut",
    "LiveAudioIn",
    "LiveOut",
    "LiveResumeIn",
    "LiveStartIn",
    "LoadHealth",
    "LoadedModelHealth",
    "QueueHealth",
    "SubmitFields",
    "TranscribeForm",
    "UrlJobIn",
    "WorkerHealth",
    "WorkersHealth",
]


# --- requests ---------------------------------------------------------------------------------------
class SubmitFields(Schema):
    """What every submit takes beside the job options (:func:`~cesar_common.job_json.option_fields`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    callback_url: Annotated[
        str | None,
        Field(
            default=None,
            max_length=2048,
            description="Where Cesar POSTs the job's JSON once it ends (`completed`, `error`, `cancelled`), "
            "signed with `Cesar-Signature` when the server has `CESAR_WEBHOOK_SECRET`. `http` or `https`; "
            "private and loopback addresses are refused unless the server allows them.",
            examples=["https://example.com/cesar-webhook"],
        ),
    ]

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        """No NUL, escape or other control character reaches a column; a prompt may span lines."""
        if isinstance(value, str):
            allowed = TEXT_WHITESPACE if info.field_name == "initial_prompt" else ""
            found = control_character(value, allowed=allowed)
            if found is not None:
                raise ValueError(f"contains a control character ({found})")
        return value

    @field_validator("callback_url")
    @classmethod
    def _no_empty_callback(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("language", check_fields=False)
    @classmethod
    def _normalise_language(cls, value: str | None) -> str | None:
        if value is None or value.lower() in ("", "auto"):
            return None
        return value.lower()

    @field_validator("initial_prompt", check_fields=False)
    @classmethod
    def _no_empty_prompt(cls, value: str | None) -> str | None:
        return value or None

    def options(self) -> dict[str, Any]:
        """The job options this request asks for, by name (the model None for the server's default)."""
        return self.model_dump(include=set(option_fields(for_input=True)))


class _UrlFields(SubmitFields):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        defer_build=True,
        json_schema_extra={"examples": [{"url": "https://example.com/interview.mp3", "model": "tiny.en"}]},
    )

    url: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2048,
            description="An `http` or `https` URL of the audio. Private and loopback addresses are refused "
            "unless the server allows them (`CESAR_ALLOW_PRIVATE_URLS`, `CESAR_ALLOW_PRIVATE_NETWORKS`).",
            examples=["https://example.com/interview.mp3"],
        ),
    ]
    live: bool = Field(
        default=False,
        description="The URL is a live stream (Icecast or Shoutcast MP3/AAC, or an HLS `.m3u8` playlist): "
        "transcribed while it plays, as a live session (`source` `live`; its segments at "
        "`/jobs/{id}/events`) that ends when the stream does, after `max_seconds` of audio, or once it "
        "has been silent or away for `CESAR_LIVE_IDLE_SECONDS`.",
    )
    max_seconds: Annotated[
        float | None,
        Field(
            default=None,
            gt=0,
            description="With `live`: the most audio (seconds) to transcribe; at most, and by default, "
            "`CESAR_LIVE_MAX_SECONDS`.",
            examples=[3600],
        ),
    ]


# The option fields are generated, so the type checker sees the classes without them.
if TYPE_CHECKING:

    class TranscribeForm(SubmitFields):
        """The text fields of a multipart ``POST /transcribe``."""

    class UrlJobIn(_UrlFields):
        """A transcription of audio that the worker downloads from ``url``."""

else:
    TranscribeForm = create_model(
        "TranscribeForm",
        __base__=SubmitFields,
        __module__=__name__,
        __doc__="The text fields of a multipart ``POST /transcribe`` (the audio comes in the ``file`` part).",
        **option_fields(for_input=True),
    )
    UrlJobIn = create_model(
        "UrlJobIn",
        __base__=_UrlFields,
        __module__=__name__,
        __doc__="A transcription of audio that the worker downloads from ``url``.",
        **option_fields(for_input=True),
    )


class LiveAudioIn(Schema):
    """How a live session's audio arrives (``docs/live.md``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    format: AudioFormat = AudioFormat.PCM_S16LE
    sample_rate: Annotated[int, Field(ge=8000, le=48000)] = 16000


class LiveStartIn(SubmitFields):
    """The first message of a new live session (``GET /live``)."""

    type: Literal["start"]
    model: Annotated[str | None, Field(default=None, max_length=255)]
    language: Annotated[str | None, Field(default=None, max_length=16, pattern=r"^([A-Za-z]{2,3}|auto)?$")]
    task: Literal["transcribe", "translate"] = "transcribe"
    prompt: Annotated[str | None, Field(default=None, max_length=2000)]
    word_timestamps: bool = True
    vad: bool = True
    #: speakers come from the final pass, which decodes the session's whole audio as a file
    diarize: bool = False
    num_speakers: Annotated[int | None, Field(default=None, ge=1, le=MAX_SPEAKERS)]
    min_speakers: Annotated[int | None, Field(default=None, ge=1, le=MAX_SPEAKERS)]
    max_speakers: Annotated[int | None, Field(default=None, ge=1, le=MAX_SPEAKERS)]
    audio: LiveAudioIn = Field(default_factory=LiveAudioIn)
    idempotency_key: Annotated[str | None, Field(default=None, min_length=1, max_length=255)]

    def options(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "language": self.language,
            "task": self.task,
            "initial_prompt": self.prompt or None,
            "word_timestamps": self.word_timestamps,
            "vad": self.vad,
            "diarize": self.diarize,
            "num_speakers": self.num_speakers,
            "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers,
        }


class LiveResumeIn(Schema):
    """The first message of a live session going on after a lost connection."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: Literal["resume"]
    session_id: Annotated[str, Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")]
    last_segment: Annotated[int, Field(ge=-1, le=10_000_000)] = -1


# --- responses ---------------------------------------------------------------------------------------
class ErrorOut(Schema):
    """Every 4xx and 5xx response has this shape."""

    status_code: int = Field(examples=[404])
    detail: str = Field(description="What went wrong, for a person.", examples=["no job with id 'abc'"])
    code: str = Field(description="What went wrong, for a program.", examples=["not_found"])
    extra: Any = Field(default=None, description="Details, e.g. the invalid fields of a request.")


class DatabaseHealth(Schema):
    reachable: bool
    writable: bool = Field(
        default=True, description="False while this API's writes fail (a full disk, a deleted SQLite file)."
    )
    backend: str = Field(examples=["sqlite"])
    error: str | None = Field(
        default=None, description="Why the database is unavailable: `database_unavailable`, `writes_failing`."
    )


class ObjectStoreHealth(Schema):
    url: str = Field(description="`CESAR_BLOB_URL`: where audio is kept.", examples=["s3://cesar-audio/prod"])
    endpoint: str = Field(examples=["http://127.0.0.1:8333"])
    reachable: bool
    error: str | None = Field(
        default=None,
        description="Why the object store is unavailable (it cannot be reached, refuses the credentials, or "
        "has no such bucket).",
    )


class LoadedModelHealth(Schema):
    name: str = Field(examples=["tiny.en"])
    device: str | None = Field(default=None, examples=["cpu"])
    compute_type: str | None = Field(default=None, examples=["int8"])
    estimated_mb: int | None = Field(
        default=None, description="What the model was expected to take, from its files (MiB).", examples=[72]
    )
    measured_mb: int | None = Field(
        default=None,
        description="What the worker's resident memory grew by as it loaded the model (MiB; on a GPU the "
        "weights are in the GPU's memory, and this is the host's share).",
        examples=[69],
    )


class WorkerHealth(Schema):
    id: str = Field(description="The worker's id (`host:pid` unless set).", examples=["box:4242"])
    last_seen_at: datetime
    current_job_id: str | None = None
    models: list[LoadedModelHealth] = Field(
        description="The models it holds in memory, least recently used first (unloaded first)."
    )
    memory_budget_mb: int | None = Field(
        default=None,
        description="What its models may take together (MiB, `CESAR_WORKER_MODEL_MEMORY_MB`).",
        examples=[11900],
    )
    max_models: int | None = Field(
        default=None, description="Most models it keeps (`CESAR_WORKER_MODELS`; null: no count)."
    )
    rss_mb: int | None = Field(
        default=None, description="Its process's resident memory (MiB).", examples=[402]
    )
    model_loads: int | None = Field(default=None, description="Models it loaded since it started.")
    model_unloads: int | None = Field(default=None, description="Models it unloaded since it started.")


class WorkersHealth(Schema):
    count: int = Field(description="Workers whose heartbeat is recent.", examples=[2])
    last_seen_at: datetime | None = Field(description="Most recent heartbeat of any worker.")
    workers: list[WorkerHealth] = Field(
        default_factory=list,
        description="Each of them, oldest first: the models it holds and what they take in memory (the "
        "figures are null for a worker that does not report them).",
    )


class QueueHealth(Schema):
    queued: int
    processing: int


class LoadHealth(Schema):
    shedding: bool = Field(
        description="True while the API refuses requests for want of a resource (`503` with "
        "`Retry-After`): within 10 s of the last such refusal."
    )
    reason: Literal["uploads", "open_files", "connections"] | None = Field(
        default=None,
        description="What ran out last while shedding: upload slots (`CESAR_MAX_UPLOADS_IN_FLIGHT`), open "
        "files, or connections (the open-file limit's share for them).",
    )
    refused: int = Field(description="Requests refused for want of a resource since the API started.")
    uploads_in_flight: int = Field(description="Uploads holding a slot (past their first 64 KiB).")
    max_uploads_in_flight: int
    connections: int | None = Field(default=None, description="Open HTTP connections.")
    max_connections: int | None = Field(
        default=None, description="Connections the API keeps open at most (from its open-file limit)."
    )


class HealthOut(Schema):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="`ok`; `degraded` when no worker is alive (jobs wait) or the API is shedding load "
        "(`load.shedding`); `unavailable` when the database or the object store cannot be reached (HTTP "
        "503)."
    )
    version: str
    database: DatabaseHealth
    objects: ObjectStoreHealth | None = Field(
        default=None, description="The object store audio is kept in (`CESAR_BLOB_URL`); null: the database."
    )
    workers: WorkersHealth | None
    queue: QueueHealth | None
    load: LoadHealth | None = Field(default=None, description="This API process's load and its caps.")


class LiveOut(Schema):
    status: Literal["ok"]
    version: str
