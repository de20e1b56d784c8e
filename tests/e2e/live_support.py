"""A raw client of the live protocol (``docs/live.md``) for the end-to-end tests: it sends 16 kHz PCM at a
chosen pace on one thread, reads events on another, and records when each event came in terms of the audio
sent by then (so that tests compare audio, not wall-clock times)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from cesar_common.transcription.audio import decode_samples

BYTES_PER_SECOND = 32000  # 16 kHz, 16-bit mono
FRAME_BYTES = 3200  # 100 ms


def pcm_of(path: Path) -> bytes:
    return (decode_samples(path) * 32768).clip(-32768, 32767).astype("<i2").tobytes()


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/live"


@dataclass
class Event:
    data: dict[str, Any]
    sent_seconds: float  # audio sent when it arrived


@dataclass
class LiveSession:
    """One session, possibly over several connections (``resume``)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)  # sent with each handshake (an API key)
    events: list[Event] = field(default_factory=list)
    session_id: str | None = None
    sent_bytes: int = 0
    closes: list[tuple[int | None, str]] = field(default_factory=list)
    resumes: int = 0
    _ws: ClientConnection | None = None
    _reader: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- connections ------------------------------------------------------------------------------
    def open(self, first: dict[str, Any], *, timeout: float = 30) -> dict[str, Any]:
        """Connect and send ``first``; the server's first answer (``session`` or ``error``)."""
        self._ws = connect(
            self.url,
            open_timeout=timeout,
            max_size=None,
            compression=None,
            additional_headers=self.headers,
            legacy=True,
        )
        self._ws.send(json.dumps(first))
        answer = json.loads(self._ws.recv(timeout=timeout))
        self._record(answer)
        if answer["type"] == "session":
            self.session_id = answer["session_id"]
            self._reader = threading.Thread(target=self._read, args=(self._ws,), daemon=True)
            self._reader.start()
        else:
            self._drain(self._ws)
        return answer

    def start(self, **options: Any) -> dict[str, Any]:
        return self.open({"type": "start", **options})

    def resume(self, *, timeout: float = 60) -> dict[str, Any]:
        """Connect again (retrying while the API is away) and go on after the last segment received."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.open(
                    {"type": "resume", "session_id": self.session_id, "last_segment": self.last_segment_id()}
                )
            except (OSError, WebSocketException, TimeoutError):  # the API is restarting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
                continue
            self.resumes += 1
            return answer

    def connected(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    # --- audio --------------------------------------------------------------------------------------
    def send_audio(self, pcm: bytes, *, pace: float | None = 1.0, until: int | None = None) -> None:
        """Send ``pcm`` from ``sent_bytes`` on (to ``until``), at ``pace`` times speaking speed (None: at
        once). Reconnects and resumes when the connection drops, resending from what the server has."""
        end = len(pcm) if until is None else until
        started = time.monotonic() - self.sent_bytes / BYTES_PER_SECOND / (pace or 1.0)
        while self.sent_bytes < end:
            if pace is not None:
                due = started + self.sent_bytes / BYTES_PER_SECOND / pace
                time.sleep(max(0.0, due - time.monotonic()))
            frame = pcm[self.sent_bytes : min(self.sent_bytes + FRAME_BYTES, end)]
            try:
                assert self._ws is not None
                self._ws.send(frame)
            except ConnectionClosed:
                answer = self.resume()
                assert answer["type"] == "session", answer
                if answer["job"]["status"] in ("completed", "error", "cancelled"):
                    return  # the session ended meanwhile: its final event follows
                self.sent_bytes = int(answer["audio_bytes"])
                continue
            self.sent_bytes += len(frame)

    def stop(self) -> None:
        while True:
            try:
                assert self._ws is not None
                self._ws.send(json.dumps({"type": "stop"}))
                return
            except ConnectionClosed:
                answer = self.resume()
                self.sent_bytes = int(answer["audio_bytes"])

    def wait_final(self, *, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            final = self.first("final")
            if final is not None:
                if self._reader is not None:
                    self._reader.join(30)  # the server closes after the final event
                return final
            time.sleep(0.1)
        raise AssertionError(
            f"no final event within {timeout} s; got {[e.data['type'] for e in self.events]}"
        )

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()

    # --- events -------------------------------------------------------------------------------------
    def of_type(self, kind: str) -> list[Event]:
        with self._lock:
            return [event for event in self.events if event.data["type"] == kind]

    def first(self, kind: str) -> dict[str, Any] | None:
        found = self.of_type(kind)
        return found[0].data if found else None

    def segments(self) -> list[dict[str, Any]]:
        return [event.data for event in self.of_type("segment")]

    def last_segment_id(self) -> int:
        segments = self.segments()
        return int(segments[-1]["id"]) if segments else -1

    def _record(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(Event(data, self.sent_bytes / BYTES_PER_SECOND))

    def _read(self, ws: ClientConnection) -> None:
        self._drain(ws)

    def _drain(self, ws: ClientConnection) -> None:
        try:
            for message in ws:
                self._record(json.loads(message))
        except ConnectionClosed:
            pass
        close = ws.protocol.close_rcvd
        self.closes.append((None if close is None else close.code, "" if close is None else close.reason))
