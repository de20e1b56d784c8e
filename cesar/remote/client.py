"""A Cesar server's HTTP API, as the client commands use it: retries, one-line errors, live events.

Connection errors (and ``503``, the server's database away) are retried with backoff; every other error
becomes a :class:`RemoteError` whose ``exit_code`` the command ends with (docs/remote.md lists them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from cesar_common.errors import CesarError

__all__ = ["EXIT_JOB_FAILED", "EXIT_REFUSED", "EXIT_SERVER", "RemoteAPI", "RemoteError"]

#: exit codes of the client commands (1 and 130 as every command)
EXIT_REFUSED = 1  # the server refused the request: bad input, not audio, too large, unknown job (4xx)
EXIT_SERVER = 2  # the server failed (5xx)
EXIT_UNREACHABLE = 3  # no answer from the server, after retries
EXIT_UNAUTHORIZED = 4  # a missing or wrong API key (401)
EXIT_JOB_FAILED = 5  # a job ended `error` or `cancelled` (--wait)

BACKOFF = (0.5, 1.0, 2.0, 4.0)  # seconds between tries of a request the server did not answer
EVENTS_READ_TIMEOUT = 60.0  # the server sends a keep-alive every 15 s


class RemoteError(CesarError):
    """What went wrong talking to the server, with the exit code the command ends with."""

    def __init__(self, message: str, exit_code: int, *, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


def error_of(response: httpx.Response) -> RemoteError:
    try:
        body = response.json()
        detail = str(body.get("detail") or body.get("error", {}).get("message") or response.reason_phrase)
    except (ValueError, AttributeError):
        detail = response.reason_phrase or "no detail"
    status = response.status_code
    if status == 401:
        return RemoteError(
            f"{detail} (401: set CESAR_API_KEY or --api-key to the server's key)",
            EXIT_UNAUTHORIZED,
            status=401,
        )
    code = EXIT_SERVER if status >= 500 else EXIT_REFUSED
    return RemoteError(f"{detail} ({status})", code, status=status)


class _Progress:
    """A file object that reports how far into it reading has come (the upload's progress, in bytes)."""

    def __init__(self, handle: IO[bytes], report: Callable[[int], None]) -> None:
        self._handle = handle
        self._report = report

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._report(self._handle.tell())
        return chunk

    def fileno(self) -> int:  # httpx sizes the upload from it (a Content-Length, not chunks)
        return self._handle.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()


class RemoteAPI:
    def __init__(self, server: str, api_key: str | None, *, backoff: tuple[float, ...] = BACKOFF) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=httpx.Timeout(30.0))
        self.backoff = backoff

    def close(self) -> None:
        self.http.close()

    # --- requests --------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        rewind: IO[bytes] | None = None,
        answers: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """``method path``, tried again after a connection error or a 503. ``rewind``: a file in the body,
        read from the start again on each try; ``answers``: error statuses returned as they are."""
        for attempt, pause in enumerate((*self.backoff, None)):
            if rewind is not None:
                rewind.seek(0)
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if pause is None:
                    raise RemoteError(
                        f"cannot reach the Cesar server at {self.server} after {attempt + 1} tries: {exc} "
                        "(is it running? --server or CESAR_SERVER names it)",
                        EXIT_UNREACHABLE,
                    ) from exc
                time.sleep(pause)
                continue
            if response.status_code in answers:
                return response
            if response.status_code == 503 and pause is not None:
                time.sleep(pause)
                continue
            if response.is_error:
                raise error_of(response)
            return response
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def submit_file(
        self, path: Path, fields: dict[str, str], *, key: str, uploaded: Callable[[int], None]
    ) -> dict[str, Any]:
        with path.open("rb") as handle:
            body = _Progress(handle, uploaded)
            response = self.request(
                "POST",
                "/transcribe",
                rewind=handle,
                files={"file": (path.name, body)},
                data=fields,
                headers={"Idempotency-Key": key},
                timeout=httpx.Timeout(30.0, write=300.0),
            )
        return response.json()  # type: ignore[no-any-return]

    def submit_url(self, url: str, fields: dict[str, Any], *, key: str) -> dict[str, Any]:
        response = self.request(
            "POST", "/transcribe/url", json={"url": url, **fields}, headers={"Idempotency-Key": key}
        )
        return response.json()  # type: ignore[no-any-return]

    def transcript(self, job_id: str, fmt: str) -> str:
        return self.request("GET", f"/jobs/{job_id}/transcript", params={"format": fmt}).text

    # --- live events ---------------------------------------------------------------------------------
    def follow(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's events (``job``, ``segment``, ``end``) until ``end``, reconnecting where it left off
        when the connection drops."""
        last_id: str | None = None
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self.http.stream(
                    "GET",
                    f"/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=EVENTS_READ_TIMEOUT),
                ) as response:
                    if response.is_error:
                        response.read()
                        if response.status_code != 503:
                            raise error_of(response)
                    else:
                        for event_id, kind, data in _events(response.iter_lines()):
                            failures = 0
                            last_id = event_id or last_id
                            yield kind, data
                            if kind == "end":
                                return
            except httpx.TransportError as exc:
                if failures >= len(self.backoff):
                    raise RemoteError(
                        f"lost the Cesar server at {self.server} while following job {job_id}: {exc}",
                        EXIT_UNREACHABLE,
                    ) from exc
            time.sleep(self.backoff[min(failures, len(self.backoff) - 1)])
            failures += 1


def _events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
    """Server-sent events as (id, event, data as JSON)."""
    event_id: str | None = None
    kind = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event_id, kind, json.loads("\n".join(data))
            event_id, kind, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                event_id = value
            elif name == "event":
                kind = value
            elif name == "data":
                data.append(value)
