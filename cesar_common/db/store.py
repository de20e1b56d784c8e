"""The job store: the one layer through which the API and the workers touch the database.

All SQL lives here. Rows leave as frozen records (``cesar_common.db.records``), never as ORM objects.
SQLAlchemy errors are wrapped in ``DatabaseError`` where they enter (``__cause__`` kept).

CONTRACT (implemented in this module; the API and the worker rely on exactly these signatures):

    store = JobStore(engine)                       # engine from cesar_common.db.engine.make_engine
    store = JobStore.from_url(url)

    create_job(new: NewJob, audio: Iterable[bytes] | BinaryIO | None, *, max_bytes: int | None = None) -> JobRecord
        Inserts the job as `pending`, streams audio into job_audio in ~1 MiB chunks (several commits,
        never the whole file in memory), then flips it to `queued` in one UPDATE. Over max_bytes:
        deletes what was written and raises PayloadTooLargeError. Any failure while reading the
        stream deletes the pending job and re-raises. URL jobs pass audio=None and go straight to queued.
    get_job(job_id) -> JobRecord                    NotFoundError for unknown ids and `pending` jobs.
    list_jobs(*, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None) -> JobPage
        newest first (created_at DESC, id DESC), keyset pagination, opaque cursor (InvalidInputError if bad).
    queue_position(job: JobRecord) -> int | None    1-based rank among queued jobs (None unless queued).
    claim_job(worker_id, *, lease_seconds) -> JobRecord | None
        one atomic statement: oldest queued -> processing, attempts+1, started_at, worker_id, lease.
    extend_lease(job_id, worker_id, *, lease_seconds) -> bool     False when the lease was lost.
    report_progress(job_id, worker_id, progress: float) -> bool  fenced; returns cancel_requested
        (raises LeaseLostError(ConflictError) if the job is no longer held by worker_id).
    is_cancel_requested(job_id) -> bool
    complete_job(job_id, worker_id, result: JobResult) -> bool    fenced (status processing + worker_id)
    fail_job(job_id, worker_id, *, code: str, message: str) -> bool fenced
    cancel_running(job_id, worker_id) -> bool                     fenced: processing -> cancelled
    release_job(job_id, worker_id) -> bool       hand back to queued, attempt not counted (attempts-1)
    request_cancel(job_id) -> JobRecord
        queued -> cancelled at once; processing -> cancel_requested=True; final -> ConflictError.
    sweep_expired_leases(*, now: datetime | None = None) -> SweepResult
        processing jobs whose lease expired: back to queued if attempts < max_attempts, else error
        with error_code "worker_lost" and message "worker lost N times".
    purge_stale_uploads(*, older_than_seconds: float) -> int   delete `pending` jobs left by dead uploads.
    delete_job(job_id) -> None                   final jobs only (ConflictError otherwise), with audio.
    iter_audio(job_id) -> Iterator[bytes]        streams chunks in order (a fresh session per chunk batch).
    copy_audio_to(job_id, fileobj: BinaryIO) -> int   bytes written.
    audio_size(job_id) -> int
    register_worker(worker_id, *, host, pid) -> None      upsert presence row
    heartbeat_worker(worker_id, *, current_job_id: str | None, models: list[str]) -> None
    unregister_worker(worker_id) -> None
    list_workers(*, alive_within_seconds: float) -> list[WorkerRecord]
    remove_stale_workers(*, older_than_seconds: float) -> int
    queue_counts() -> QueueCounts
    ping() -> None                               DatabaseError when unreachable
    notify_new_job() / listen support: see cesar_common.db.notify (PostgreSQL LISTEN/NOTIFY)
"""

from __future__ import annotations
