"""The worker loop on long jobs, with an engine that cuts and transcribes instantly (the real cut and Whisper
are in test_split_real.py): a part that fails fails its job with that part's error; a worker stopping hands
its part back uncounted; parts merge into one transcript on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from worker_support import wait_for

from cesar_common.db.records import (
    JobRecord,
    JobResult,
    JobSource,
    JobStatus,
    NewJob,
    TranscribeOptions,
)
from cesar_common.db.store import JobStore
from cesar_common.errors import AudioDecodeError
from cesar_common.settings import Settings
from cesar_common.transcription.audio import SAMPLE_RATE
from cesar_common.transcription.cuts import Span, SplitPlan
from cesar_worker.jobrun import JobStopped, StopReason
from cesar_worker.worker import run_worker

PART_SECONDS = 2.0


class SplittingEngine:
    """Cuts every file into three 2 s parts of silence whose first sample says which part it is; the prompt
    says what a part does: ``fail:N`` fails part N (from 1), ``hold:N`` holds part N until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.transcribed: list[int] = []

    def preload(self, model: str) -> None:
        pass

    def loaded_models(self) -> list[str]:
        return ["splitting"]

    def close(self) -> None:
        pass

    def plan_parts(self, job: JobRecord, audio_path: Path, **_: Any) -> SplitPlan:
        samples = np.zeros(round(3 * PART_SECONDS * SAMPLE_RATE), dtype=np.float32)
        for seq in range(3):
            samples[round(seq * PART_SECONDS * SAMPLE_RATE)] = (seq + 1) / 100
        plans = [Span(seq * PART_SECONDS, (seq + 1) * PART_SECONDS) for seq in range(3)]
        return SplitPlan(plans, samples, "en", 0.75)

    def transcribe(
        self, job: JobRecord, audio_path: Path, *, on_progress: Any, on_segment: Any, should_stop: Any
    ) -> JobResult:
        first = int.from_bytes(audio_path.read_bytes()[44:46], "little", signed=True)
        seq = round(first / 32768 * 100) - 1
        self.transcribed.append(seq)
        command, _, which = (job.options.initial_prompt or "").partition(":")
        if command == "fail" and int(which) == seq + 1:
            raise AudioDecodeError("fake: this part does not decode")
        if command == "hold" and int(which) == seq + 1:
            while not should_stop():
                on_progress(0.5, PART_SECONDS)
                threading.Event().wait(0.02)
            raise JobStopped(StopReason.SHUTDOWN)
        assert job.options.language == "en"  # the language chosen for the whole file
        segment = {"id": 0, "start": 0.5, "end": 1.5, "text": f"part{seq + 1}"}
        return JobResult(
            text=segment["text"], language="en", language_probability=1.0, duration=2.0, segments=[segment]
        )


def submit(store: JobStore, prompt: str | None = None) -> JobRecord:
    options = TranscribeOptions(model="tiny.en", initial_prompt=prompt)
    return store.create_job(NewJob(source=JobSource.UPLOAD, options=options, filename="a.wav"), b"RIFF")


def settings(db_url: str) -> Settings:
    return Settings(
        database_url=db_url, split_seconds=PART_SECONDS, lease_seconds=5, shutdown_grace_seconds=0
    )


def test_parts_merge_into_one_transcript(db_url: str) -> None:
    store = JobStore.from_url(db_url)
    try:
        job = submit(store)
        run_worker(settings(db_url), once=True, worker_id="w", transcriber_factory=SplittingEngine)
        done = store.get_job(job.id, with_segments=True)
        assert done.status is JobStatus.COMPLETED and done.result_text == "part1 part2 part3"
        assert [(s["id"], s["start"]) for s in done.segments or []] == [(0, 0.5), (1, 2.5), (2, 4.5)]
        assert done.language_probability == 0.75 and done.duration == 6.0
        assert done.decoding is None  # this engine says nothing of how it decoded
    finally:
        store.close()


def test_a_part_that_fails_fails_the_job_with_its_error(db_url: str) -> None:
    store = JobStore.from_url(db_url)
    try:
        job = submit(store, "fail:2")
        run_worker(settings(db_url), once=True, worker_id="w", transcriber_factory=SplittingEngine)
        failed = store.get_job(job.id)
        assert failed.status is JobStatus.ERROR and failed.error_code == "decode_failed"
        assert failed.error_message == "part 2 of 3 (0:02-0:04): fake: this part does not decode"
        assert store.claim_work("next", lease_seconds=5) is None  # part 3 went with the job
    finally:
        store.close()


def test_a_worker_stopping_hands_its_part_back_uncounted(db_url: str) -> None:
    store = JobStore.from_url(db_url)
    stop = threading.Event()
    try:
        job = submit(store, "hold:1")
        thread = threading.Thread(
            target=run_worker,
            args=(settings(db_url),),
            kwargs={"worker_id": "w", "stop_event": stop, "transcriber_factory": SplittingEngine},
        )
        thread.start()
        wait_for(store, job.id, lambda record: record.progress > 0, what="part 1 to run")
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        work = store.claim_work("next", lease_seconds=5)
        assert work is not None and not isinstance(work, JobRecord)
        assert (work.part.seq, work.part.attempts) == (0, 1)  # handed back: the attempt did not count
        assert store.get_job(job.id).status is JobStatus.PROCESSING
    finally:
        stop.set()
        store.close()
