"""The tables of the job database, declared with SQLAlchemy 2.x: the schema the Alembic migrations create
(``migrations/``), and the Core tables the store's SQL runs on (``jobs``, ``job_parts``, ...).

The app never calls ``create_all``; only the migrations create these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiKey",
    "Base",
    "Chore",
    "Job",
    "JobAudio",
    "JobPart",
    "JobPartAudio",
    "JobVoice",
    "LiveSession",
    "OwnerTurn",
    "Speaker",
    "TranscriptRevision",
    "UTCDateTime",
    "VoicePrint",
    "WebhookDelivery",
    "api_keys",
    "chores",
    "job_audio",
    "job_part_audio",
    "job_parts",
    "job_segments",
    "job_voices",
    "jobs",
    "live_sessions",
    "metric_totals",
    "owner_turns",
    "speakers",
    "transcript_revisions",
    "voice_prints",
    "webhook_deliveries",
    "workers",
]

# Stable constraint names, so migrations and autogenerate agree on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no zone-aware type: values are stored as naive UTC and given back aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ApiKey(Base):
    """A key to the API (migration 0012). Never deleted: a revoked key keeps its row, so its jobs' owner
    keeps a name. The key itself is not stored: ``prefix`` finds the row, ``key_hash`` proves the rest."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # the name folded for comparison: two keys may not differ only by case
    name_key: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    # higher goes first in the queue, whatever the owners' running work
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # the key's limits (null: none)
    max_queued: Mapped[int | None] = mapped_column(Integer)
    audio_hours_per_day: Mapped[float | None] = mapped_column(Float)
    requests_per_second: Mapped[float | None] = mapped_column(Float)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (
        Index("ux_api_keys_name_key", "name_key", unique=True),
        Index("ux_api_keys_prefix", "prefix", unique=True),
    )


class OwnerTurn(Base):
    """When each owner's work was last claimed (migration 0012; null: never): among owners level on priority
    and running work, the one served longest ago goes first, so the queue goes round them all."""

    __tablename__ = "owner_turns"

    owner: Mapped[str] = mapped_column(String(36), primary_key=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Chore(Base):
    """Housekeeping that one worker of the fleet does per interval, not each (migration 0013): the worker that
    moves ``due_at`` on (by the database's clock) does it. The object store's sweep lists the whole bucket."""

    __tablename__ = "chores"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # `pending` while the upload streams in (never shown to clients or claimed), then `queued`,
    # `processing`, and one of the final states `completed`, `error`, `cancelled`.
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    source: Mapped[str] = mapped_column(String(8), nullable=False)  # upload | url | live
    source_url: Mapped[str | None] = mapped_column(Text)
    filename: Mapped[str | None] = mapped_column(String(512))
    content_type: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)

    model: Mapped[str] = mapped_column(String(255), nullable=False)
    language: Mapped[str | None] = mapped_column(String(16))
    task: Mapped[str] = mapped_column(String(16), nullable=False, default="transcribe")
    word_timestamps: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    vad: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    initial_prompt: Mapped[str | None] = mapped_column(Text)
    # migration 0005: jobs created before were not diarized
    diarize: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    num_speakers: Mapped[int | None] = mapped_column(Integer)
    min_speakers: Mapped[int | None] = mapped_column(Integer)
    max_speakers: Mapped[int | None] = mapped_column(Integer)
    # how Whisper decodes (migration 0009): the decoding options that differ from their defaults, by name
    # (cesar_common.job_options.DecodingOptions); null for a job decoded with every default
    decoding_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=3)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    result_text: Mapped[str | None] = mapped_column(Text)
    detected_language: Mapped[str | None] = mapped_column(String(16))
    language_probability: Mapped[float | None] = mapped_column(Float)
    duration: Mapped[float | None] = mapped_column(Float)
    segments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # a diarized job's speakers and their speaking time (migration 0005); short, so the job JSON shows it
    speakers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))

    # where the final state is POSTed (webhook_deliveries holds each delivery)
    callback_url: Mapped[str | None] = mapped_column(Text)
    # a client's Idempotency-Key and the sha256 of the request it came with; the key is cleared after
    # 24 hours so it can name a new job
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # how a completed job was decoded (migration 0003): "cpu"/"cuda", "int8"/"float16"...,
    # "sequential"/"batched", and the windows decoded at once (1 when sequential)
    decode_device: Mapped[str | None] = mapped_column(String(16))
    decode_compute_type: Mapped[str | None] = mapped_column(String(32))
    decode_mode: Mapped[str | None] = mapped_column(String(16))
    decode_batch_size: Mapped[int | None] = mapped_column(Integer)
    # segments decoded so far (migration 0004): rows of job_segments while the job runs, then the final count
    segment_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # a long job cut into parts (migration 0006): how many (null: transcribed whole), and once completed,
    # on how many workers they ran
    parts: Mapped[int | None] = mapped_column(Integer)
    decode_workers: Mapped[int | None] = mapped_column(Integer)
    # migration 0011. Name the voices the library knows (a diarized job's option), and only these people
    # (null: anyone in the library)
    name_speakers: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=true())
    known_speakers: Mapped[list[str] | None] = mapped_column(JSON)
    # the transcript's revision: 0 as the machine wrote it, then one more per edit (transcript_revisions)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # migration 0012: the key that made the job (api_keys.id; "": the server's own CESAR_API_KEY, or no
    # key at all), and the audio's length as probed at submit (what the daily audio quota counts)
    owner: Mapped[str] = mapped_column(String(36), nullable=False, default="", server_default="")
    audio_seconds: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        # the claim (oldest queued first) and listing with a status filter
        Index("ix_jobs_status_created_at_id", "status", "created_at", "id"),
        # listing newest first without a filter
        Index("ix_jobs_created_at_id", "created_at", "id"),
        # finding expired leases
        Index("ix_jobs_status_lease_expires_at", "status", "lease_expires_at"),
        # one job per Idempotency-Key and owner, enforced by the database (NULLs never collide)
        Index("ux_jobs_owner_idempotency_key", "owner", "idempotency_key", unique=True),
        # retention: finished jobs by age
        Index("ix_jobs_status_completed_at", "status", "completed_at"),
        # one owner's jobs: their list, their queue (quotas), their running work (the fair claim)
        Index("ix_jobs_owner_status_created_at_id", "owner", "status", "created_at", "id"),
    )


class JobAudio(Base):
    """A job's audio, in chunks of about 1 MiB, so it streams in and out."""

    __tablename__ = "job_audio"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # with an object store (migration 0013): the object holding this chunk (``data`` is empty), its size
    # and sha256, checked when it is read
    object_key: Mapped[str | None] = mapped_column(String(1024), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))


class JobSegment(Base):
    """A running job's segments as its worker decodes them, in order, for clients that follow it live.

    Written with the job's progress, fenced by the worker's lease; dropped when the job ends (the final
    transcript is ``jobs.segments``) or goes back to the queue (the next attempt starts over).
    """

    __tablename__ = "job_segments"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class JobPart(Base):
    """One part of a long job cut at silences (``CESAR_SPLIT_SECONDS``): claimed, leased and swept like a
    job, by any worker. Its audio is ``job_part_audio``; its transcript (in the file's time) is ``result``
    until the last part merges them all into the job. Deleted when the job ends."""

    __tablename__ = "job_parts"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)  # "<job id>:<seq>"
    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    # queued -> processing -> completed (a lost worker's part goes back to queued)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    start: Mapped[float] = mapped_column(Float, nullable=False)  # seconds into the file
    end: Mapped[float] = mapped_column(Float, nullable=False)
    # the job's created_at: parts are claimed oldest job first, in order
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    # its segments are in the job's live segments (every part before it is too)
    published: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_job_parts_status_created_at_id", "status", "created_at", "id"),
        Index("ix_job_parts_status_lease_expires_at", "status", "lease_expires_at"),
    )


class JobPartAudio(Base):
    """A part's audio: 16 kHz mono 16-bit PCM, in chunks of about 1 MiB; deleted when the part is done
    (or its job ends). Stored before its part row exists (the part is queued with its audio in place), so
    no foreign key."""

    __tablename__ = "job_part_audio"

    part_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    object_key: Mapped[str | None] = mapped_column(String(1024), index=True)  # as job_audio's
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))


class LiveSession(Base):
    """A live session's audio stream (migration 0007): its job's ``job_audio`` grows while the job runs.

    The API appends each piece of audio with one short transaction (a chunk row, and ``audio_bytes``,
    ``chunks`` and ``audio_at`` here); the worker that holds the job reads the chunks it has not decoded
    yet, and writes the words it has heard but not confirmed (``tentative``) with the job's live segments.
    ``ended`` says why no more audio will come (null while it may).
    """

    __tablename__ = "live_sessions"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    audio_format: Mapped[str] = mapped_column(String(16), nullable=False)  # pcm_s16le | container
    sample_rate: Mapped[int | None] = mapped_column(Integer)  # pcm_s16le's
    audio_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    chunks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # when audio last arrived (or the session opened), by the database's clock: the idle limit's start
    audio_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ended: Mapped[str | None] = mapped_column(String(16))  # stop | idle | max_length | stream_end
    tentative: Mapped[str] = mapped_column(Text, nullable=False, default="")
    tentative_start: Mapped[float | None] = mapped_column(Float)
    # how far the confirmed text is behind the audio that arrived, at the worker's last report (metrics)
    behind_seconds: Mapped[float | None] = mapped_column(Float)
    # migration 0008. A realtime connection's turn detection (null for GET /live: no turns) and the
    # client's commits and clears, [{"chunks": n, "action": "commit" | "clear"}]: each applies once the
    # worker has read n chunks
    turn_detection: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    marks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # the worker's last turns, [{"index", "start", "end", "complete"}], oldest first
    turns: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # a followed stream URL's drops, [{"at": session seconds, "seconds": how long, "reason"}]
    gaps: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # the session's own maximum length in seconds of audio (a stream URL's max_seconds); null: the server's
    max_seconds: Mapped[float | None] = mapped_column(Float)


class Worker(Base):
    """Presence of a worker process, refreshed by its heartbeat."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    current_job_id: Mapped[str | None] = mapped_column(String(36))
    models: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    # migration 0009. What its models take: the worker's memory budget, its resident memory, its loads and
    # unloads, and each loaded model with its estimated and measured size (bytes); null from older workers
    memory: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class WebhookDelivery(Base):
    """The outbox: one row per delivery of a job's final state to its ``callback_url``.

    Written in the transaction that makes the job final, claimed by workers like jobs are (a lease, so a
    crashed worker's delivery is tried again). ``id`` is the ``Cesar-Delivery-Id`` header: stable across
    the retries of one delivery, so receivers can drop duplicates.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    url: Mapped[str] = mapped_column(Text, nullable=False)
    # pending -> delivering (claimed) -> delivered | failed, or back to pending to retry
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # migration 0011: what it tells: null for the job's final state, ``transcript.revised`` for an edit
    event: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        # claiming due deliveries (pending by next_attempt_at; delivering by an expired lease)
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )


class MetricTotal(Base):
    """Running totals behind ``GET /metrics`` that must outlive the rows they count (retention deletes
    jobs): histogram buckets, sums and counters, added to in the transactions that finish jobs and
    deliveries, so they are right however many workers and hosts write them."""

    __tablename__ = "metric_totals"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=False)


class Speaker(Base):
    """A person of the voice library (migration 0011): diarized jobs name the voices they know."""

    __tablename__ = "speakers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # the name folded for comparison: two people may not differ only by case
    name_key: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # migration 0012: the key that enrolled the person (api_keys.id; "": the server's own key)
    owner: Mapped[str] = mapped_column(String(36), nullable=False, default="", server_default="")

    # names are unique per owner
    __table_args__ = (Index("ux_speakers_owner_name_key", "owner", "name_key", unique=True),)


class VoicePrint(Base):
    """One voice print of a person (biometric data: deleted with the person, or with the job it was taken
    from). ``embedding`` is 256 little-endian float32 numbers of unit length, null until a worker has read
    a sample (``status`` ``pending``)."""

    __tablename__ = "voice_prints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    speaker_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("speakers.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # pending | ready | error
    source: Mapped[str] = mapped_column(String(8), nullable=False)  # sample | job
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    seconds: Mapped[float | None] = mapped_column(Float)  # of speech it was taken from
    # a diarized job's speaker (source job): the print goes with the job
    job_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str | None] = mapped_column(String(64))
    # an audio sample (source sample): the job that read it (no foreign key: the print outlives it)
    sample_job_id: Mapped[str | None] = mapped_column(String(36), index=True)
    filename: Mapped[str | None] = mapped_column(String(512))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class JobVoice(Base):
    """A diarized job's speaker's voice print, by the diarizer's label (migration 0011): what "remember
    this voice" takes. Deleted with the job."""

    __tablename__ = "job_voices"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class TranscriptRevision(Base):
    """A transcript a job had (migration 0011): revision 0 is the machine's (written with the first
    edit), then one per edit. The job's own columns hold the latest."""

    __tablename__ = "transcript_revisions"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str | None] = mapped_column(Text)
    segments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    speakers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    author: Mapped[str | None] = mapped_column(String(255))
    # what the edit did, as the client asked it (null for revision 0)
    edits: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


# The tables as the store's SQL uses them (Core, not the ORM).
jobs = cast(Table, Job.__table__)
job_audio = cast(Table, JobAudio.__table__)
job_segments = cast(Table, JobSegment.__table__)
job_parts = cast(Table, JobPart.__table__)
job_part_audio = cast(Table, JobPartAudio.__table__)
live_sessions = cast(Table, LiveSession.__table__)
workers = cast(Table, Worker.__table__)
webhook_deliveries = cast(Table, WebhookDelivery.__table__)
metric_totals = cast(Table, MetricTotal.__table__)
speakers = cast(Table, Speaker.__table__)
api_keys = cast(Table, ApiKey.__table__)
owner_turns = cast(Table, OwnerTurn.__table__)
chores = cast(Table, Chore.__table__)
voice_prints = cast(Table, VoicePrint.__table__)
job_voices = cast(Table, JobVoice.__table__)
transcript_revisions = cast(Table, TranscriptRevision.__table__)
