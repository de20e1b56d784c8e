"""Frozen records: what the job store hands out instead of ORM rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

# re-exported: a job's record carries the options it was submitted with
from cesar_common.job_options import TranscribeOptions as TranscribeOptions

__all__ = [
    "FINAL_STATUSES",
    "PUBLIC_STATUSES",
    "AudioFormat",
    "Decoding",
    "DeliveryOutcome",
    "FinishedPart",
    "JobPage",
    "JobRecord",
    "JobResult",
    "JobSource",
    "JobStatus",
    "JobView",
    "KeyRecord",
    "KeyUsage",
    "LiveEnd",
    "LiveState",
    "MetricsSnapshot",
    "NewJob",
    "PartPlan",
    "PartRecord",
    "PartStatus",
    "PartWork",
    "PublicStatus",
    "QueueCounts",
    "RevisionRecord",
    "SpeakerRecord",
    "SweepResult",
    "TranscribeOptions",
    "VoiceSampleRecord",
    "WebhookDeliveryRecord",
    "WebhookState",
    "WorkerRecord",
]

#: the statuses a client sees and filters on (a job's internal ``pending`` state is never shown)
PublicStatus = Literal["queued", "processing", "completed", "error", "cancelled"]


class JobStatus(StrEnum):
    PENDING = "pending"  # internal: audio still streaming in; never listed or claimed
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.CANCELLED})


class PartStatus(StrEnum):
    """A part of a long job cut at silences: queued -> processing -> completed (back to queued when its
    worker is lost or lets go). A failed part fails its job, which drops every part."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"


PUBLIC_STATUSES = tuple(JobStatus(status) for status in get_args(PublicStatus))


class WebhookState(StrEnum):
    PENDING = "pending"  # waiting for its next try (due at next_attempt_at)
    DELIVERING = "delivering"  # a worker holds it (until lease_expires_at)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # refused for good (a 4xx other than 408/429, a refused URL), or out of tries


class JobSource(StrEnum):
    UPLOAD = "upload"
    URL = "url"
    LIVE = "live"  # a live session: the audio arrives while the job runs (live_sessions)
    SAMPLE = "sample"  # a voice sample for the voice library: its worker reads a voice print, no text


class AudioFormat(StrEnum):
    """How a live session's audio arrives."""

    PCM_S16LE = "pcm_s16le"  # raw signed 16-bit little-endian mono samples at a declared rate
    CONTAINER = "container"  # the bytes of any file FFmpeg reads, as they are produced


class LiveEnd(StrEnum):
    """Why a live session's audio is over."""

    STOP = "stop"  # the client said so
    IDLE = "idle"  # no audio came for CESAR_LIVE_IDLE_SECONDS
    MAX_LENGTH = "max_length"  # CESAR_LIVE_MAX_SECONDS of audio arrived
    STREAM_END = "stream_end"  # a followed stream URL ended (an HLS playlist's #EXT-X-ENDLIST)


@dataclass(frozen=True, slots=True)
class LiveState:
    """A live session's audio stream as its worker and the API see it."""

    job_id: str
    audio_format: AudioFormat
    sample_rate: int | None
    audio_bytes: int
    chunks: int
    idle_seconds: float  # since audio last arrived (or the session opened), by the database's clock
    ended: LiveEnd | None
    tentative: str
    tentative_start: float | None
    #: a realtime connection's turn detection (``{"type": "server_vad", ...}`` or ``{"type": "none"}``);
    #: None for a session without turns
    turn_detection: dict[str, Any] | None = None
    #: the client's commits and clears: ``{"chunks": n, "action": "commit" | "clear"}``, in order
    marks: tuple[dict[str, Any], ...] = ()
    #: the worker's last turns: ``{"index", "start", "end", "complete"}``, oldest first
    turns: tuple[dict[str, Any], ...] = ()
    #: a followed stream URL's drops: ``{"at", "seconds", "reason"}``
    gaps: tuple[dict[str, Any], ...] = ()
    #: the session's own maximum length (seconds of audio), below the server's; None: the server's
    max_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to create. ``source_url`` for URL jobs; filename/content type for uploads."""

    source: JobSource
    options: TranscribeOptions
    source_url: str | None = None
    filename: str | None = None
    content_type: str | None = None
    max_attempts: int = 3
    callback_url: str | None = None
    #: a client's Idempotency-Key: a second create with it returns the first job (see JobStore.create_job)
    idempotency_key: str | None = None
    #: the key that makes it ("": the server's own key) and, for a key with limits, the limits its queue
    #: and audio are checked against in the transaction that queues the job
    owner: str = ""
    limits: KeyRecord | None = None
    #: the audio's length as probed at submit (what the daily audio quota counts)
    audio_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Decoding:
    """How a job's audio was decoded: shown with the job so a user can tell what ran."""

    device: str  # "cpu" or "cuda"
    compute_type: str  # "int8", "float16", ...
    mode: str  # "sequential" or "batched" (faster-whisper's BatchedInferencePipeline)
    batch_size: int  # windows decoded at once; 1 when sequential
    parts: int = 1  # a long file cut at silences (CESAR_SPLIT_SECONDS): how many parts ran
    workers: int = 1  # and on how many workers


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    status: JobStatus
    source: JobSource
    source_url: str | None
    filename: str | None
    content_type: str | None
    size_bytes: int | None
    options: TranscribeOptions
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    progress: float
    attempts: int
    max_attempts: int
    worker_id: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    result_text: str | None
    detected_language: str | None
    language_probability: float | None
    duration: float | None
    segments: list[dict[str, Any]] | None  # None unless read with get_job(..., with_segments=True)
    error_message: str | None
    error_code: str | None
    callback_url: str | None = None
    #: the latest delivery to ``callback_url`` (None until the job is final, or without a callback)
    webhook: WebhookDeliveryRecord | None = None
    #: sha256 of the request that created the job under an Idempotency-Key (internal)
    request_fingerprint: str | None = None
    #: how the job was decoded (completed jobs; None for jobs completed before Cesar kept it)
    decoding: Decoding | None = None
    #: segments decoded so far (while processing), or in the transcript (once completed)
    segment_count: int = 0
    speakers: list[dict[str, Any]] | None = None  # a diarized job's, once completed
    #: the transcript's revision: 0 as the machine wrote it, one more per edit (transcript_revisions)
    revision: int = 0
    #: the key that made the job (api_keys.id; "": the server's own key, or none)
    owner: str = ""

    @property
    def model(self) -> str:
        return self.options.model

    @property
    def is_final(self) -> bool:
        return self.status.is_final


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as ``GET /jobs/{id}`` shows it: the record (without segments) and, while queued, its place in
    the queue (1 for the job the next claim takes)."""

    job: JobRecord
    queue_position: int | None


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a worker writes when a job completes (plain Python values only)."""

    text: str
    language: str | None
    language_probability: float | None
    duration: float | None
    segments: list[dict[str, Any]] = field(default_factory=list)
    decoding: Decoding | None = None
    speakers: list[dict[str, Any]] | None = None  # when diarized
    #: a diarized part's voice prints by speaker, for the merge to name speakers across parts
    voices: dict[str, list[float]] | None = None


@dataclass(frozen=True, slots=True)
class PartPlan:
    """One part of a long job, as the worker that cut it plans it: seconds into the file."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class PartRecord:
    """A claimed part of a long job (see JobStore.claim_work)."""

    id: str
    job_id: str
    seq: int
    count: int  # parts of the job
    start: float  # seconds into the file
    end: float
    attempts: int

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class PartWork:
    """A part to transcribe, with the job it belongs to (its options, and the language chosen for every
    part in ``job.detected_language``)."""

    job: JobRecord
    part: PartRecord


@dataclass(frozen=True, slots=True)
class FinishedPart:
    """A part's stored transcript as the merge reads it (:meth:`JobStore.complete_part`)."""

    seq: int
    start: float
    end: float
    worker_id: str
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    current_job_id: str | None
    models: list[str]
    #: what its models take in memory, as the worker reports it (None: a worker that does not say)
    memory: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int
    processing: int


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What a lease sweep did."""

    requeued: list[str]
    failed: list[str]
    #: parts of long jobs requeued ("<job id>:<part>")
    parts_requeued: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WebhookDeliveryRecord:
    """One delivery of a job's webhook (its final state, or an edit of its transcript); ``id`` is its
    ``Cesar-Delivery-Id``."""

    id: str
    job_id: str
    url: str
    state: WebhookState
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    worker_id: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    #: what it tells: ``job.finished`` (the job's final state) or ``transcript.revised`` (an edit)
    event: str = "job.finished"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one try of a delivery came to, as the sender decided (cesar_worker.webhooks)."""

    state: WebhookState  # DELIVERED, FAILED, or PENDING to try again ``retry_in`` seconds from now
    status_code: int | None = None
    error: str | None = None
    #: seconds from now (the database's clock) to the next try
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What ``GET /metrics`` reports, read from the database in one go at scrape time."""

    jobs_by_status: dict[str, int]
    oldest_queued_seconds: float
    workers_alive: int
    deliveries_by_state: dict[str, int]
    #: running totals by name and label (histogram buckets, sums, counters): see JobStore.metric_totals
    totals: dict[str, dict[str, float]]
    #: live sessions not ended: (job id, status, seconds behind the audio at their worker's last report)
    live_sessions: list[tuple[str, str, float | None]] = field(default_factory=list)
    #: the workers seen recently, with their loaded models and memory
    workers: list[WorkerRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RevisionRecord:
    """One revision of a job's transcript: 0 the machine's, then one per edit, with who made it (as the
    client said), when and what it did (the edits, null for revision 0). The transcript itself (``text``,
    ``segments``, ``speakers``) only when read whole."""

    job_id: str
    revision: int
    author: str | None
    created_at: datetime
    edits: list[dict[str, Any]] | None
    text: str | None = None
    segments: list[dict[str, Any]] | None = None
    speakers: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class VoiceSampleRecord:
    """One voice print of a person: from an audio ``sample`` (read by the job ``job_id``) or a diarized
    ``job``'s speaker ``label``; ``pending`` until read, ``error`` (with why) if it could not be."""

    id: str
    source: Literal["sample", "job"]
    status: Literal["pending", "ready", "error"]
    seconds: float | None
    job_id: str | None
    label: str | None
    filename: str | None
    error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SpeakerRecord:
    """A person of the voice library and their voice prints."""

    id: str
    name: str
    created_at: datetime
    updated_at: datetime
    samples: tuple[VoiceSampleRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as the store keeps it (never the key itself). ``active``: neither revoked nor expired, by
    the database's clock when read."""

    id: str
    name: str
    prefix: str
    key_hash: str
    admin: bool
    priority: int
    max_queued: int | None
    audio_hours_per_day: float | None
    requests_per_second: float | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    active: bool

    @property
    def has_quota(self) -> bool:
        return self.max_queued is not None or self.audio_hours_per_day is not None


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """What a key's quotas count now: its jobs queued or running, and the audio it submitted in the last
    24 hours."""

    queued: int
    audio_seconds_today: float
