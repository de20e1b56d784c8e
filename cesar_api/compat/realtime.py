"""OpenAI's Realtime API in transcription mode: ``/v1/realtime`` (WebSocket), on a live session.

The events are OpenAI's current (GA) shapes, as the ``openai`` SDKs send and read them: the client sends
``session.update`` (``session.type`` ``transcription``; the audio format, the transcription model, language
and prompt, the turn detection), ``input_audio_buffer.append`` (base64 audio), ``.commit`` and ``.clear``;
the server answers ``session.created``/``.updated``, ``input_audio_buffer.speech_started``/``.speech_stopped``
(server VAD), ``.committed``, ``.cleared``, ``conversation.item.added``/``.done`` and
``conversation.item.input_audio_transcription.delta``/``.completed``, and ``error`` events. The beta shape
(``transcription_session.update``, ``input_audio_format: "pcm16"``) is read too.

The connection's first audio opens a live session (one Cesar job, listed like any other, with its audio,
transcript and webhooks), cut into turns by its worker (:mod:`cesar_worker.live_turns`): a turn is one
conversation item. Unlike OpenAI's, whose transcription starts when a turn is committed, the words of a turn
arrive as ``delta`` events while it is spoken (each confirmed segment), and ``completed`` follows the turn's
end with all of them. Audio is stored as it arrives: PCM16 at 24 kHz as it is, G.711 (``audio/pcmu``,
``audio/pcma``, 8 kHz) as PCM16.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from typing import Any

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from cesar_api.access import SERVER_KEY, set_caller
from cesar_api.auth import identify
from cesar_api.compat.g711 import decode as decode_g711
from cesar_api.compat.openai import OpenAIError, resolve_model
from cesar_api.reads import run_read
from cesar_api.routes.live_socket import (
    APPEND_SECONDS,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_SERVER_ERROR,
    LOOK_SECONDS,
    REFRESH_SECONDS,
    LiveSocket,
    Refused,
    while_key_holds,
)
from cesar_api.submit import check_callback
from cesar_common.choices import WHISPER_LANGUAGES
from cesar_common.db.records import AudioFormat, JobRecord, JobSource, JobStatus, LiveEnd, NewJob
from cesar_common.errors import CesarError, DatabaseError
from cesar_common.job_options import options_from

__all__ = ["realtime_session"]

log = logging.getLogger("cesar.api.realtime")

#: OpenAI's input formats and the PCM16 rate each is stored at
RATES = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}
#: the beta shape's names for them
BETA_FORMATS = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
#: a commit needs this much audio since the last one (OpenAI's rule)
MIN_COMMIT_MS = 100
#: client events of a conversation session, which a transcription session does not take
CONVERSATION_EVENTS = frozenset(
    {
        "response.create",
        "response.cancel",
        "conversation.item.create",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "output_audio_buffer.clear",
    }
)


@websocket("/v1/realtime")
async def realtime_session(socket: WebSocket[Any, Any, Any]) -> None:
    """A realtime transcription session (the events: OpenAI's; this module's docstring)."""
    offered = [value.strip() for value in socket.headers.get("sec-websocket-protocol", "").split(",")]
    # browsers cannot send headers: OpenAI's clients put the key in a subprotocol instead
    await socket.accept(subprotocols="realtime" if "realtime" in offered else None)
    caller = await identify(socket, _subprotocol_keys(offered))
    connection = RealtimeSocket(
        socket, socket.app.state.settings, socket.app.state.store, socket.app.state.feed, caller or SERVER_KEY
    )
    if caller is None:
        await connection.refuse_event(
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided: send `Authorization: Bearer <key>`",
            close=CLOSE_POLICY,
        )
        return
    set_caller(socket, caller)
    try:
        await connection.check_query()
        await while_key_holds(socket, connection.run())
    except _Ended:
        pass
    except Refused as exc:
        kind = "invalid_request_error" if exc.close == CLOSE_POLICY else "server_error"
        await connection.refuse_event(kind, exc.code, exc.message, close=exc.close)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("realtime session failed")
        await connection.refuse_event(
            "server_error", "server_error", "the server failed", close=CLOSE_SERVER_ERROR
        )
    finally:
        await connection.flush_audio()
        if connection.job is not None:
            with contextlib.suppress(CesarError):
                await asyncio.to_thread(connection.store.end_live_audio, connection.job.id, LiveEnd.STOP)


def _subprotocol_keys(offered: list[str]) -> tuple[str, ...]:
    """Keys offered as OpenAI's browser clients offer them (they cannot send headers)."""
    prefix = "openai-insecure-api-key."
    return tuple(value[len(prefix) :] for value in offered if value.startswith(prefix))


class _Ended(Exception):  # control flow: the session is over, the socket closed by the relay
    pass


class RealtimeSocket(LiveSocket):
    """One ``/v1/realtime`` connection: its session's settings, then its live session's job."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.session_id = f"sess_{uuid.uuid4().hex[:24]}"
        self.beta = False
        self.config: dict[str, Any] = {
            "format": {"type": "audio/pcm", "rate": 24000},
            "model": "whisper-1",
            "language": None,
            "prompt": "",
            "turn_detection": dict(SERVER_VAD),
        }
        self._relay_task: asyncio.Task[None] | None = None
        self.callback_url: str | None = None
        self._uncommitted_ms = 0.0

    async def check_query(self) -> None:
        """The connection URL's own parameters: ``callback_url`` (Cesar's: where the job's final state is
        POSTed, as for any job; OpenAI's clients pass it with ``extra_query``)."""
        url = self.socket.query_params.get("callback_url")
        try:
            self.callback_url = await asyncio.to_thread(check_callback, url or None, self.settings)
        except CesarError as exc:
            raise Refused("invalid_value", str(exc), CLOSE_POLICY) from exc

    # --- the connection ---------------------------------------------------------------------------
    async def run(self) -> None:
        subscription = self._subscribe()
        try:
            await self._event("session.created", session=self._session())
            while True:
                try:
                    message = await self._next_message()
                except TimeoutError:
                    if self._audio:
                        await self.flush_audio()
                        continue
                    raise Refused(
                        "session_expired",
                        f"no audio came for {self.settings.live_idle_seconds:g} s: the session is over",
                        CLOSE_NORMAL,
                    ) from None
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(detail="the client went away", code=CLOSE_NORMAL)
                text = message.get("text")
                if not isinstance(text, str):
                    await self._error(
                        "invalid_json",
                        "send JSON text events; audio goes base64 in input_audio_buffer.append",
                    )
                    continue
                await self._handle(text)
        finally:
            subscription.close()
            if self._relay_task is not None:
                self._relay_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                    await self._relay_task

    async def _next_message(self) -> Any:
        """The client's next message (TimeoutError after :meth:`_wait_seconds`); returns from :meth:`run`
        by :class:`_Ended` once the relay ends the session (or fails) meanwhile, whatever the client does."""
        receive = asyncio.ensure_future(asyncio.wait_for(self.socket.receive(), self._wait_seconds()))
        if self._relay_task is None:
            return await receive
        await asyncio.wait({receive, self._relay_task}, return_when=asyncio.FIRST_COMPLETED)
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receive
            self._relay_task.result()  # the relay's error, if it failed
            raise _Ended
        return receive.result()

    def _wait_seconds(self) -> float | None:
        """How long to wait for the client: a moment while audio waits to be stored; the idle time before
        the first audio; then as long as the session runs (its worker ends it when no audio comes, and the
        relay then closes the connection: a client waiting for a turn's transcript is not cut off)."""
        if self._audio:
            return APPEND_SECONDS
        return self.settings.live_idle_seconds if self.job is None else None

    async def _handle(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            await self._error("invalid_json", "the event is not JSON")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self._error("invalid_event", "an event is a JSON object with a `type`", param="type")
            return
        kind, client_event = event["type"], event.get("event_id")
        try:
            if kind in ("session.update", "transcription_session.update"):
                self.beta = kind == "transcription_session.update"
                await self._update(event.get("session"), beta=self.beta)
            elif kind == "input_audio_buffer.append":
                await self._append(event.get("audio"))
            elif kind == "input_audio_buffer.commit":
                await self._commit()
            elif kind == "input_audio_buffer.clear":
                await self._clear()
            elif kind in CONVERSATION_EVENTS:
                raise OpenAIError(
                    f"`{kind}` is not available in a transcription session",
                    param="type",
                    code="invalid_value",
                )
            else:
                raise OpenAIError(
                    f"Invalid value: '{kind}'. Unknown event type.", param="type", code="invalid_value"
                )
        except OpenAIError as exc:
            await self._error(
                exc.error_code or "invalid_value",
                exc.message,
                param=exc.param,
                event_id=client_event,
                kind=exc.kind,
            )

    # --- the session's settings -------------------------------------------------------------------
    async def _update(self, session: Any, *, beta: bool) -> None:
        if not isinstance(session, dict):
            raise OpenAIError("`session` must be an object", param="session")
        asked = _beta_session(session) if beta else _session_fields(session)
        config = {**self.config, **asked}
        fmt = config["format"]
        if (
            fmt.get("type") not in RATES
            or int(fmt.get("rate", RATES.get(fmt.get("type"), 0))) != RATES[fmt["type"]]
        ):
            raise OpenAIError(
                f"Invalid audio format {json.dumps(fmt)}: use audio/pcm at 24000 Hz, audio/pcmu or "
                "audio/pcma",
                param="session.audio.input.format",
                code="invalid_value",
            )
        config["format"] = {"type": fmt["type"], "rate": RATES[fmt["type"]]}
        config["model_name"] = resolve_model(str(config["model"]), self.settings)
        config["turn_detection"] = _turn_detection(config["turn_detection"])
        if self.job is not None:
            fixed = ("format", "model", "language", "prompt")
            changed = [name for name in fixed if config[name] != self.config[name]]
            if changed:
                raise OpenAIError(
                    f"the session's {', '.join(changed)} cannot change once audio was sent",
                    param="session",
                    code="invalid_value",
                )
            if config["turn_detection"] != self.config["turn_detection"]:
                await asyncio.to_thread(
                    self.store.set_live_turn_detection, self.job.id, _stored_turns(config["turn_detection"])
                )
        self.config = config
        await self._event(
            "transcription_session.updated" if beta else "session.updated", session=self._session()
        )

    def _session(self) -> dict[str, Any]:
        config = self.config
        transcription = {"model": config["model"], "language": config["language"], "prompt": config["prompt"]}
        if self.beta:
            return {
                "id": self.session_id,
                "object": "realtime.transcription_session",
                "input_audio_format": {v: k for k, v in BETA_FORMATS.items()}[config["format"]["type"]],
                "input_audio_transcription": transcription,
                "turn_detection": config["turn_detection"],
                "include": [],
            }
        return {
            "type": "transcription",
            "id": self.session_id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": config["format"],
                    "transcription": transcription,
                    "turn_detection": config["turn_detection"],
                    "noise_reduction": None,
                }
            },
            "include": [],
            **({"job_id": self.job.id} if self.job is not None else {}),
        }

    # --- audio ------------------------------------------------------------------------------------
    async def _append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise OpenAIError("`audio` must be a base64 string", param="audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise OpenAIError("`audio` is not valid base64", param="audio", code="invalid_value") from None
        fmt = self.config["format"]["type"]
        if fmt == "audio/pcm" and len(data) % 2:
            raise OpenAIError(
                "PCM16 audio comes in whole 2-byte samples", param="audio", code="invalid_value"
            )
        if fmt != "audio/pcm":
            data = decode_g711(data, alaw=fmt == "audio/pcma")
        if self.job is None:
            await self._open()
        if not self._accepting:
            raise OpenAIError("the session's audio is over", param="audio", code="session_expired")
        self._uncommitted_ms += len(data) / 2 / self.config["format"]["rate"] * 1000
        await self.gather_audio(data)

    async def _commit(self) -> None:
        if self._uncommitted_ms < MIN_COMMIT_MS or self.job is None:
            raise OpenAIError(
                f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms "
                f"of audio, but buffer only has {self._uncommitted_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        await self.flush_audio()
        await asyncio.to_thread(self.store.mark_live_audio, self.job.id, "commit")
        self._uncommitted_ms = 0.0

    async def _clear(self) -> None:
        if self.job is not None:
            await self.flush_audio()
            await asyncio.to_thread(self.store.mark_live_audio, self.job.id, "clear")
        self._uncommitted_ms = 0.0
        await self._event("input_audio_buffer.cleared")

    async def _open(self) -> None:
        """The live session, at the first audio: the job of this connection, held by a worker."""
        config = self.config
        options = options_from(
            {
                "model": config["model_name"],
                "language": config["language"] or None,
                "task": "transcribe",
                "initial_prompt": config["prompt"] or None,
                "word_timestamps": True,
                "vad": True,
            },
            model=config["model_name"],
        )
        new = NewJob(
            source=JobSource.LIVE,
            options=options,
            max_attempts=self.settings.max_attempts,
            callback_url=self.callback_url,
            filename=f"realtime {self.session_id}",  # lists as the connection's session
            owner=self.caller.owner,
            limits=self.caller.key,
        )
        job, _ = await asyncio.to_thread(
            self.store.open_live_session,
            new,
            AudioFormat.PCM_S16LE,
            config["format"]["rate"],
            _stored_turns(config["turn_detection"]),
        )
        self.job = job
        self.job = await self._wait_for_worker(job)
        self._relay_task = asyncio.create_task(self._relay_turns(self.job))

    # --- events out -------------------------------------------------------------------------------
    async def _relay_turns(self, job: JobRecord) -> None:
        """Turns, their words and their ends, as the worker writes them, until the job ends."""
        started: set[int] = set()
        done = -1  # the last turn completed
        texts: dict[int, list[str]] = {}
        while True:
            try:
                live = await run_read(self.store, self.store.live_state, job.id)  # before the segments: see
                job = await run_read(self.store, self.store.get_job, job.id)  # cesar_worker.live_turns
                segments = await run_read(
                    self.store, self.store.live_segments, job.id, first=self._sent_segments
                )
            except DatabaseError as exc:  # the next look may do: the worker goes on meanwhile
                log.warning("realtime session %s: could not read it: %s", job.id, exc)
                await asyncio.sleep(LOOK_SECONDS)
                continue
            turns = [] if live is None else [turn for turn in live.turns if int(turn["index"]) > done]
            vad = self.config["turn_detection"] is not None
            for turn in turns:
                index = int(turn["index"])
                if vad and index not in started and turn.get("start") is not None and not turn["complete"]:
                    started.add(index)
                    await self._event(
                        "input_audio_buffer.speech_started",
                        audio_start_ms=_ms(turn["start"]),
                        item_id=self._item(index),
                    )
            for segment in segments:
                if int(segment["id"]) < self._sent_segments:
                    continue
                self._sent_segments = int(segment["id"]) + 1
                index = int(segment.get("turn", done + 1))
                words = str(segment["text"]).strip()
                if not words:
                    continue
                delta = words if not texts.get(index) else f" {words}"
                texts.setdefault(index, []).append(delta)
                await self._event(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=self._item(index),
                    content_index=0,
                    delta=delta,
                )
            for turn in turns:
                if not turn["complete"]:
                    break
                index = int(turn["index"])
                said = "".join(texts.pop(index, []))
                await self._complete(index, turn, turn.get("transcript", said), speech=index in started)
                done = index
            if job.is_final:
                if job.status is JobStatus.ERROR:
                    await self._error(
                        job.error_code or "server_error", job.error_message or "failed", kind="server_error"
                    )
                await self.socket.close(code=CLOSE_NORMAL, reason=f"the session is {job.status.value}")
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), LOOK_SECONDS)
            await asyncio.sleep(REFRESH_SECONDS)

    async def _complete(self, index: int, turn: dict[str, Any], transcript: str, *, speech: bool) -> None:
        item_id, previous = self._item(index), self._item(index - 1) if index else None
        if speech:
            await self._event(
                "input_audio_buffer.speech_stopped", audio_end_ms=_ms(turn["end"]), item_id=item_id
            )
        await self._event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._event("conversation.item.added", item=item, previous_item_id=previous)
        seconds = round(max(float(turn["end"]) - float(turn["start"] or 0.0), 0.0), 3)
        await self._event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage={"type": "duration", "seconds": seconds},
        )
        item["content"] = [{"type": "input_audio", "transcript": transcript}]
        await self._event("conversation.item.done", item=item, previous_item_id=previous)

    def _item(self, index: int) -> str:
        assert self.job is not None
        return f"item_{self.job.id.replace('-', '')[:12]}{index:05d}"

    async def _event(self, kind: str, **fields: Any) -> None:
        await self._send({"type": kind, "event_id": f"event_{uuid.uuid4().hex[:20]}", **fields})

    async def _error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        event_id: Any = None,
        kind: str = "invalid_request_error",
    ) -> None:
        error = {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}
        await self._event("error", error=error)

    async def refuse_event(self, kind: str, code: str, message: str, *, close: int) -> None:
        with contextlib.suppress(Exception):
            await self._error(code, message, kind=kind)
            await self.socket.close(code=close, reason=message[:120])


def _session_fields(session: dict[str, Any]) -> dict[str, Any]:
    """What a GA ``session.update`` asks for, in this module's terms."""
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise OpenAIError(
            f"Invalid value: '{kind}'. Cesar serves transcription sessions only: `session.type` must be "
            "'transcription'",
            param="session.type",
            code="invalid_value",
        )
    asked: dict[str, Any] = {}
    audio = session.get("audio") or {}
    source = audio.get("input") or {} if isinstance(audio, dict) else {}
    if not isinstance(source, dict):
        raise OpenAIError("`session.audio.input` must be an object", param="session.audio.input")
    if "format" in source:
        if not isinstance(source["format"], dict):
            raise OpenAIError("`format` must be an object", param="session.audio.input.format")
        asked["format"] = source["format"]
    asked.update(_transcription(source.get("transcription"), "session.audio.input.transcription"))
    if "turn_detection" in source:
        asked["turn_detection"] = source["turn_detection"]
    return asked


def _beta_session(session: dict[str, Any]) -> dict[str, Any]:
    """What a beta ``transcription_session.update`` asks for."""
    asked: dict[str, Any] = {}
    if "input_audio_format" in session:
        name = session["input_audio_format"]
        asked["format"] = {"type": BETA_FORMATS.get(name, str(name))}
    asked.update(
        _transcription(session.get("input_audio_transcription"), "session.input_audio_transcription")
    )
    if "turn_detection" in session:
        asked["turn_detection"] = session["turn_detection"]
    return asked


def _transcription(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OpenAIError("the transcription settings must be an object", param=param)
    asked: dict[str, Any] = {}
    for name in ("model", "language", "prompt"):
        if name in value:
            field = value[name]
            if field is not None and not isinstance(field, str):
                raise OpenAIError(f"`{name}` must be a string", param=f"{param}.{name}")
            asked[name] = field or ("" if name == "prompt" else None)
    if asked.get("model") is None and "model" in asked:
        asked["model"] = "whisper-1"
    language = asked.get("language")
    if language is not None and language not in WHISPER_LANGUAGES:
        raise OpenAIError(
            f"Invalid value: '{language}'. Use an ISO-639-1 code such as en, de, fr",
            param=f"{param}.language",
            code="invalid_value",
        )
    return asked


def _turn_detection(value: Any) -> dict[str, Any] | None:
    """OpenAI's ``turn_detection``, checked, with defaults filled in (None: the client commits)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OpenAIError(
            "`turn_detection` must be an object or null", param="session.audio.input.turn_detection"
        )
    if value.get("type", "server_vad") != "server_vad":
        raise OpenAIError(
            f"Invalid value: '{value.get('type')}'. Supported values are: 'server_vad' (or null)",
            param="session.audio.input.turn_detection.type",
            code="invalid_value",
        )
    checked = dict(SERVER_VAD)
    limits = {"threshold": (0.0, 1.0), "prefix_padding_ms": (0, 10_000), "silence_duration_ms": (0, 10_000)}
    for name, (low, high) in limits.items():
        if value.get(name) is None:
            continue
        number = value[name]
        if isinstance(number, bool) or not isinstance(number, int | float) or not low <= number <= high:
            raise OpenAIError(
                f"`{name}` must be a number from {low} to {high}",
                param=f"session.audio.input.turn_detection.{name}",
                code="invalid_value",
            )
        checked[name] = float(number) if name == "threshold" else int(number)
    return checked


def _stored_turns(turn_detection: dict[str, Any] | None) -> dict[str, Any]:
    """How the session row says it: ``{"type": "none"}`` when the client commits."""
    return {"type": "none"} if turn_detection is None else turn_detection


def _ms(seconds: Any) -> int:
    return round(float(seconds or 0.0) * 1000)
