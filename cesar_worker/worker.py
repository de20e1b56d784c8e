"""The worker loop: claim the oldest queued job, run it, write the outcome, repeat.

One file job at a time per process (live sessions run beside it: :mod:`cesar_worker.live_runner`). Every
job ends in exactly one of: completed, error (with a readable message and a code), cancelled, handed back
(shutdown), or abandoned (the lease was lost, so another worker owns it). Nothing a job does stops the
loop; only a stop signal (or ``once`` with an empty queue) does.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from cesar_common.blob_store import open_blob_store
from cesar_common.db.connect import open_engine
from cesar_common.db.feed import ChangeFeed, WorkSignal
from cesar_common.db.migrate import ensure_schema_current
from cesar_common.db.records import JobRecord, JobSource, PartPlan, PartWork
from cesar_common.db.store import JobStore, LeaseLostError
from cesar_common.errors import (
    AudioDecodeError,
    CesarError,
    DatabaseError,
    InvalidInputError,
    ModelNotAllowedError,
    ObjectStoreError,
)
from cesar_common.settings import Settings
from cesar_common.signals import stop_on_signals
from cesar_common.text import is_plain_token, plain_number
from cesar_common.transcription.audio import wav_header
from cesar_worker import part_results, speaker_names
from cesar_worker.download import DownloadStopped, download
from cesar_worker.heartbeat import Heartbeat, Housekeeping
from cesar_worker.jobrun import TEMP_PREFIX, JobRun, JobStopped, StopReason
from cesar_worker.live_runner import LiveSlots
from cesar_worker.transcriber import ReportsMemory, Transcriber, TranscriberFactory, WhisperTranscriber
from cesar_worker.webhook_sender import DeliveryLoop

if TYPE_CHECKING:
    from cesar_common.transcription.cuts import SplitPlan

__all__ = ["Worker", "quiet_library_logs", "remove_orphaned_temp_dirs", "run_process", "run_worker"]

log = logging.getLogger("cesar.worker")

POLL_MIN_SECONDS = 0.05
WORKER_ID_MAX = 255  # the workers.id and jobs.worker_id columns
#: a pid has at most 7 digits (Linux keeps them below 2**22); a longer "pid" in a name is no worker's
PID_DIGITS = 7
_BAD = frozenset({"error", "abandoned", "left to its lease"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def quiet_library_logs(level: str) -> None:
    """Alembic, faster-whisper and httpx (each webhook POST) log at INFO on every start, job and request;
    the worker logs one line per job and per webhook try."""
    if level != "debug":
        for name in ("alembic", "faster_whisper", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_process(
    settings: Settings, *, once: bool = False, worker_id: str | None = None, preload: bool = False
) -> int:
    """A worker process, as ``cesar worker`` and ``python -m cesar_worker`` run it: logging set up, a
    watch on the supervisor when ``cesar serve`` started it, then :func:`run_worker`."""
    from cesar_common.logs import configure_logging
    from cesar_common.parentwatch import watch_parent

    configure_logging(settings.log_level, name="worker")
    quiet_library_logs(settings.log_level)
    watch_parent()  # under `cesar serve`: a SIGTERM to ourselves if the supervisor dies
    return run_worker(settings, once=once, worker_id=worker_id, preload=preload)


def run_worker(
    settings: Settings,
    *,
    once: bool = False,
    worker_id: str | None = None,
    preload: bool = False,
    stop_event: threading.Event | None = None,
    transcriber_factory: TranscriberFactory | None = None,
) -> int:
    """Run a worker until stopped (SIGTERM/SIGINT, or ``stop_event``); return the exit status (0).

    ``once``: process what is queued, then return.
    ``preload``: load ``settings.model`` before the first claim.
    ``stop_event``: when given, the caller owns signal handling; otherwise SIGTERM and SIGINT set a new one.
    ``transcriber_factory``: what transcribes instead of faster-whisper (tests, benchmarks).
    """
    if stop_event is None:
        with stop_on_signals() as event:
            return run_worker(
                settings,
                once=once,
                worker_id=worker_id,
                preload=preload,
                stop_event=event,
                transcriber_factory=transcriber_factory,
            )
    # the process's one engine and one change feed: the store, the schema check and the wake-ups use them
    engine = open_engine(settings.database_url, **settings.engine_options)
    blobs = open_blob_store(settings)  # and its one object store, when audio is kept in one
    feed = ChangeFeed(engine, listen_url=settings.database_listen_url)
    try:
        ensure_schema_current(engine)
        if blobs is not None:
            blobs.check(write=True)  # before any claim: wrong credentials are said once, here
        worker = Worker(
            settings,
            JobStore(engine, keep_audio=settings.keep_audio, blobs=blobs),
            (transcriber_factory or WhisperTranscriber)(settings),
            worker_id=worker_id or default_worker_id(),
            stop_event=stop_event,
            feed=feed,
        )
        worker.run(once=once, preload=preload)
    finally:
        feed.close()
        engine.dispose()
        if blobs is not None:
            blobs.close()
    return 0


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # completed | error | cancelled | handed back | abandoned | left to its lease
    audio_seconds: float | None = None
    detail: str = ""


class Worker:
    """One worker's state: its store, transcriber, heartbeat thread and wake-up source. A process may run
    several (threads), sharing one store and one change feed."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        transcriber: Transcriber,
        *,
        worker_id: str,
        stop_event: threading.Event,
        feed: ChangeFeed | None = None,
    ) -> None:
        """``feed``: the process's change feed (default: one of this worker's own, closed with it)."""
        if not is_plain_token(worker_id, max_length=WORKER_ID_MAX):
            raise InvalidInputError(
                f"a worker id is 1 to {WORKER_ID_MAX} printable ASCII characters without spaces, "
                f"not {worker_id[:40]!r}{'...' if len(worker_id) > 40 else ''}"
            )
        self.settings = settings
        self.store = store
        self.transcriber = transcriber
        self.worker_id = worker_id
        self.stop_event = stop_event
        # an idle worker wakes as work arrives: LISTEN on PostgreSQL, PRAGMA data_version on SQLite
        self._own_feed = feed is None
        self.feed = feed or ChangeFeed(store.engine, listen_url=settings.database_listen_url)
        self.waiter = WorkSignal(self.feed, stop_event=stop_event)
        self.heartbeat = Heartbeat(store, settings, worker_id, stop_event=stop_event)
        self.housekeeping = Housekeeping(
            store,
            settings,
            worker_id,
            current=lambda: self.heartbeat.current_job_id,
            models=transcriber.loaded_models,
            memory=transcriber.memory_report if isinstance(transcriber, ReportsMemory) else None,
        )
        # webhooks go out from a thread of their own: a receiver that hangs never holds up a job
        self.deliveries = DeliveryLoop(store, settings, worker_id)
        # live sessions run on threads of their own too: they never wait behind the file work
        self.live = LiveSlots(
            settings, store, transcriber, worker_id=worker_id, stop_event=stop_event, feed=self.feed
        )
        self.jobs_done = 0
        self._objects_away = False

    # --- lifecycle -----------------------------------------------------------------------------
    def run(self, *, once: bool = False, preload: bool = False) -> None:
        remove_orphaned_temp_dirs()
        self.store.register_worker(self.worker_id, host=socket.gethostname(), pid=os.getpid())
        try:
            # sweep before the first claim, so `--once` also picks up jobs whose worker died
            self.housekeeping.sweep()
            self.heartbeat.start()
            self.housekeeping.start()
            self.deliveries.start()
            if preload:
                self.transcriber.preload(self.settings.model)
            if not once:
                self.live.start()
            log.info("worker %s ready", self.worker_id)
            self.loop(once=once)
            if once:  # send the webhooks of the jobs just done before exiting
                self.deliveries.flush()
        finally:
            self.live.close()
            self.deliveries.close()
            self.heartbeat.close()
            self.housekeeping.close()
            self.waiter.close()
            if self._own_feed:
                self.feed.close()
            try:
                self.store.unregister_worker(self.worker_id)
            except CesarError as exc:
                log.warning("could not remove this worker's presence row: %s", exc)
            self.transcriber.close()
        log.info("worker %s stopped after %d jobs", self.worker_id, self.jobs_done)

    def loop(self, *, once: bool = False) -> None:
        delay = POLL_MIN_SECONDS
        # on PostgreSQL a wake-up means work was queued, and every idle worker of the fleet gets it: one
        # wins the claim. A worker that answered one and lost sits out its pause without listening (the
        # pause grows while it keeps losing; the claim after it still polls), so claims stay near one per
        # job instead of one per idle worker per job (bench/fleet_sim.py). On SQLite a wake-up means the
        # feed saw work waiting after a commit: one host's few workers, no herd to damp.
        sits_out = self.store.engine.dialect.name == "postgresql"
        answered_wake = False
        while not self.stop_event.is_set():
            try:
                job = self.store.claim_work(self.worker_id, lease_seconds=self.settings.lease_seconds)
            except CesarError as exc:  # the database is away: keep trying, slower
                log.warning("could not claim a job: %s", exc)
                delay = min(delay * 2, self.settings.poll_max_seconds)
                self.stop_event.wait(delay)
                continue
            if job is None:
                if once:
                    return
                if answered_wake and sits_out:
                    answered_wake = False
                    delay = min(delay * 2, self.settings.poll_max_seconds)
                    self.stop_event.wait(delay)
                    continue
                answered_wake = self.waiter.wait(delay)
                if not answered_wake or not sits_out:
                    delay = (
                        POLL_MIN_SECONDS if answered_wake else min(delay * 2, self.settings.poll_max_seconds)
                    )
                continue
            delay, answered_wake = POLL_MIN_SECONDS, False
            if self.stop_event.is_set():  # the signal came during the claim: hand the job straight back
                run = self._run_of(job)
                try:
                    self._give_back(run)
                except CesarError as exc:  # its lease will run out instead
                    log.warning("%s: could not hand it back: %s", run.name, exc)
                return
            self.process(job)
            if self._objects_away:
                self._wait_for_objects()

    # --- one job -------------------------------------------------------------------------------
    def _run_of(self, work: JobRecord | PartWork) -> JobRun:
        job, part = (work.job, work) if isinstance(work, PartWork) else (work, None)
        return JobRun(
            job, part=part, shutdown=self.stop_event, grace_seconds=self.settings.shutdown_grace_seconds
        )

    def process(self, work: JobRecord | PartWork) -> Outcome:
        """Run a claimed job, or a claimed part of a long job, to one of its ends."""
        run = self._run_of(work)
        self.heartbeat.begin(run)
        self.housekeeping.show_soon()
        try:
            outcome = self._execute(run)
        finally:
            self.heartbeat.end()
            self.housekeeping.show_soon()
            self.deliveries.wake()
        self.jobs_done += 1
        self._log(run, outcome)
        return outcome

    def _execute(self, run: JobRun) -> Outcome:
        job = run.job
        try:
            if job.model not in self.settings.allowed_models:
                raise ModelNotAllowedError(
                    f"model '{job.model}' is not allowed on this server (CESAR_MODELS lists the allowed ones)"
                )
            if run.part is not None:
                return self._execute_part(run, run.part)
            if job.source is JobSource.SAMPLE:
                return self._read_sample(run)
            with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
                audio_path = Path(tmp) / _local_name(job)
                self._fetch_audio(run, audio_path)
                run.raise_if_stopped()
                # spans to transcribe are seconds into the whole file: such a job is transcribed whole
                if self.settings.split_seconds > 0 and not job.options.decoding_options.clip_timestamps:
                    plan = self.transcriber.plan_parts(
                        job,
                        audio_path,
                        split_seconds=self.settings.split_seconds,
                        should_stop=run.should_stop,
                    )
                    if plan is not None:
                        return self._split(run, plan)
                result = self.transcriber.transcribe(
                    job,
                    audio_path,
                    on_progress=run.on_progress,
                    on_segment=run.on_segment,
                    should_stop=run.should_stop,
                )
            result = speaker_names.named(self.store, job, result)
            run.finish()
            if self.store.complete_job(job.id, self.worker_id, result):
                return Outcome("completed", result.duration)
            return Outcome("abandoned", result.duration, "the job was no longer ours when it finished")
        except LeaseLostError:
            return Outcome("abandoned", detail="lease lost")
        except (JobStopped, DownloadStopped) as exc:
            return self._stopped(run, exc)
        except ObjectStoreError as exc:
            # the object store is away, not the job's fault: hand the attempt back uncounted, and claim
            # again once the store answers
            log.error("%s: %s", run.name, exc.describe())
            self._objects_away = True
            return self._hand_back(run, f"object store unavailable: {exc}")
        except DatabaseError as exc:
            # the database is away, not the job's fault: its lease runs out and a worker tries again
            # (bounded by max_attempts). A statement the database refused is a bug: it fails the job below.
            log.error("job %s: %s", job.id, exc.describe())
            return Outcome("left to its lease", detail=exc.describe())
        except CesarError as exc:
            return self._fail(run, exc.code, str(exc))
        except Exception as exc:
            log.exception("%s: unexpected error", run.name)
            return self._fail(run, "internal_error", f"internal error: {type(exc).__name__}: {exc}")

    def _read_sample(self, run: JobRun) -> Outcome:
        """A voice sample for the library: its voice print, no transcript."""
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
            audio_path = Path(tmp) / _local_name(run.job)
            self._fetch_audio(run, audio_path)
            run.raise_if_stopped()
            voice = speaker_names.read_sample(
                audio_path,
                max_seconds=min(self.settings.max_audio_seconds, speaker_names.MAX_SAMPLE_SECONDS),
                should_stop=run.should_stop,
            )
        run.finish()
        if self.store.complete_sample(run.job_id, self.worker_id, voice.vector, voice.seconds):
            return Outcome("completed", voice.seconds, "a voice sample")
        return Outcome("abandoned", voice.seconds, "the job was no longer ours when it finished")

    # --- long jobs: cut into parts, and one part ------------------------------------------------
    def _split(self, run: JobRun, plan: SplitPlan) -> Outcome:
        """Store each part's audio, then queue the parts and let go of the job: every idle worker (this
        one too, next) takes a part."""
        for seq in range(len(plan.parts)):
            run.raise_if_stopped()
            self.store.store_part_audio(
                run.job_id, self.worker_id, seq, plan.pcm(seq), lease_seconds=self.settings.lease_seconds
            )
        run.raise_if_stopped()
        run.finish()
        split = self.store.split_job(
            run.job_id,
            self.worker_id,
            [PartPlan(span.start, span.end) for span in plan.parts],
            language=plan.language,
            language_probability=plan.language_probability,
        )
        duration = plan.parts[-1].end
        if not split:
            return Outcome("abandoned", duration, "cancelled or no longer ours when cut into parts")
        return Outcome("split", duration, f"into {len(plan.parts)} parts")

    def _execute_part(self, run: JobRun, work: PartWork) -> Outcome:
        job, part = work.job, work.part
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
            audio_path = Path(tmp) / "part.wav"
            self._fetch_part_audio(work, audio_path)
            run.raise_if_stopped()
            result = self.transcriber.transcribe(
                dataclasses.replace(
                    job, options=part_results.part_options(job.options, job.detected_language)
                ),
                audio_path,
                on_progress=run.on_progress,
                on_segment=_ignore,  # a part's segments are published in the file's order once it is done
                should_stop=run.should_stop,
            )
        stored = part_results.part_result(
            result, offset=part.start, language_probability=job.language_probability
        )
        run.finish()
        merge = functools.partial(
            part_results.merge_parts,
            num_speakers=job.options.num_speakers,
            min_speakers=job.options.min_speakers,
            max_speakers=job.options.max_speakers,
            library=speaker_names.library_for(self.store, job.options, job.owner),
        )
        done = self.store.complete_part(work, self.worker_id, stored, merge)
        if done is None:
            return Outcome("abandoned", part.duration, "the part was no longer ours, or its job ended")
        return Outcome("completed" if done == "job" else "done", part.duration)

    def _fetch_part_audio(self, work: PartWork, path: Path) -> None:
        with path.open("wb") as out:
            out.write(wav_header(0))
            size = 0
            for chunk in self.store.iter_part_audio(work.part.id):
                out.write(chunk)
                size += len(chunk)
            out.seek(0)
            out.write(wav_header(size))
        if size == 0:
            raise AudioDecodeError(f"the audio of part {work.part.seq + 1} is no longer stored")

    # --- how a run ends ------------------------------------------------------------------------
    def _hand_back(self, run: JobRun, why: str) -> Outcome:
        run.finish()
        try:
            self._give_back(run)
        except CesarError as err:
            return Outcome("left to its lease", detail=f"{why}; could not hand it back: {err}")
        return Outcome("handed back", detail=why)

    def _wait_for_objects(self) -> None:
        """After a job was handed back for the object store: wait (stop-aware, backing off) until it
        answers again, so this worker does not claim and hand back in a loop."""
        blobs = self.store.blobs
        delay = POLL_MIN_SECONDS
        if blobs is None:  # audio in an object store this worker was not told of: another worker may be
            self.stop_event.wait(self.settings.poll_max_seconds)
        while blobs is not None and not self.stop_event.is_set():
            try:
                blobs.check()
            except ObjectStoreError:
                delay = min(delay * 2, self.settings.poll_max_seconds)
                self.stop_event.wait(delay)
                continue
            log.info("the object store answers again")
            break
        self._objects_away = False

    def _give_back(self, run: JobRun) -> None:
        if run.part is not None:
            self.store.release_part(run.part, self.worker_id)
        else:
            self.store.release_job(run.job_id, self.worker_id)

    def _fetch_audio(self, run: JobRun, path: Path) -> None:
        job = run.job
        with path.open("wb") as out:
            if job.source == JobSource.URL:
                if not job.source_url:
                    raise AudioDecodeError("the job has no URL to download")
                download(
                    job.source_url,
                    out,
                    max_bytes=self.settings.max_upload_bytes,
                    allow_private=self.settings.allow_private_urls,
                    allowed=self.settings.allow_private_networks,
                    deadline_seconds=self.settings.download_timeout_seconds,
                    should_stop=run.should_stop,
                )
            elif self.store.copy_audio_to(job.id, out) == 0:
                raise AudioDecodeError("the uploaded file is empty (0 bytes)")

    def _stopped(self, run: JobRun, exc: Exception) -> Outcome:
        reason = run.stop_reason or getattr(exc, "reason", StopReason.CANCELLED)
        if reason != StopReason.LEASE_LOST:
            run.finish()
        try:
            if reason == StopReason.CANCELLED:
                if run.part is None:
                    self.store.cancel_running(run.job_id, self.worker_id)
                    return Outcome("cancelled")
                return Outcome("cancelled", detail="its job ended")  # the job's end dropped the part
            if reason == StopReason.SHUTDOWN:
                self._give_back(run)
                return Outcome("handed back", detail="shutting down")
        except CesarError as err:
            log.error("%s: could not record that it stopped (%s): %s", run.name, reason, err)
            return Outcome("left to its lease", detail=str(err))
        return Outcome("abandoned", detail="lease lost")

    def _fail(self, run: JobRun, code: str, message: str) -> Outcome:
        if run.stop_reason == StopReason.LEASE_LOST:
            return Outcome("abandoned", detail=f"lease lost ({message})")
        run.finish()
        try:
            if run.part is not None:
                part = run.part.part
                where = f"{_clock(part.start)}-{_clock(part.end)}"
                message = f"part {part.seq + 1} of {part.count} ({where}): {message}"
                self.store.fail_part(run.part, self.worker_id, code=code, message=message)
            else:
                self.store.fail_job(run.job_id, self.worker_id, code=code, message=message)
        except CesarError as exc:
            log.error("%s: could not record its error: %s", run.name, exc)
        return Outcome("error", detail=f"{code}: {message}")

    def _log(self, run: JobRun, outcome: Outcome) -> None:
        wall = time.monotonic() - run.started
        parts = [f"{run.name} {outcome.status}", f"model={run.job.model}"]
        if outcome.audio_seconds:
            parts.append(f"audio={outcome.audio_seconds:.1f}s")
        parts.append(f"wall={wall:.2f}s")
        if outcome.audio_seconds and wall > 0:
            parts.append(f"speed={outcome.audio_seconds / wall:.1f}x")
        if outcome.detail:
            parts.append(f"({outcome.detail})")
        log.log(logging.WARNING if outcome.status in _BAD else logging.INFO, " ".join(parts))


def remove_orphaned_temp_dirs(directory: Path | None = None) -> int:
    """Delete job directories left in the temp directory by workers that were killed; returns how many."""
    removed = 0
    for path in Path(directory or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = plain_number(path.name[len(TEMP_PREFIX) :].split("-", 1)[0], max_digits=PID_DIGITS)
        if pid is not None and not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _ignore(segment: dict[str, Any]) -> None:
    pass


def _clock(seconds: float) -> str:
    """``seconds`` as m:ss (h:mm:ss past an hour), as people name a place in a recording."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _local_name(job: JobRecord) -> str:
    """A safe file name close to the original: error messages name it, and its extension helps the demuxer."""
    original = job.filename or (unquote(urlsplit(job.source_url).path) if job.source_url else "")
    name = _UNSAFE.sub("_", PurePosixPath(original.replace("\\", "/")).name).strip("._")[-100:]
    return name or "audio"
