"""``GET /live``: a live session over a WebSocket (the protocol: ``docs/live.md``).

The API never decodes: it stores the audio the client sends, a piece every :data:`APPEND_SECONDS` or
:data:`APPEND_BYTES` in one short transaction (:meth:`JobStore.append_live_audio`), and relays what the
session's worker writes: confirmed segments (each once, in order), the words not confirmed yet, the job at
changes, and the final job. It hears of those changes from the process's change feed and reads them at
most every :data:`REFRESH_SECONDS`. A client that loses its connection resumes with the session id and the
last segment it got; the server says how much audio it has, and the client sends again from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any, cast

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from pydantic import ValidationError

from cesar_api.access import WATCH_SECONDS, Caller, KeyRing, caller_of
from cesar_api.auth import COOKIE_OPENS
from cesar_api.reads import run_read
from cesar_api.schemas import LiveResumeIn, LiveStartIn
from cesar_api.submit import check_callback, job_options
from cesar_common.db.feed import Change, ChangeFeed, ChangeKind, Subscription
from cesar_common.db.records import AudioFormat, JobRecord, JobSource, JobStatus, LiveEnd, NewJob
from cesar_common.db.store import JobStore
from cesar_common.errors import CesarError, ClientError, NotFoundError
from cesar_common.job_json import job_json
from cesar_common.settings import Settings

__all__ = ["LiveSocket", "Refused", "live_session", "while_key_holds"]

log = logging.getLogger("cesar.api.live")

#: how much audio the API gathers before it stores it (a few writes a second per session)
APPEND_SECONDS = 0.25
APPEND_BYTES = 64 * 1024
#: the largest message a client may send
MAX_MESSAGE_BYTES = 1024 * 1024
#: the shortest time between two reads of the session's changes
REFRESH_SECONDS = 0.05
#: a look at the session even when no change was heard (a lost notification costs at most this)
LOOK_SECONDS = 1.0

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_AGAIN = 1013


class Refused(Exception):
    """The session cannot go on: an ``error`` event with ``code`` and ``message``, then close ``close``."""

    def __init__(self, code: str, message: str, close: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close


@websocket("/live", opt={COOKIE_OPENS: True})
async def live_session(socket: WebSocket[Any, Any, Any]) -> None:
    """A live session: audio in, confirmed segments, tentative text and the final job out."""
    await socket.accept()
    app = socket.app
    session = LiveSocket(socket, app.state.settings, app.state.store, app.state.feed, caller_of(socket))
    try:
        await while_key_holds(socket, session.run())
    except Refused as exc:
        await session.refuse(exc)
    except WebSocketDisconnect:
        pass
    except CesarError as exc:
        close = CLOSE_POLICY if isinstance(exc, ClientError) else CLOSE_SERVER_ERROR
        await session.refuse(Refused(exc.code, str(exc), close))
    except Exception:
        log.exception("live session failed")
        await session.refuse(Refused("internal_error", "the server failed", CLOSE_SERVER_ERROR))
    finally:
        await session.flush_audio()


async def while_key_holds(socket: WebSocket[Any, Any, Any], session: Coroutine[Any, Any, None]) -> None:
    """Run ``session`` while the socket's key holds: once it is revoked or expires, the session is stopped
    and :class:`Refused` (closed with a reason) within about a second."""
    ring: KeyRing = socket.app.state.key_ring
    caller = caller_of(socket)
    running = asyncio.ensure_future(session)
    try:
        while True:
            done, _ = await asyncio.wait({running}, timeout=WATCH_SECONDS)
            if done:
                return running.result()
            await ring.fresh()
            if not ring.still_valid(caller):
                raise Refused(
                    "unauthorized", f"the API key {caller.name!r} was revoked or expired", CLOSE_POLICY
                )
    finally:
        if not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                await running


class LiveSocket:
    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        settings: Settings,
        store: JobStore,
        feed: ChangeFeed,
        caller: Caller,
    ):
        self.socket = socket
        self.settings = settings
        self.store = store
        self.feed = feed
        self.caller = caller
        self.job: JobRecord | None = None
        self._audio = bytearray()
        self._audio_since = time.monotonic()
        self._accepting = True
        self._sent_segments = 0
        self._changed = asyncio.Event()
        self._send_lock = asyncio.Lock()

    # --- the session ------------------------------------------------------------------------------
    async def run(self) -> None:
        first = await self._first_message()
        subscription = self._subscribe()
        try:
            if first.get("type") == "resume":
                job = await self._resume(first)
            else:
                job = await self._start(first)
            self.job = job
            live = await run_read(self.store, self.store.live_state, job.id)
            await self._send(
                {
                    "type": "session",
                    "session_id": job.id,
                    "audio_bytes": 0 if live is None else live.audio_bytes,
                    "job": self._job_document(job),
                }
            )
            relay = asyncio.create_task(self._relay(job))
            receive = asyncio.create_task(self._receive(job))
            try:
                done, _ = await asyncio.wait({relay, receive}, return_when=asyncio.FIRST_COMPLETED)
                if receive in done and receive.exception() is None:
                    await relay  # the client said stop: relay until the final job
                else:
                    for task in done:
                        task.result()  # the relay ended (final sent) or one of them failed
            finally:
                for task in (relay, receive):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                        await task
        finally:
            subscription.close()

    async def _first_message(self) -> dict[str, Any]:
        try:
            message = await asyncio.wait_for(
                self.socket.receive_data(mode="text"), self.settings.live_idle_seconds
            )
        except TimeoutError as exc:
            raise Refused("idle", "no first message came: send the session's options", CLOSE_POLICY) from exc
        except (UnicodeDecodeError, KeyError) as exc:
            raise Refused(
                "invalid_message", "the first message must be JSON text (start or resume)", CLOSE_POLICY
            ) from exc
        try:
            value = json.loads(message)
        except (TypeError, ValueError) as exc:
            raise Refused("invalid_message", "the first message is not JSON", CLOSE_POLICY) from exc
        if not isinstance(value, dict) or value.get("type") not in ("start", "resume"):
            raise Refused(
                "invalid_message",
                'the first message must be {"type": "start", ...} or {"type": "resume", ...}',
                CLOSE_POLICY,
            )
        return value

    async def _start(self, message: dict[str, Any]) -> JobRecord:
        try:
            request = LiveStartIn.model_validate(message)
        except ValidationError as exc:
            raise Refused("invalid_message", _first_error(exc), CLOSE_POLICY) from exc
        options = job_options(request, self.settings)
        callback = await asyncio.to_thread(check_callback, request.callback_url, self.settings)
        new = NewJob(
            source=JobSource.LIVE,
            options=options,
            max_attempts=self.settings.max_attempts,
            callback_url=callback,
            idempotency_key=request.idempotency_key,
            owner=self.caller.owner,
            limits=self.caller.key,
        )
        audio = request.audio
        rate = audio.sample_rate if audio.format is AudioFormat.PCM_S16LE else None
        job, created = await asyncio.to_thread(self.store.open_live_session, new, audio.format, rate)
        if created:
            job = await self._wait_for_worker(job)
        else:
            self._sent_segments = 0  # the same session again: everything it confirmed is sent
        return job

    async def _wait_for_worker(self, job: JobRecord) -> JobRecord:
        """The job once a worker holds it; refused (and cancelled) when none took it in time."""
        deadline = time.monotonic() + self.settings.live_start_seconds
        while job.status is JobStatus.QUEUED:
            left = deadline - time.monotonic()
            if left <= 0:
                await asyncio.to_thread(self.store.request_cancel, job.id)
                raise Refused(
                    "no_worker",
                    f"no worker took the live session within {self.settings.live_start_seconds:g} s: "
                    "every live slot is busy or no worker runs; try again later",
                    CLOSE_TRY_AGAIN,
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.25))
            job = await run_read(self.store, self.store.get_job, job.id)
        return job

    async def _resume(self, message: dict[str, Any]) -> JobRecord:
        try:
            request = LiveResumeIn.model_validate(message)
        except ValidationError as exc:
            raise Refused("invalid_message", _first_error(exc), CLOSE_POLICY) from exc
        try:
            job = await run_read(self.store, self.store.get_job, request.session_id)
        except NotFoundError as exc:
            raise Refused("not_found", f"no live session {request.session_id!r}", CLOSE_POLICY) from exc
        if not self.caller.sees(job.owner):  # another key's session is as unknown as none
            raise Refused("not_found", f"no live session {request.session_id!r}", CLOSE_POLICY)
        if job.source is not JobSource.LIVE:
            raise Refused("not_found", f"job {job.id} is not a live session", CLOSE_POLICY)
        self._sent_segments = request.last_segment + 1
        return job

    # --- audio in ---------------------------------------------------------------------------------
    async def _receive(self, job: JobRecord) -> None:
        """Audio until the client says stop (then the session's audio is over) or goes away."""
        while True:
            timeout = APPEND_SECONDS if self._audio else None
            try:
                message = await asyncio.wait_for(self.socket.receive(), timeout)
            except TimeoutError:
                await self.flush_audio()
                continue
            if message["type"] == "websocket.disconnect":
                await self.flush_audio()
                raise WebSocketDisconnect(detail="the client went away", code=CLOSE_NORMAL)
            data = cast("bytes | None", message.get("bytes"))
            text = cast("str | None", message.get("text"))
            if data is not None:
                if len(data) > MAX_MESSAGE_BYTES:
                    raise Refused(
                        "too_big", "an audio message is over 1 MiB: send smaller ones", CLOSE_TOO_BIG
                    )
                if self._accepting:
                    await self.gather_audio(data)
                continue
            if text is not None and _is_stop(text):
                await self.flush_audio()
                await asyncio.to_thread(self.store.end_live_audio, job.id, LiveEnd.STOP)
                self._accepting = False
                return
            raise Refused(
                "invalid_message",
                'after the first message send audio (binary) or {"type": "stop"}',
                CLOSE_POLICY,
            )

    async def gather_audio(self, data: bytes) -> None:
        """Add ``data`` to the audio not stored yet; store it all once there is enough or it waited enough."""
        self._audio += data
        if len(self._audio) >= APPEND_BYTES or time.monotonic() - self._audio_since >= APPEND_SECONDS:
            await self.flush_audio()

    async def flush_audio(self) -> None:
        """Store the audio gathered so far (one short transaction)."""
        if not self._audio or self.job is None:
            return
        data, self._audio = bytes(self._audio), bytearray()
        self._audio_since = time.monotonic()
        stored = await asyncio.to_thread(self.store.append_live_audio, self.job.id, data)
        if stored is None:
            self._accepting = False  # the session's audio is over: what comes now is not transcribed

    # --- events out -------------------------------------------------------------------------------
    def _subscribe(self) -> Subscription:
        loop = asyncio.get_running_loop()

        def heard(change: Change) -> None:
            if change.job_id is None or self.job is None or change.job_id == self.job.id:
                loop.call_soon_threadsafe(self._changed.set)

        return self.feed.subscribe([ChangeKind.JOB], heard, settle=False)

    async def _relay(self, job: JobRecord) -> None:
        """Segments, tentative text and job changes until the job ends; then the final job."""
        shown = _shown(job)
        tentative: tuple[str, float | None] | None = None
        while True:
            job = await run_read(self.store, self.store.get_job, job.id)
            segments = await run_read(self.store, self.store.live_segments, job.id, first=self._sent_segments)
            for segment in segments:
                if int(segment["id"]) >= self._sent_segments:
                    await self._send({"type": "segment", **segment})
                    self._sent_segments = int(segment["id"]) + 1
            if job.is_final:
                await self._end(job)
                return
            live = await run_read(self.store, self.store.live_state, job.id)
            if live is not None and (live.tentative, live.tentative_start) != tentative:
                tentative = (live.tentative, live.tentative_start)
                await self._send({"type": "tentative", "text": live.tentative, "start": live.tentative_start})
            if _shown(job) != shown:
                shown = _shown(job)
                await self._send({"type": "job", "job": self._job_document(job)})
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), LOOK_SECONDS)
            await asyncio.sleep(REFRESH_SECONDS)  # changes that come together are read together

    async def _end(self, job: JobRecord) -> None:
        if job.status is JobStatus.ERROR:
            await self._send({"type": "error", "code": job.error_code, "message": job.error_message})
        await self._send({"type": "final", "job": self._job_document(job)})
        await self.socket.close(code=CLOSE_NORMAL, reason=f"the session is {job.status.value}")

    async def refuse(self, refused: Refused) -> None:
        with contextlib.suppress(Exception):
            await self._send({"type": "error", "code": refused.code, "message": refused.message})
            await self.socket.close(code=refused.close, reason=refused.message[:120])

    async def _send(self, event: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.socket.send_data(json.dumps(event, default=str), mode="text")

    def _job_document(self, job: JobRecord) -> Any:
        return json.loads(job_json(job))


def _shown(job: JobRecord) -> tuple[Any, ...]:
    """What a ``job`` event is sent for when it changes."""
    return (job.status, job.attempts, job.worker_id is not None)


def _is_stop(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("type") == "stop"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "message"
    return f"{where}: {error.get('msg', 'invalid')}"
