"""The job store: the one facade through which the API and the workers touch the database.

Each method opens a transaction (:mod:`~cesar_common.db.transactions`) and hands it to the SQL of one
concept, each in its module of ``cesar_common.db``: ``submissions`` (creating jobs), ``job_reads``,
``queue`` (claims, places in line), ``leases`` (a worker's hold on a job), ``parts`` (long jobs), ``live``
(live segments), ``live_sessions`` (jobs whose audio arrives while they run), ``cancels``, ``retention``,
``audio_chunks``, ``presence`` (workers), ``outbox`` (webhook deliveries) and ``totals`` (metrics). Every
change of a job's state among them goes through :mod:`~cesar_common.db.state`. Rows leave as frozen records
(:mod:`~cesar_common.db.records`), never as ORM objects.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from cesar_common.blob_store import BlobStore, StoredObject
from cesar_common.db import (
    api_keys,
    audio_chunks,
    cancels,
    chores,
    job_reads,
    leases,
    live,
    live_sessions,
    outbox,
    parts,
    presence,
    queue,
    retention,
    revisions,
    submissions,
    totals,
    voice_library,
)
from cesar_common.db.audio_chunks import AudioSource
from cesar_common.db.clock import db_now
from cesar_common.db.connect import open_engine, sqlite_file
from cesar_common.db.driver_query import DriverQuery
from cesar_common.db.leases import LeaseLostError
from cesar_common.db.records import (
    AudioFormat,
    DeliveryOutcome,
    JobPage,
    JobRecord,
    JobResult,
    JobStatus,
    JobView,
    KeyRecord,
    KeyUsage,
    LiveEnd,
    LiveState,
    MetricsSnapshot,
    NewJob,
    PartPlan,
    PartWork,
    QueueCounts,
    RevisionRecord,
    SpeakerRecord,
    SweepResult,
    WebhookDeliveryRecord,
    WorkerRecord,
)
from cesar_common.db.rows import JOB_FIELDS, Cursor, decode_cursor, encode_cursor, job_record
from cesar_common.db.state import final_values
from cesar_common.db.transactions import Transactions, database_error
from cesar_common.errors import ConflictError, InvalidInputError, NotFoundError, ObjectStoreError
from cesar_common.transcript_edits import Edit, Restore, Transcript, apply_edits, edit_json

__all__ = ["JobStore", "LeaseLostError"]


def _pending_jobs_keys(conn: Any, keys: Sequence[str], blobs: BlobStore) -> set[str]:
    """The keys among ``keys`` of uploads whose job is still pending (still arriving: a long upload's
    object can be older than the grace period by the time its row comes)."""
    owners = {key: job_id for key in keys if (job_id := blobs.job_of(key)) is not None}
    pending = job_reads.pending_among(conn, set(owners.values()))
    return {key for key, job_id in owners.items() if job_id in pending}


_CALLBACK_URL = JOB_FIELDS.index("callback_url")
#: jobs deleted per transaction by purge_finished_jobs
PURGE_BATCH = 200


class JobStore:
    """Every read and write of jobs, their audio and worker presence. Thread-safe: one per process."""

    def __init__(self, engine: Engine, *, keep_audio: bool = False, blobs: BlobStore | None = None) -> None:
        """``blobs``: the object store new audio goes to (None: the database). Audio already stored stays
        where it is and is read from there (`cesar db move` moves it)."""
        self._tx = Transactions(engine)
        self._keep_audio = keep_audio
        self._blobs = blobs
        file = sqlite_file(engine)
        #: GET /jobs/{id}'s statement on the driver's cursor: SQLite only (a local file; on PostgreSQL the
        #: round trip dwarfs SQLAlchemy's share, and its autocommit reads need the engine's connection set-up)
        self._view_query = (
            DriverQuery(engine, job_reads.JOB_VIEW, before_use=None if file is None else file.check_for_read)
            if engine.dialect.name == "sqlite"
            else None
        )

    @classmethod
    def from_url(
        cls, url: str, *, keep_audio: bool = False, blobs: BlobStore | None = None, **engine_options: Any
    ) -> JobStore:
        """A store with an engine of its own (scripts and tests; :meth:`close` disposes of it);
        ``engine_options`` as :func:`open_engine` takes them."""
        return cls(open_engine(url, **engine_options), keep_audio=keep_audio, blobs=blobs)

    @property
    def engine(self) -> Engine:
        return self._tx.engine

    @property
    def blobs(self) -> BlobStore | None:
        """The object store new audio goes to (None: the database)."""
        return self._blobs

    @property
    def reads_are_local(self) -> bool:
        """True when a short read costs less than handing it to a thread: SQLite, a file on this host.

        A primary-key read there takes about 0.1 ms and never waits for a writer (WAL), nor for a pooled
        connection (see ``open_engine``); a PostgreSQL read is a network round trip.
        """
        return self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        """Close pooled connections (the engine stays usable)."""
        if self._view_query is not None:
            self._view_query.close()
        self.engine.dispose()

    def write_failure(self) -> str | None:
        """Why writes fail, if this process's last one did and they still do (None: they work)."""
        return self._tx.write_failure()

    def sqlite_room(self) -> int | None:
        return self._tx.sqlite_room()

    def ping(self) -> None:
        with self._tx.read() as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()

    # --- creating jobs -------------------------------------------------------------------------
    def create_job(
        self, new: NewJob, audio_source: AudioSource | None, *, max_bytes: int | None = None
    ) -> JobRecord:
        """The new job (or, for a known ``new.idempotency_key``, the job it created)."""
        return submissions.create_job(self._tx, new, audio_source, max_bytes=max_bytes, blobs=self._blobs)[0]

    def create_job_idempotent(
        self, new: NewJob, audio_source: AudioSource | None, *, max_bytes: int | None = None
    ) -> tuple[JobRecord, bool]:
        """Create a job; ``(job, created)`` (see :func:`submissions.create_job`)."""
        return submissions.create_job(self._tx, new, audio_source, max_bytes=max_bytes, blobs=self._blobs)

    def purge_stale_uploads(self, *, older_than_seconds: float) -> int:
        """Delete ``pending`` jobs (and their audio) whose upload made no progress for that long."""
        return submissions.purge_stale_uploads(self._tx, older_than_seconds=older_than_seconds)

    # --- reading jobs --------------------------------------------------------------------------
    def get_job(self, job_id: str, *, with_segments: bool = False) -> JobRecord:
        """The job (NotFoundError for unknown ids and ``pending`` uploads); its ``segments`` only
        ``with_segments``: a long transcript's segments are megabytes of JSON the polling path never needs."""
        with self._tx.read() as conn:
            row = job_reads.get_visible(conn, job_id, with_segments=with_segments)
            if row is None:
                raise job_reads.not_found(job_id)
            return job_reads.record_with_webhook(conn, row)

    def job_view(self, job_id: str) -> JobView:
        """The job as ``GET /jobs/{id}`` shows it (NotFoundError for unknown ids and ``pending`` uploads):
        without segments, with its webhook and queue position; one statement (two with a webhook)."""
        if self._view_query is not None:
            try:
                row: Sequence[Any] | None = (
                    self._view_query.first(job_id=job_id) if job_reads.plausible_id(job_id) else None
                )
            except SQLAlchemyError as exc:
                raise database_error(exc) from exc
        else:
            with self._tx.read() as conn:
                row = job_reads.get_view(conn, job_id)
        if row is None:
            raise job_reads.not_found(job_id)
        columns, position = row[:-1], row[-1]
        webhook = None
        if columns[_CALLBACK_URL]:
            with self._tx.read() as conn:
                webhook = outbox.latest_for(conn, [job_id]).get(job_id)
        return JobView(job_record(columns, webhook), None if position is None else int(position))

    def job_owner(self, job_id: str) -> str | None:
        """The key that made the job (None: no such job, or a ``pending`` upload)."""
        with self._tx.read() as conn:
            return job_reads.owner_of(conn, job_id)

    @property
    def statements_on_driver(self) -> int:
        """Statements this store ran on the driver's cursor, past SQLAlchemy's events (see job_view)."""
        return 0 if self._view_query is None else self._view_query.count

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> JobPage:
        """Newest first (created_at, id descending), keyset pagination with an opaque cursor
        (InvalidInputError if bad); ``next_cursor`` is None on the last page. Records without segments.
        ``owner``: only the jobs of that key (a cursor never widens it: the caller passes it each time)."""
        if not 1 <= limit <= job_reads.MAX_LIST_LIMIT:
            raise InvalidInputError(f"limit must be between 1 and {job_reads.MAX_LIST_LIMIT}")
        wanted = None if status is None else job_reads.public_status(status)
        after = None if cursor is None else decode_cursor(cursor)
        if after is not None and after.status != wanted:
            if wanted is not None:
                listed = after.status or "every"
                raise InvalidInputError(
                    f"this cursor continues a listing of {listed} jobs, not of {wanted} jobs: "
                    "follow it alone or start again without it"
                )
            wanted = after.status  # the cursor alone keeps its listing's filter
        with self._tx.read() as conn:
            rows = job_reads.list_page(
                conn,
                status=wanted,
                limit=limit + 1,
                after=None if after is None else (after.created_at, after.job_id),
                owner=owner,
            )
            webhooks = outbox.latest_for(conn, [row.id for row in rows[:limit] if row.callback_url])
        records = [job_record(row, webhooks.get(row.id)) for row in rows[:limit]]
        last = records[-1] if len(rows) > limit else None
        next_cursor = None if last is None else encode_cursor(Cursor(last.created_at, last.id, wanted))
        return JobPage(jobs=records, next_cursor=next_cursor)

    def jobs_by_id(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs among ``job_ids`` that exist, without segments, with their webhooks: two statements
        however many jobs (live event streams)."""
        with self._tx.read() as conn:
            rows = job_reads.get_many(conn, job_ids)
            webhooks = outbox.latest_for(conn, [row.id for row in rows if row.callback_url])
        return {row.id: job_record(row, webhooks.get(row.id)) for row in rows}

    def queue_position(self, job: JobRecord) -> int | None:
        """1 for the job the next claim takes; None unless ``job`` is queued."""
        if job.status is not JobStatus.QUEUED:
            return None
        with self._tx.read() as conn:
            return queue.queue_position(
                conn, created_at=job.created_at, job_id=job.id, source=job.source.value
            )

    def queue_positions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """1-based queue positions of the queued jobs among ``job_ids``, in one statement."""
        with self._tx.read() as conn:
            return queue.queue_positions(conn, list(job_ids))

    def queue_counts(self) -> QueueCounts:
        with self._tx.read() as conn:
            return queue.queue_counts(conn)

    def is_cancel_requested(self, job_id: str) -> bool:
        """True once a client asked to cancel (or the job is already cancelled)."""
        with self._tx.read() as conn:
            found = job_reads.cancel_state(conn, job_id)
        if found is None:
            raise job_reads.not_found(job_id)
        status, requested = found
        return requested or status == JobStatus.CANCELLED.value

    def live_segments(self, job_id: str, *, first: int = 0) -> list[dict[str, Any]]:
        """A running job's segments decoded so far, from index ``first`` on (empty once it ended: its
        transcript is then :meth:`get_job` ``(with_segments=True).segments``)."""
        with self._tx.read() as conn:
            return live.read_from(conn, job_id, first)

    def live_segments_of(self, firsts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`live_segments` of several jobs (job id -> first index wanted), in one statement."""
        with self._tx.read() as conn:
            return live.read_from_many(conn, firsts)

    # --- workers' side of a job ----------------------------------------------------------------
    def claim_work(self, worker_id: str, *, lease_seconds: float) -> JobRecord | PartWork | None:
        """What a worker takes next, in one transaction, fairly between owners (:mod:`.queue`): the job or
        part of the owner with the highest key priority, then the least work running, then the oldest
        (processing, attempts + 1, started_at, worker_id and a lease). None when there is nothing to do."""
        with self._tx.write() as conn:
            claimed = queue.claim(conn, worker_id, lease_seconds=lease_seconds)
        if claimed is None:
            return None
        job, part = claimed
        if part is None:
            return job_record(job)
        return PartWork(job=job_record(job), part=parts.part_record(part, int(job.parts or 0)))

    def extend_lease(self, job_id: str, worker_id: str, *, lease_seconds: float) -> bool:
        """Push the lease forward; False when the job is no longer held by ``worker_id``."""
        with self._tx.write() as conn:
            return leases.extend(conn, job_id, worker_id, lease_seconds=lease_seconds)

    def report_progress(
        self,
        job_id: str,
        worker_id: str,
        progress: float,
        *,
        segments: Sequence[dict[str, Any]] = (),
        lease_seconds: float | None = None,
    ) -> bool:
        """Record progress (clamped to 0..1) and the segments decoded since the last report (appended to
        the job's live segments), extending the lease too when ``lease_seconds`` is given; returns whether a
        cancel was requested. All of it in one write, fenced: LeaseLostError when the job is no longer held
        by ``worker_id``, and nothing is written then.
        """
        value = min(1.0, max(0.0, float(progress)))
        with self._tx.write() as conn:
            return leases.report_progress(
                conn, job_id, worker_id, value, segments=segments, lease_seconds=lease_seconds
            )

    def complete_job(self, job_id: str, worker_id: str, result: JobResult) -> bool:
        """Fenced (processing and held by ``worker_id``): False when the job is not ours any more. A
        diarized result's voice prints are kept with the job (``job_voices``)."""
        with self._tx.write() as conn:
            done = leases.finish(
                conn, job_id, worker_id, leases.completed_values(result), keep_audio=self._keep_audio
            )
            if done and result.voices:
                voice_library.store_job_voices(conn, job_id, voice_library.encode_voices(result.voices))
            return done

    def complete_sample(self, job_id: str, worker_id: str, vector: Sequence[float], seconds: float) -> bool:
        """A voice sample's job done: its print is its person's (the job completes with no transcript).
        Fenced as :meth:`complete_job`."""
        text = f"voice print from {seconds:.1f} s of speech"
        values = leases.completed_values(
            JobResult(text=text, language=None, language_probability=None, duration=None)
        )
        with self._tx.write() as conn:
            done = leases.finish(conn, job_id, worker_id, values, keep_audio=self._keep_audio)
            if done:
                (data,) = voice_library.encode_voices({"": vector}).values()
                voice_library.complete_sample(conn, job_id, data, seconds)
            return done

    def fail_job(self, job_id: str, worker_id: str, *, code: str, message: str) -> bool:
        values = final_values(JobStatus.ERROR, error_code=code[:64], error_message=message)
        return self._finish(job_id, worker_id, values)

    def cancel_running(self, job_id: str, worker_id: str) -> bool:
        return self._finish(job_id, worker_id, final_values(JobStatus.CANCELLED))

    def _finish(self, job_id: str, worker_id: str, values: dict[str, Any]) -> bool:
        with self._tx.write() as conn:
            return leases.finish(conn, job_id, worker_id, values, keep_audio=self._keep_audio)

    def release_job(self, job_id: str, worker_id: str) -> bool:
        """Hand a held job back to the queue without counting the attempt (a worker shutting down).

        A job whose cancel was requested is cancelled instead.
        """
        with self._tx.write() as conn:
            return leases.release(conn, job_id, worker_id, keep_audio=self._keep_audio)

    def sweep_expired_leases(self) -> SweepResult:
        """Jobs whose worker stopped renewing its lease (by the database's clock): requeued, or failed with
        ``worker_lost`` ("worker lost N times") after max_attempts claims. A job whose cancel was requested
        is cancelled instead."""
        with self._tx.write() as conn:
            swept = leases.sweep_expired(conn, keep_audio=self._keep_audio)
            requeued, failed = parts.sweep_expired(conn, keep_audio=self._keep_audio)
        if not requeued and not failed:
            return swept
        return SweepResult(requeued=swept.requeued, failed=swept.failed + failed, parts_requeued=requeued)

    # --- live sessions ----------------------------------------------------------------------------
    def open_live_session(
        self,
        new: NewJob,
        audio_format: AudioFormat,
        sample_rate: int | None,
        turn_detection: dict[str, Any] | None = None,
        *,
        max_seconds: float | None = None,
    ) -> tuple[JobRecord, bool]:
        """A new live session (a queued job with ``source`` live), cut into turns as ``turn_detection``
        says (a realtime connection; None: no turns), at most ``max_seconds`` long (None: the server's
        maximum); ``(job, created)``: with a known ``new.idempotency_key``, the session it names (see
        :func:`live_sessions.open_session`)."""
        return live_sessions.open_session(
            self._tx, new, audio_format, sample_rate, turn_detection, max_seconds=max_seconds
        )

    def set_live_turn_detection(self, job_id: str, turn_detection: dict[str, Any]) -> None:
        """How a session's audio is cut into turns from now on."""
        with self._tx.write() as conn:
            live_sessions.set_turn_detection(conn, job_id, turn_detection)

    def mark_live_audio(self, job_id: str, action: str) -> int:
        """The client's ``commit`` or ``clear`` of the audio stored so far (after the chunks counted now,
        returned)."""
        with self._tx.write() as conn:
            return live_sessions.add_mark(conn, job_id, action)

    def append_live_audio(self, job_id: str, data: bytes) -> int | None:
        """Store a piece of a session's audio (one short transaction, after its object with an object
        store); the bytes stored in all, or None when the session takes no more audio."""
        piece: bytes | StoredObject = data
        if self._blobs is not None:
            piece = self._blobs.put(self._blobs.new_key("live", job_id), data)
        with self._tx.write() as conn:
            return live_sessions.append(conn, job_id, piece)

    def end_live_audio(self, job_id: str, reason: LiveEnd) -> bool:
        """No more audio will come to the session; False when it had ended already."""
        with self._tx.write() as conn:
            return live_sessions.end_audio(conn, job_id, reason)

    def restart_live_idle(self, job_id: str) -> float:
        """A worker starts following a session's stream URL: the seconds since its audio last arrived, and
        its idle time counted from now."""
        with self._tx.write() as conn:
            return live_sessions.restart_idle(conn, job_id)

    def set_live_gaps(self, job_id: str, gaps: Sequence[dict[str, Any]]) -> None:
        """Where a session's followed stream URL dropped, and for how long (all its drops so far)."""
        with self._tx.write() as conn:
            live_sessions.set_gaps(conn, job_id, gaps)

    def live_state(self, job_id: str) -> LiveState | None:
        """A session's audio stream (None for a job that is no live session)."""
        with self._tx.read() as conn:
            return live_sessions.read_state(conn, job_id)

    def live_audio(self, job_id: str, *, from_seq: int) -> list[bytes]:
        """A session's audio chunks from ``from_seq`` on (a few at most, in order; fewer when fewer have
        arrived)."""
        with self._tx.read() as conn:
            rows = audio_chunks.read_chunks(conn, job_id, from_seq=from_seq, limit=64)
        chunks: list[bytes] = []
        for row in rows:
            if row.seq != from_seq + len(chunks):
                break  # a chunk still being written (never on one writer's stream; kept safe)
            chunks.append(b"".join(self._row_bytes(row, f"job {job_id}")))
        return chunks

    def claim_live(self, worker_id: str, *, lease_seconds: float) -> JobRecord | None:
        """The oldest queued live session, now held by ``worker_id`` (None when none waits)."""
        with self._tx.write() as conn:
            row = queue.claim_live(conn, worker_id, lease_seconds=lease_seconds)
        return None if row is None else job_record(row)

    def report_live(
        self,
        job_id: str,
        worker_id: str,
        *,
        segments: Sequence[dict[str, Any]],
        tentative: str,
        tentative_start: float | None,
        behind_seconds: float,
        lease_seconds: float,
        turns: Sequence[dict[str, Any]] | None = None,
    ) -> bool:
        """The segments a session's worker confirmed and the text it has not (and its last ``turns``),
        with its lease; fenced (LeaseLostError). Returns whether a cancel was requested."""
        with self._tx.write() as conn:
            return live_sessions.report(
                conn,
                job_id,
                worker_id,
                segments=segments,
                tentative=tentative,
                tentative_start=tentative_start,
                behind_seconds=behind_seconds,
                lease_seconds=lease_seconds,
                turns=turns,
            )

    # --- long jobs cut into parts ----------------------------------------------------------------
    def store_part_audio(
        self, job_id: str, worker_id: str, seq: int, pcm: bytes, *, lease_seconds: float
    ) -> None:
        """Store part ``seq`` of a held job's audio (16-bit PCM), a chunk per transaction, extending the
        job's lease as it goes; LeaseLostError when the job is no longer held by ``worker_id``. With an
        object store: one object, then its row (and the lease) in one transaction."""
        if self._blobs is not None:
            key = self._blobs.new_key("parts", job_id, str(seq))
            stored = self._blobs.write(key, audio_chunks.rechunk(pcm))
            with self._tx.write() as conn:
                if not leases.extend(conn, job_id, worker_id, lease_seconds=lease_seconds):
                    raise LeaseLostError(f"job {job_id} is no longer held by worker {worker_id}")
                parts.insert_audio_object(conn, job_id, seq, stored)
            return
        for chunk_seq, chunk in enumerate(audio_chunks.rechunk(pcm)):
            with self._tx.write() as conn:
                if not leases.extend(conn, job_id, worker_id, lease_seconds=lease_seconds):
                    raise LeaseLostError(f"job {job_id} is no longer held by worker {worker_id}")
                parts.insert_audio_chunk(conn, job_id, seq, chunk_seq, chunk)

    def split_job(
        self,
        job_id: str,
        worker_id: str,
        plans: Sequence[PartPlan],
        *,
        language: str | None,
        language_probability: float | None,
    ) -> bool:
        """Queue the parts of a held job whose audio :meth:`store_part_audio` stored, and let go of the
        job (it completes when its last part does). A job whose cancel was requested meanwhile is
        cancelled instead. False when the job was not split (not held any more, or cancelled)."""
        with self._tx.write() as conn:
            requested = conn.execute(leases.cancel_requested(job_id, worker_id)).scalar_one_or_none()
            if requested is None:
                return False
            if requested:
                cancelled = final_values(JobStatus.CANCELLED)
                leases.finish(conn, job_id, worker_id, cancelled, keep_audio=self._keep_audio)
                return False
            return parts.split(
                conn, job_id, worker_id, plans, language=language, language_probability=language_probability
            )

    def iter_part_audio(self, part_id: str) -> Iterator[bytes]:
        """A part's audio (16-bit PCM), chunk by chunk, a short read transaction per few chunks."""
        next_seq = 0
        while True:
            with self._tx.read() as conn:
                rows = parts.read_audio(conn, part_id, from_seq=next_seq, limit=audio_chunks.READ_BATCH)
            if not rows:
                return
            for row in rows:
                next_seq = row.seq + 1
                yield from self._row_bytes(row, f"part {part_id}")

    def report_part(
        self, work: PartWork, worker_id: str, progress: float | None, *, lease_seconds: float
    ) -> bool:
        """Extend a held part's lease and write its progress (when given); True when the part should stop
        (its job ended: cancelled, or failed). LeaseLostError when the part is not held."""
        value = None if progress is None else min(1.0, max(0.0, float(progress)))
        with self._tx.write() as conn:
            return parts.report(
                conn, work.job.id, work.part.id, worker_id, value, lease_seconds=lease_seconds
            )

    def part_should_stop(self, job_id: str) -> bool:
        """Whether a part of this job should stop: the job ended (cancelled, or failed), or is gone."""
        with self._tx.read() as conn:
            found = job_reads.cancel_state(conn, job_id)
        return found is None or found[1] or found[0] != JobStatus.PROCESSING.value

    def complete_part(
        self, work: PartWork, worker_id: str, result: dict[str, Any], merge: parts.Merge
    ) -> str | None:
        """Store a held part's transcript; the last part's completion merges every part's (``merge``) and
        completes the job in the same transaction, so a job completes exactly once. Returns "part" or
        "job", or None when the part is not ``worker_id``'s any more or its job ended."""
        with self._tx.write() as conn:
            return parts.complete(
                conn, work.job.id, work.part.id, worker_id, result, merge, keep_audio=self._keep_audio
            )

    def fail_part(self, work: PartWork, worker_id: str, *, code: str, message: str) -> bool:
        """A part failed for good: its job fails with ``message``. False when not held any more."""
        with self._tx.write() as conn:
            return parts.fail(
                conn,
                work.job.id,
                work.part.id,
                worker_id,
                code=code[:64],
                message=message,
                keep_audio=self._keep_audio,
            )

    def release_part(self, work: PartWork, worker_id: str) -> bool:
        """Hand a held part back to the queue without counting the attempt (a worker shutting down)."""
        with self._tx.write() as conn:
            return parts.release(conn, work.job.id, work.part.id, worker_id)

    # --- clients' side of a job ----------------------------------------------------------------
    def request_cancel(self, job_id: str) -> JobRecord:
        """Queued: cancelled at once. Processing: flagged for its worker. Final: ConflictError."""
        with self._tx.write() as conn:
            row = cancels.request_cancel(conn, job_id, keep_audio=self._keep_audio)
            return job_reads.record_with_webhook(conn, row)

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job and its audio; ConflictError while it is queued or processing."""
        with self._tx.write() as conn:
            retention.delete_finished(conn, job_id)

    def purge_finished_jobs(
        self,
        *,
        older_than_seconds: float,
        statuses: Iterable[JobStatus | str] | None = None,
        batch_size: int = PURGE_BATCH,
        max_batches: int | None = None,
    ) -> int:
        """Retention: delete finished jobs (with audio, results and deliveries) that ended longer ago than
        that; returns how many. ``statuses`` narrows it to some final statuses (InvalidInputError for any
        other: queued and processing jobs are never purged). One short transaction per ``batch_size``
        jobs, so writers wait for at most one batch; ``max_batches`` bounds one call (a sweeper's tick).
        A job whose webhook is still being delivered waits for the delivery to end.
        """
        if older_than_seconds < 0:
            raise InvalidInputError("the age to purge from must not be negative")
        chosen = (
            job_reads.FINAL
            if statuses is None
            else tuple(job_reads.final_status(status) for status in statuses)
        )
        removed = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            with self._tx.write() as conn:
                count = retention.purge_batch(
                    conn, older_than_seconds=older_than_seconds, statuses=chosen, batch_size=batch_size
                )
            removed += count
            batches += 1
            if count < batch_size:
                break
        return removed

    # --- corrections of a completed job's transcript (revisions) --------------------------------------
    def edit_transcript(
        self, job_id: str, base_revision: int, edits: Sequence[Edit], author: str | None = None
    ) -> JobRecord:
        """Apply ``edits`` (:func:`~cesar_common.transcript_edits.parse_edits`) to the transcript of a
        completed job at revision ``base_revision``, in one transaction: the job then holds the next revision
        (returned, with its segments), announced, with a ``transcript.revised`` webhook delivery when it has
        a callback URL, and the voices renamed with ``remember`` added to the voice library. NotFoundError
        for an unknown job; ConflictError for a job not completed, or whose transcript is no longer at
        ``base_revision`` (``extra["revision"]``: the one it is at); InvalidInputError naming an edit that
        does not fit."""
        wanted = [edit.revision for edit in edits if isinstance(edit, Restore)]
        with self._tx.write() as conn:
            job = revisions.editable(conn, job_id, base_revision)
            transcript = Transcript(job.segments or [], job.speakers)
            revised = apply_edits(transcript, edits, revisions.transcripts(conn, job, wanted))
            row = revisions.revise(conn, job, revised.transcript, [edit_json(edit) for edit in edits], author)
            if row is None:  # another edit of the same revision committed first
                current = revisions.revision_of(conn, job_id)
                if current is None:  # deleted meanwhile
                    raise job_reads.not_found(job_id)
                raise revisions.stale(job_id, base_revision, current)
            revisions.remember_voices(conn, job_id, revised.remember)
            return job_reads.record_with_webhook(conn, row)

    def transcript_revision(self, job_id: str, revision: int) -> RevisionRecord:
        """Revision ``revision`` of a completed job's transcript, whole (0: the machine's). NotFoundError
        for an unknown job or revision; ConflictError for a job not completed."""
        with self._tx.read() as conn:
            job = job_reads.get_visible(conn, job_id, with_segments=True)
            if job is None:
                raise job_reads.not_found(job_id)
            if job.status != JobStatus.COMPLETED.value:
                raise ConflictError(
                    f"job {job_id} is {job.status}: its transcript exists once it is completed",
                    extra={"status": job.status},
                )
            if job.revision == 0 and revision == 0:  # never edited: the machine's is the jobs row's
                return RevisionRecord(
                    job_id, 0, None, job.completed_at, None, job.result_text, job.segments, job.speakers
                )
            row = revisions.read(conn, job_id, revision) if revision <= job.revision else None
        if row is None:
            raise NotFoundError(
                f"job {job_id} has no revision {revision}: its latest is {job.revision}",
                extra={"revision": job.revision},
            )
        return revisions.record(row, whole=True)

    def list_revisions(self, job_id: str) -> list[RevisionRecord]:
        """Who edited a job's transcript, when and how: revision 0 (the machine's), then one per edit,
        oldest first, without their transcripts; none until the job is completed. NotFoundError for an
        unknown job."""
        with self._tx.read() as conn:
            job = job_reads.get_visible(conn, job_id)
            if job is None:
                raise job_reads.not_found(job_id)
            rows = revisions.read_all(conn, job_id)
        if rows:
            return [revisions.record(row) for row in rows]
        if job.status != JobStatus.COMPLETED.value:
            return []
        return [RevisionRecord(job_id, 0, None, job.completed_at, None)]

    # --- audio ---------------------------------------------------------------------------------
    def iter_audio(self, job_id: str) -> Iterator[bytes]:
        """The job's audio, chunk by chunk; a fresh short read transaction per few chunks.

        NotFoundError for unknown jobs and for audio already deleted (a finished job).
        """
        with self._tx.read() as conn:
            size = job_reads.uploaded_size(conn, job_id)
            stored = audio_chunks.has_chunks(conn, job_id)
        if not stored and size:
            raise NotFoundError(f"the audio of job {job_id} is no longer stored")
        return self._audio_chunks(job_id, size)

    def audio_snapshot(self, job_id: str) -> tuple[int, Iterator[bytes]]:
        """The job's audio stored now: its size in bytes, and its chunks read a few per short read
        transaction (what a live session receives meanwhile is not in them; ConflictError as they are
        read when the audio goes, the job ended or deleted). NotFoundError for an unknown job."""
        with self._tx.read() as conn:
            if job_reads.status_of(conn, job_id) in (None, JobStatus.PENDING.value):
                raise job_reads.not_found(job_id)
            chunks, size = audio_chunks.stored_extent(conn, job_id)
        return size, self._audio_chunks(job_id, size, chunks=chunks)

    def _audio_chunks(
        self, job_id: str, expected: int | None, *, chunks: int | None = None
    ) -> Iterator[bytes]:
        """The job's audio in order (its first ``chunks`` rows, or all), a few rows per short read; objects
        streamed from the object store. ConflictError when it is not ``expected`` bytes in all.

        Audio moved meanwhile (`cesar db move`: the database's rows become one object's row, or back) is
        read on from the same byte in its new place: the old rows' objects outlive the grace period.
        """
        next_seq = 0
        total = 0
        skip = 0  # bytes of the row at next_seq already read (audio found moved mid-read)
        while chunks is None or next_seq < chunks:
            if expected is not None and total >= expected and chunks is None:
                break
            batch = (
                audio_chunks.READ_BATCH if chunks is None else min(audio_chunks.READ_BATCH, chunks - next_seq)
            )
            with self._tx.read() as conn:
                rows = audio_chunks.read_chunks(conn, job_id, from_seq=next_seq, limit=batch)
            moved = not rows or rows[0].seq != next_seq
            if moved and expected is not None and chunks is None and 0 < total < expected:
                found = self._find_byte(job_id, total, expected)
                if found is not None:
                    next_seq, skip = found
                    continue
            for row in rows:
                if row.seq != next_seq:
                    raise ConflictError(f"the audio of job {job_id} changed while it was read")
                for piece in self._row_bytes(row, f"job {job_id}", offset=skip):
                    total += len(piece)
                    yield piece
                skip = 0
                next_seq += 1
            if not rows:
                break
            del rows
        if expected is not None and total != expected:
            raise ConflictError(f"the audio of job {job_id} changed while it was read")

    def _find_byte(self, job_id: str, offset: int, expected: int) -> tuple[int, int] | None:
        """The row holding byte ``offset`` of the job's audio, and how far into it: ``(seq, skip)``; None
        unless the job's audio is still ``expected`` bytes."""
        with self._tx.read() as conn:
            chunks = audio_chunks.layout(conn, job_id)
        if sum(size for _seq, size, _key in chunks) != expected:
            return None
        start = 0
        for seq, size, _key in chunks:
            if offset < start + size:
                return seq, offset - start
            start += size
        return None

    def _row_bytes(self, row: Any, whose: str, *, offset: int = 0) -> Iterator[bytes]:
        """An audio row's bytes from ``offset`` on: the row's own, or its object's."""
        stored = audio_chunks.stored_object(row)
        if stored is None:
            data = bytes(row.data)
            yield data[offset:] if offset else data
            return
        if self._blobs is None:
            raise ObjectStoreError(
                f"the audio of {whose} is in an object store ({stored.key}), and this process has no "
                "CESAR_BLOB_URL to read it from"
            )
        yield from self._blobs.read(stored, offset=offset)

    # --- audio in an object store: the sweep, and moves ------------------------------------------
    def sweep_objects(self, *, grace_seconds: float) -> int:
        """Delete the objects under Cesar's prefixes that no row names and that are older than
        ``grace_seconds`` by the database's clock (a job ended, deleted or retained away; a process that
        died between writing an object and its row), and abort multipart uploads left that long; how many
        objects went. An upload still arriving keeps its object (its job is pending). 0 without an object
        store."""
        blobs = self._blobs
        if blobs is None:
            return 0
        with self._tx.read() as conn:
            before = conn.execute(select(db_now(-grace_seconds))).scalar_one()
        deleted = 0
        for keys in blobs.old_keys(before):
            with self._tx.read() as conn:
                kept = audio_chunks.named_objects(conn, keys) | _pending_jobs_keys(conn, keys, blobs)
            doomed = [key for key in keys if key not in kept]
            if doomed:
                deleted += blobs.delete(doomed)
        blobs.abort_stale_uploads(before)
        return deleted

    def take_chore(self, name: str, *, every_seconds: float) -> bool:
        """Whether this worker does the fleet's chore ``name`` now (:mod:`~cesar_common.db.chores`)."""
        with self._tx.write() as conn:
            return chores.take(conn, name, every_seconds=every_seconds)

    def audio_to_move(self, *, to_objects: bool, after: str = "", limit: int = 100) -> list[str]:
        """Jobs (by id, after ``after``) whose audio is in the database (``to_objects``) or in the object
        store, and settled (no upload or live session still adding to it)."""
        with self._tx.read() as conn:
            return audio_chunks.movable(conn, to_objects=to_objects, after=after, limit=limit)

    def move_audio(self, job_id: str, *, to_objects: bool, scratch: BinaryIO | None = None) -> int | None:
        """Move a job's audio into the object store (one object) or into the database (rows of 1 MiB); the
        bytes moved, or None when there was nothing to move or it changed meanwhile (the job ended, was
        deleted): a later run finds what is left. Safe while workers read it: the rows are swapped in one
        transaction, a reader goes on from the same byte in the new place, and the objects left behind
        are the sweep's once no row names them. ``scratch``: a file the audio passes through on its way
        into the database (the swap then holds the write lock only for a local copy)."""
        if to_objects and self._blobs is None:
            raise InvalidInputError("there is no object store to move audio into: set CESAR_BLOB_URL")
        with self._tx.read() as conn:
            before = audio_chunks.layout(conn, job_id)
        if not before or all((key is not None) == to_objects for _seq, _size, key in before):
            return None
        size = sum(chunk_size for _seq, chunk_size, _key in before)
        try:
            if to_objects:
                assert self._blobs is not None
                key = self._blobs.new_key("uploads", job_id)
                stored = self._blobs.write(key, self._audio_chunks(job_id, size))
                with self._tx.write() as conn:
                    return size if audio_chunks.replace(conn, job_id, before, [stored]) else None
            assert scratch is not None
            scratch.seek(0)
            scratch.truncate()
            for piece in self._audio_chunks(job_id, size):
                scratch.write(piece)
            scratch.seek(0)
            with self._tx.write() as conn:
                moved = audio_chunks.replace(conn, job_id, before, audio_chunks.rechunk(scratch))
            return size if moved else None
        except (ConflictError, NotFoundError):
            return None  # the audio changed or went while it was copied

    def copy_audio_to(self, job_id: str, fileobj: BinaryIO) -> int:
        """Write the job's audio into ``fileobj``; the bytes written."""
        written = 0
        for chunk in self.iter_audio(job_id):
            fileobj.write(chunk)
            written += len(chunk)
        return written

    def audio_size(self, job_id: str) -> int:
        """Bytes of audio stored for the job (0 once deleted)."""
        with self._tx.read() as conn:
            if job_reads.status_of(conn, job_id) in (None, JobStatus.PENDING.value):
                raise job_reads.not_found(job_id)
            return audio_chunks.stored_bytes(conn, job_id)

    # --- API keys ------------------------------------------------------------------------------
    def create_key(self, name: str, **limits: Any) -> tuple[KeyRecord, str]:
        """A new key (ConflictError when the name is taken) and the key itself, shown this once."""
        with self._tx.write() as conn:
            return api_keys.create_key(conn, name, **limits)

    def list_keys(self) -> list[KeyRecord]:
        with self._tx.read() as conn:
            return api_keys.list_keys(conn)

    def get_key(self, name_or_id: str) -> KeyRecord:
        with self._tx.read() as conn:
            return api_keys.find_key(conn, name_or_id)

    def update_key(self, name_or_id: str, changes: dict[str, Any]) -> KeyRecord:
        with self._tx.write() as conn:
            return api_keys.update_key(conn, name_or_id, changes)

    def revoke_key(self, name_or_id: str, *, cancel_jobs: bool) -> tuple[KeyRecord, int]:
        """Revoke a key; with ``cancel_jobs`` its unfinished jobs are cancelled too (how many comes back)."""
        with self._tx.write() as conn:
            return api_keys.revoke_key(conn, name_or_id, cancel_jobs=cancel_jobs, keep_audio=self._keep_audio)

    def key_usage(self, owner: str) -> KeyUsage:
        with self._tx.read() as conn:
            return api_keys.usage(conn, owner)

    # --- worker presence -----------------------------------------------------------------------
    # --- the voice library ---------------------------------------------------------------------
    def list_speakers(self, owner: str | None = None) -> list[SpeakerRecord]:
        """The people ``owner`` enrolled (None: everyone's)."""
        with self._tx.read() as conn:
            return voice_library.list_people(conn, owner)

    def speaker_owner(self, speaker_id: str) -> str | None:
        """The key that enrolled the person (None: no such person)."""
        with self._tx.read() as conn:
            return voice_library.owner_of(conn, speaker_id)

    def get_speaker(self, speaker_id: str) -> SpeakerRecord:
        with self._tx.read() as conn:
            return voice_library.get(conn, speaker_id)

    def create_speaker(
        self, name: str, *, owner: str = "", job_id: str | None = None, label: str | None = None
    ) -> SpeakerRecord:
        """A new person in ``owner``'s library (ConflictError when the name is taken there), with the voice
        ``label`` of the finished diarized job ``job_id`` (of the same owner) when given."""
        with self._tx.write() as conn:
            person = voice_library.create(conn, name, owner)
            if job_id is not None and label is not None:
                voice_library.add_job_print(conn, person, job_id, label)
            return voice_library.get(conn, person)

    def add_voice_sample(
        self,
        speaker_id: str | None,
        name: str | None,
        new: NewJob,
        audio_source: AudioSource,
        *,
        max_bytes: int | None = None,
    ) -> tuple[SpeakerRecord, JobRecord]:
        """Queue the job that reads an audio sample of ``speaker_id`` (or of a new person ``name``); its
        print is pending until the job completes. A new person who ends up with no sample (the upload
        failed) is removed again."""
        made = None
        if speaker_id is None:
            assert name is not None
            with self._tx.write() as conn:
                speaker_id = made = voice_library.create(conn, name, new.owner)
        else:
            self.get_speaker(speaker_id)  # 404 before the upload is stored
        person = speaker_id
        try:
            job, _created = submissions.create_job(
                self._tx,
                new,
                audio_source,
                max_bytes=max_bytes,
                with_job=lambda conn, job_id: voice_library.add_sample(conn, person, job_id, new.filename),
                blobs=self._blobs,
            )
        except BaseException:
            if made is not None:
                with self._tx.write() as conn:
                    voice_library.delete_person(conn, made)
            raise
        return self.get_speaker(person), job

    def add_read_sample(
        self, name: str, vector: Sequence[float], seconds: float, filename: str | None
    ) -> SpeakerRecord:
        """A voice print read on this machine from an audio sample, for the person ``name`` (made if
        new)."""
        (data,) = voice_library.encode_voices({"": vector}).values()
        with self._tx.write() as conn:
            person = voice_library.id_of_name(conn, voice_library.check_name(name), "")
            person = person or voice_library.create(conn, name, "")
            voice_library.add_read_sample(conn, person, data, seconds, filename)
            return voice_library.get(conn, person)

    def update_speaker(
        self,
        speaker_id: str,
        *,
        name: str | None = None,
        add: Sequence[tuple[str, str]] = (),
        remove: Sequence[str] = (),
    ) -> SpeakerRecord:
        """Rename a person, add the voices ``(job id, label)`` of diarized jobs, remove voice prints by
        id: all in one transaction, or nothing."""
        with self._tx.write() as conn:
            if name is not None:
                voice_library.rename(conn, speaker_id, name)
            for job_id, label in add:
                voice_library.add_job_print(conn, speaker_id, job_id, label)
            for print_id in remove:
                voice_library.delete_print(conn, speaker_id, print_id)
            return voice_library.get(conn, speaker_id)

    def delete_speaker(self, speaker_id: str) -> None:
        """The person with every voice print of theirs (and the jobs that read their samples)."""
        with self._tx.write() as conn:
            voice_library.delete_person(conn, speaker_id)

    def voice_library_rows(
        self, owner: str, names: Sequence[str] | None = None
    ) -> list[tuple[str, str, bytes]]:
        """The ready voice prints of ``owner``'s library a diarized job of theirs is matched against,
        ``(person id, name, print)``, of the people ``names`` only when given (one query however large
        the library)."""
        with self._tx.read() as conn:
            return voice_library.library_rows(conn, owner, names)

    def register_worker(self, worker_id: str, *, host: str, pid: int) -> None:
        """Upsert the worker's presence row."""
        with self._tx.write() as conn:
            presence.upsert(conn, presence.new_values(worker_id, host=host, pid=pid))

    def heartbeat_worker(
        self,
        worker_id: str,
        *,
        current_job_id: str | None,
        models: list[str],
        memory: dict[str, Any] | None = None,
    ) -> None:
        """Refresh presence (``memory``: what its models take, JSON). A row removed meanwhile (the worker
        was paused too long) is recreated, with this process's host and pid: the heartbeat comes from the
        worker itself."""
        with self._tx.write() as conn:
            seen = presence.refresh(
                conn, worker_id, current_job_id=current_job_id, models=models, memory=memory
            )
            if not seen:
                values = presence.new_values(worker_id, host=socket.gethostname(), pid=os.getpid())
                presence.upsert(
                    conn,
                    {**values, "current_job_id": current_job_id, "models": list(models), "memory": memory},
                )

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx.write() as conn:
            presence.remove(conn, worker_id)

    def list_workers(self, *, alive_within_seconds: float) -> list[WorkerRecord]:
        with self._tx.read() as conn:
            return presence.seen_within(conn, alive_within_seconds)

    def remove_stale_workers(self, *, older_than_seconds: float) -> int:
        with self._tx.write() as conn:
            return presence.remove_unseen_for(conn, older_than_seconds)

    # --- webhook deliveries (the outbox) ---------------------------------------------------------
    def claim_delivery(
        self, worker_id: str, *, lease_seconds: float, max_attempts: int
    ) -> WebhookDeliveryRecord | None:
        """Take the delivery due longest (or one whose worker's lease expired); None when none is due.
        A delivery abandoned on its last allowed try fails instead of being taken again."""
        with self._tx.read() as conn:
            if not outbox.anything_to_claim(conn):
                return None
        with self._tx.write() as conn:
            return outbox.claim(conn, worker_id, lease_seconds=lease_seconds, max_attempts=max_attempts)

    def extend_delivery_lease(self, delivery_id: str, worker_id: str, *, lease_seconds: float) -> bool:
        """Keep a delivery while its try runs; False when another worker took it over."""
        with self._tx.write() as conn:
            return outbox.extend(conn, delivery_id, worker_id, lease_seconds=lease_seconds)

    def finish_delivery(self, delivery_id: str, worker_id: str, outcome: DeliveryOutcome) -> bool:
        """Record a try's outcome; False when ``worker_id`` no longer holds the delivery (its lease ran
        out and another worker took it: that worker's outcome counts)."""
        with self._tx.write() as conn:
            return outbox.finish(conn, delivery_id, worker_id, outcome)

    def get_delivery(self, delivery_id: str) -> WebhookDeliveryRecord:
        with self._tx.read() as conn:
            found = outbox.get(conn, delivery_id)
        if found is None:
            raise NotFoundError(f"no webhook delivery with id {delivery_id}")
        return found

    def list_deliveries(self, job_id: str) -> list[WebhookDeliveryRecord]:
        """Every delivery of a job, oldest first."""
        with self._tx.read() as conn:
            return outbox.for_job(conn, job_id)

    def redeliver_webhook(self, job_id: str) -> JobRecord:
        """Queue one more delivery of a final job's webhook; the job with its ``webhook`` as it now is.

        NotFoundError for an unknown job; ConflictError when it has no callback URL or is not final.
        """
        with self._tx.write() as conn:
            status = job_reads.status_of(conn, job_id, lock=True)
            row = None if status in (None, JobStatus.PENDING.value) else job_reads.get_visible(conn, job_id)
            if row is None:
                raise job_reads.not_found(job_id)
            if not row.callback_url:
                raise ConflictError(f"job {job_id} has no callback_url", extra={"status": row.status})
            if row.status not in job_reads.FINAL:
                raise ConflictError(
                    f"job {job_id} is {row.status}: its webhook is sent once it ends",
                    extra={"status": row.status},
                )
            outbox.redeliver(conn, job_id, row.callback_url)
            return job_reads.record_with_webhook(conn, row)

    # --- metrics ---------------------------------------------------------------------------------
    def metrics_snapshot(self, *, alive_within_seconds: float) -> MetricsSnapshot:
        """Everything ``GET /metrics`` reports, read in one transaction at scrape time."""
        with self._tx.read() as conn:
            by_status = job_reads.counts_by_status(conn)
            age = queue.oldest_queued_age(conn)
            alive = presence.seen_within(conn, alive_within_seconds)
            deliveries = outbox.count_by_state(conn)
            stored = totals.read(conn)
            sessions = live_sessions.open_sessions(conn)
        return MetricsSnapshot(
            jobs_by_status=by_status,
            oldest_queued_seconds=age,
            workers_alive=len(alive),
            deliveries_by_state=deliveries,
            totals=stored,
            live_sessions=sessions,
            workers=alive,
        )
