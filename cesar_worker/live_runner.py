"""Live sessions in a worker: threads of their own (``CESAR_LIVE_SESSIONS``), beside the file work.

Each slot claims the oldest queued session (:meth:`JobStore.claim_live`; file jobs are never taken here, so a
session never waits behind them) and runs it: it reads the audio chunks the API stored since its last look,
decodes them (:mod:`cesar_common.transcription.live_audio`), and every ``CESAR_LIVE_STEP_SECONDS`` of new
audio decodes the growing buffer and confirms what two passes agree on
(:class:`~cesar_common.transcription.streaming.LocalAgreement`).
Confirmed segments and the words not confirmed yet go to the database with the lease, in one fenced write
(:meth:`JobStore.report_live`); the API relays them to the client.

The audio is over when the client said ``stop``, or no audio came for ``CESAR_LIVE_IDLE_SECONDS`` (by the
database's clock), or ``CESAR_LIVE_MAX_SECONDS`` of it arrived: the rest is decoded, every word confirmed,
and the job completes with its transcript (the confirmed segments joined into sentences). A worker that is
lost leaves the session to its lease: the sweep puts it back in the queue with its confirmed segments, and
the next slot to claim it decodes the stored audio after them. A worker that shuts down hands it back.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cesar_common.db.feed import ChangeFeed, WorkSignal
from cesar_common.db.records import JobRecord, JobResult, LiveEnd, LiveState
from cesar_common.db.store import JobStore, LeaseLostError
from cesar_common.errors import CesarError, DatabaseError, ModelNotAllowedError, ObjectStoreError
from cesar_common.settings import Settings
from cesar_common.transcription.audio import SAMPLE_RATE, wav_header
from cesar_worker import speaker_names
from cesar_worker.jobrun import TEMP_PREFIX, JobStopped, StopReason
from cesar_worker.live_turns import Turns

if TYPE_CHECKING:
    import numpy as np

    from cesar_common.transcription.live_audio import AudioStream
    from cesar_common.transcription.streaming import DecodeWords, LocalAgreement, StreamUpdate
    from cesar_worker.live_stream_url import StreamFollower
    from cesar_worker.transcriber import LiveDecoder, Transcriber

__all__ = ["LiveRun", "LiveSlots"]

log = logging.getLogger("cesar.worker.live")

#: how often a session looks for new audio while it waits for enough to decode
LOOK_SECONDS = 0.1
#: audio a multilingual model listens to before the session's language is decided
LANGUAGE_SECONDS = 3.0
POLL_MIN_SECONDS = 0.05


class LiveSlots:
    """A worker's live-session threads."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        transcriber: Transcriber,
        *,
        worker_id: str,
        stop_event: threading.Event,
        feed: ChangeFeed,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transcriber = transcriber
        self.worker_id = worker_id
        self.stop_event = stop_event
        self.feed = feed
        self._threads: list[threading.Thread] = []
        self.sessions_done = 0

    def start(self) -> None:
        for slot in range(self.settings.live_sessions):
            thread = threading.Thread(target=self._loop, name=f"cesar-live-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout: float | None = None) -> None:
        """Stop the slots (the worker is ending: its stop event is set) and wait for them; a session
        running is handed back to the queue."""
        if self._threads:
            self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _loop(self) -> None:
        delay = POLL_MIN_SECONDS
        with WorkSignal(self.feed, stop_event=self.stop_event) as waiter:
            while not self.stop_event.is_set():
                try:
                    job = self.store.claim_live(self.worker_id, lease_seconds=self.settings.lease_seconds)
                except CesarError as exc:
                    log.warning("could not claim a live session: %s", exc)
                    job = None
                if job is None:
                    woken = waiter.wait(delay)
                    delay = POLL_MIN_SECONDS if woken else min(delay * 2, self.settings.poll_max_seconds)
                    continue
                delay = POLL_MIN_SECONDS
                LiveRun(self, job).run()
                self.sessions_done += 1


@dataclass
class _Pending:
    """What the next report writes."""

    segments: list[dict[str, Any]] = field(default_factory=list)
    tentative: str = ""
    tentative_start: float | None = None
    changed: bool = False


class LiveRun:
    """One claimed live session, run to its end on one slot's thread."""

    def __init__(self, slots: LiveSlots, job: JobRecord) -> None:
        self.slots = slots
        self.store = slots.store
        self.settings = slots.settings
        self.job = job
        self.worker_id = slots.worker_id
        self.started = time.monotonic()
        self._last_report = 0.0
        self._pending = _Pending()
        self._next_seq = 0
        self._skip = 0  # samples before the confirmed segments' end, not decoded again after a takeover
        self._audio_seconds = 0.0  # the session's audio decoded into samples so far
        self._early: list[np.ndarray] = []  # samples heard before the decoder exists (the language)
        self._confirmed_end = 0.0  # session time up to which the text is confirmed
        self._recording: BinaryIO | None = None  # the session's audio as 16 kHz PCM (a WAV file)
        self._recording_path: Path | None = None
        self._max_seconds = self.settings.live_max_seconds  # or less: the session's own (a stream URL's)
        self._follower: StreamFollower | None = None  # fetches the audio of a session with a stream URL
        self._ended = threading.Event()
        self._lease_lost = False
        self._turns: Turns | None = None  # a realtime connection's session is cut into turns
        self._decode_turn: DecodeWords | None = None

    @property
    def name(self) -> str:
        return f"live session {self.job.id}"

    def run(self) -> str:
        """Run the session to one of its ends; what happened (for the log)."""
        keeper = threading.Thread(target=self._keep_lease, name="cesar-live-lease", daemon=True)
        keeper.start()
        try:
            with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
                self._recording_path = Path(tmp) / "session.wav"
                with self._recording_path.open("wb") as self._recording:
                    self._recording.write(wav_header(0))
                    outcome = self._run()
        except JobStopped as exc:
            outcome = self._stopped(exc.reason)
        except LeaseLostError:
            outcome = "abandoned (lease lost)"
        except (DatabaseError, ObjectStoreError) as exc:  # away, not the session's fault: a worker resumes it
            log.error("%s: %s", self.name, exc.describe())
            outcome = "left to its lease"
        except CesarError as exc:
            outcome = self._fail(exc.code, str(exc))
        except Exception as exc:
            log.exception("%s: unexpected error", self.name)
            outcome = self._fail("internal_error", f"internal error: {type(exc).__name__}: {exc}")
        if self._follower is not None:
            self._follower.stop()
        self._ended.set()
        keeper.join()
        wall = time.monotonic() - self.started
        log.info("%s %s audio=%.1fs wall=%.1fs", self.name, outcome, self._audio_seconds, wall)
        return outcome

    # --- the session ------------------------------------------------------------------------------
    def _run(self) -> str:
        from cesar_common.transcription.live_audio import open_stream

        if self.job.model not in self.settings.allowed_models:
            raise ModelNotAllowedError(
                f"model '{self.job.model}' is not allowed on this server "
                "(CESAR_MODELS lists the allowed ones)"
            )
        live = self._state()
        confirmed = self.store.live_segments(self.job.id)
        if live.turn_detection is not None:
            self._turns = Turns(live, resumed=bool(confirmed or live.turns))
        offset = float(confirmed[-1]["end"]) if confirmed else 0.0
        self._skip = round(offset * SAMPLE_RATE)
        self._confirmed_end = offset
        confirmed_text = " ".join(str(segment["text"]).strip() for segment in confirmed)
        self._max_seconds = min(self._max_seconds, live.max_seconds or self._max_seconds)
        if self.job.source_url is not None:
            from cesar_worker.live_stream_url import StreamFollower

            self._follower = StreamFollower(
                self.store, self.settings, self.job, heard=lambda: (self._next_seq, self._audio_seconds)
            )
            self._follower.start()
        stream = open_stream(live.audio_format.value, live.sample_rate)
        decoder: LiveDecoder | None = None
        policy: LocalAgreement | None = None
        # a multilingual model without a language hears the first seconds before it decides
        listen = 0.0 if self.slots.transcriber.live_language_known(self.job) else LANGUAGE_SECONDS
        while True:
            self._check()
            live, arrived = self._read_audio(stream, live)
            if decoder is None:
                self._early.append(arrived)
                heard = sum(piece.size for piece in self._early)
                if heard < listen * SAMPLE_RATE and live.ended is None:
                    self._wait_or_report(live)
                    continue
                decoder, policy = self._start_decoding(offset, confirmed_text)
                arrived = self._concat(self._early)
                self._early = []
            assert policy is not None
            start = policy.audio_end
            policy.add_audio(arrived)
            if self._turns is not None:
                self._follow_turns(live, policy, arrived, start)
            if live.ended is not None and live.chunks == self._next_seq:
                stream.close()
                policy.add_audio(self._samples(stream.take()))
                if self._turns is not None and self._turns.has_content:
                    self._close_turn(policy, policy.audio_end)
                self._take(policy.finish())
                self._report(force=True)
                return self._complete(decoder)
            if policy.ready():
                self._take(policy.step())
                self._report()
            else:
                self._wait_or_report(live)

    def _start_decoding(self, offset: float, confirmed_text: str) -> tuple[LiveDecoder, LocalAgreement]:
        from cesar_common.transcription.streaming import LocalAgreement, StreamingOptions

        decoder = self.slots.transcriber.live_decoder(self.job, self._concat(self._early))
        self._decode_turn = decoder.decode
        policy = LocalAgreement(
            decoder.decode,
            StreamingOptions(step_seconds=self.settings.live_step_seconds),
            offset=offset,
            confirmed_text=confirmed_text,
        )
        return decoder, policy

    def _follow_turns(
        self, live: LiveState, policy: LocalAgreement, arrived: np.ndarray, start: float
    ) -> None:
        """Close the turn where the speaker stopped or the client committed; drop what the client cleared."""
        turns = self._turns
        assert turns is not None
        turns.configure(live.turn_detection, start)
        turns.add_audio(arrived, start)
        for event in turns.hear(arrived):
            if event.kind == "start":
                turns.started(event.time)
                self._pending.changed = True
            else:
                self._close_turn(policy, event.time)
        for action in turns.pending_marks(live, self._next_seq):
            if action == "commit":
                self._close_turn(policy, policy.audio_end)
            else:
                self._take(policy.clear())
                turns.clear(policy.audio_end)

    def _close_turn(self, policy: LocalAgreement, time: float) -> None:
        """Every word of the open turn confirmed, and the turn complete, in one report."""
        assert self._turns is not None and self._decode_turn is not None
        self._take(policy.flush())
        self._turns.complete(time, self._next_seq, self._decode_turn)
        self._pending.changed = True
        self._report(force=True)

    def _read_audio(self, stream: AudioStream, live: LiveState) -> tuple[LiveState, np.ndarray]:
        """The samples that arrived since the last look; the stream's state (the audio over once it
        went idle or reached the maximum length)."""
        live = self._state()
        if live.ended is None and live.idle_seconds >= self.settings.live_idle_seconds:
            self.store.end_live_audio(self.job.id, LiveEnd.IDLE)
            live = self._state()
        # a client's commit or clear applies where it was made: no audio after it is read before it is
        stop_at = None if self._turns is None else self._turns.next_mark(live)
        available = live.chunks if stop_at is None else min(live.chunks, max(stop_at, self._next_seq))
        while self._next_seq < available:
            chunks = self.store.live_audio(self.job.id, from_seq=self._next_seq)[: available - self._next_seq]
            if not chunks:
                break
            for chunk in chunks:
                stream.feed(chunk)
            self._next_seq += len(chunks)
        if live.ended is not None and self._next_seq >= live.chunks:
            stream.close()
        samples = self._samples(stream.take())
        # counted in samples, as _samples cuts: a sum of fractions of seconds may fall a hair short
        if round(self._audio_seconds * SAMPLE_RATE) >= int(self._max_seconds * SAMPLE_RATE):
            if live.ended is None:
                self.store.end_live_audio(self.job.id, LiveEnd.MAX_LENGTH)
                live = self._state()
            self._next_seq = live.chunks  # what came past the limit is not transcribed
        return live, samples

    def _samples(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` counted into the session's audio (none past its maximum length), less those a
        takeover has already confirmed."""

        start = round(self._audio_seconds * SAMPLE_RATE)
        samples = samples[: max(int(self._max_seconds * SAMPLE_RATE) - start, 0)]
        self._audio_seconds += samples.size / SAMPLE_RATE
        if self._recording is not None:  # the whole session, for the final pass
            self._recording.write((samples * 32768).clip(-32768, 32767).astype("<i2").tobytes())
        if self._skip > start:
            return samples[min(self._skip - start, samples.size) :]
        return samples

    def _state(self) -> LiveState:
        live = self.store.live_state(self.job.id)
        if live is None:
            raise CesarError(f"job {self.job.id} is not a live session")
        return live

    def _take(self, update: StreamUpdate) -> None:
        pending = self._pending
        if self._turns is not None:
            self._turns.tag(update.segments)
        if update.segments:
            pending.segments.extend(update.segments)
            self._confirmed_end = float(update.segments[-1]["end"])
            pending.changed = True
        if (update.tentative, update.tentative_start) != (pending.tentative, pending.tentative_start):
            pending.tentative, pending.tentative_start = update.tentative, update.tentative_start
            pending.changed = True

    def _wait_or_report(self, live: LiveState) -> None:
        self._report()
        if live.ended is None:
            self.slots.stop_event.wait(LOOK_SECONDS)

    def _report(self, *, force: bool = False) -> None:
        """Write what changed (and the lease), or only the lease once a third of it has passed."""
        now = time.monotonic()
        due = now - self._last_report >= self.settings.lease_seconds / 3
        if not (force or self._pending.changed or due):
            return
        pending = self._pending
        cancel = self.store.report_live(
            self.job.id,
            self.worker_id,
            segments=pending.segments,
            tentative=pending.tentative,
            tentative_start=pending.tentative_start,
            behind_seconds=round(max(self._audio_seconds - self._confirmed_end, 0.0), 3),
            lease_seconds=self.settings.lease_seconds,
            turns=None if self._turns is None else self._turns.recent,
        )
        pending.segments = []
        pending.changed = False
        self._last_report = now
        if cancel:
            raise JobStopped(StopReason.CANCELLED)

    def _check(self) -> None:
        if self._lease_lost:
            raise JobStopped(StopReason.LEASE_LOST)
        if self.slots.stop_event.is_set():
            raise JobStopped(StopReason.SHUTDOWN)
        if self._follower is not None:
            self._follower.check()  # a refused URL, a stream that cannot be followed

    def _keep_lease(self) -> None:
        """Extend the lease every third of its length, whatever the decoding is doing: a pass over a long
        buffer on a busy machine may take longer than the lease between two reports."""
        interval = self.settings.lease_seconds / 3
        while not self._ended.wait(interval):
            try:
                if not self.store.extend_lease(
                    self.job.id, self.worker_id, lease_seconds=self.settings.lease_seconds
                ):
                    self._lease_lost = True
                    return
            except CesarError as exc:  # the database is away: the lease may run out, the fence decides
                log.warning("%s: could not extend its lease: %s", self.name, exc)

    # --- ends -------------------------------------------------------------------------------------
    def _complete(self, decoder: LiveDecoder) -> str:
        result = self._final_pass(decoder) if self.settings.live_final_pass else None
        result = speaker_names.named(self.store, self.job, result or self._confirmed_result(decoder))
        if self.store.complete_job(self.job.id, self.worker_id, result):
            return "completed"
        return "abandoned (no longer ours when it finished)"

    def _final_pass(self, decoder: LiveDecoder) -> JobResult | None:
        """The whole session decoded again as a file, for its transcript: a live pass confirms words
        with a second or two of audio after them, a file's decoding hears whole sentences (the word error
        rate of the story: BENCHMARKS.md). None when it cannot be had (the confirmed segments then are
        the transcript)."""
        import dataclasses

        assert self._recording is not None and self._recording_path is not None
        size = self._recording.tell() - len(wav_header(0))
        if size <= 0:
            return None
        self._recording.seek(0)
        self._recording.write(wav_header(size))
        self._recording.flush()
        try:
            result = self.slots.transcriber.transcribe(
                self.job,
                self._recording_path,
                on_progress=_ignore_progress,
                on_segment=_ignore_segment,
                should_stop=lambda: self._lease_lost or self.slots.stop_event.is_set(),
            )
        except JobStopped:
            self._check()  # a lost lease or a shutdown ends the session as such
            return None
        except CesarError as exc:
            log.warning(
                "%s: the final pass failed (%s); the confirmed segments are its transcript", self.name, exc
            )
            return None
        return dataclasses.replace(result, duration=round(self._audio_seconds, 3), decoding=decoder.decoding)

    def _confirmed_result(self, decoder: LiveDecoder) -> JobResult:
        from cesar_common.transcription.streaming import sentence_segments

        confirmed = self.store.live_segments(self.job.id)
        segments = [
            {**segment, "id": index}
            for index, segment in enumerate(sentence_segments([_plain(s) for s in confirmed]))
        ]
        if not self.job.options.word_timestamps:
            for segment in segments:
                segment.pop("words", None)
        return JobResult(
            text=" ".join(segment["text"] for segment in segments).strip(),
            language=decoder.language,
            language_probability=decoder.language_probability,
            duration=round(self._audio_seconds, 3),
            segments=segments,
            decoding=decoder.decoding,
        )

    def _stopped(self, reason: StopReason) -> str:
        if reason == StopReason.LEASE_LOST:
            return "abandoned (lease lost)"
        try:
            if reason == StopReason.CANCELLED:
                self.store.cancel_running(self.job.id, self.worker_id)
                return "cancelled"
            if reason == StopReason.SHUTDOWN:
                self.store.release_job(self.job.id, self.worker_id)
                return "handed back (shutting down)"
        except CesarError as exc:
            log.error("%s: could not record that it stopped (%s): %s", self.name, reason, exc)
        return "left to its lease"

    def _fail(self, code: str, message: str) -> str:
        try:
            self.store.fail_job(self.job.id, self.worker_id, code=code, message=message)
        except CesarError as exc:
            log.error("%s: could not record its error: %s", self.name, exc)
        return f"error ({code}: {message})"

    @staticmethod
    def _concat(pieces: list[np.ndarray]) -> np.ndarray:
        import numpy as np

        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def _ignore_progress(done: float, total: float) -> None:
    pass


def _ignore_segment(segment: dict[str, Any]) -> None:
    pass


def _plain(segment: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in segment.items() if key != "id"}
