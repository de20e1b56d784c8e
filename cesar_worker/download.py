"""Fetching a URL job's audio: streamed to disk, capped in size and in time, with the address policy on every
hop and every connection (:mod:`cesar_worker.egress`).

Redirects are followed by hand, so each hop's URL is checked before it is fetched, and any unusable one
(malformed, another scheme, refused) ends the job as ``download_failed`` with a message. Every failure is a
``ClientError`` whose message a person understands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from cesar_common.errors import DownloadError, PayloadTooLargeError, URLRefusedError
from cesar_common.text import plain_number
from cesar_common.urlpolicy import Networks, validate_url
from cesar_worker import egress

__all__ = ["DownloadStopped", "download"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
MAX_REDIRECTS = 5
CHUNK_BYTES = 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Downloaded:
    url: str  # after redirects
    size: int
    content_type: str | None


class DownloadStopped(Exception):  # control flow, not an error: the job was asked to stop
    pass


def download(
    url: str,
    dest: BinaryIO,
    *,
    max_bytes: int,
    allow_private: bool,
    allowed: Networks = (),
    deadline_seconds: float | None = None,
    max_redirects: int = MAX_REDIRECTS,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    should_stop: Callable[[], bool] | None = None,
) -> Downloaded:
    """Stream ``url`` into ``dest``; raise DownloadError, PayloadTooLargeError or URLRefusedError.

    The whole download (every hop) must end within ``deadline_seconds`` (None: no limit but the timeouts of
    each step); ``should_stop`` is asked at least every quarter of a second, and when it says yes,
    :class:`DownloadStopped` is raised.
    """
    deadline = None if deadline_seconds is None else time.monotonic() + deadline_seconds
    guard = egress.Guard(
        allow_private=allow_private, allowed=allowed, deadline=deadline, should_stop=should_stop
    )
    timeout = httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
    )
    host = _host(url)
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise DownloadError(f"download failed: not a URL that can be fetched ({exc})") from exc
    try:
        with egress.client(guard, timeout=timeout) as client:
            current = validate_url(url, allow_private=allow_private, resolve=False, allowed=allowed)
            for _hop in range(max_redirects + 1):
                host = _host(current)
                with client.stream("GET", current) as response:
                    if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                        current = _next_hop(current, response.headers["location"], guard)
                        continue
                    if response.status_code >= 400:
                        raise DownloadError(
                            f"download failed: {response.status_code} {response.reason_phrase} from {host}"
                        )
                    size = _save(response, dest, max_bytes=max_bytes, host=host)
                    return Downloaded(current, size, response.headers.get("content-type"))
            raise DownloadError(f"download failed: more than {max_redirects} redirects from {_host(url)}")
    except egress.Stopped as exc:
        raise DownloadStopped from exc
    except egress.DeadlineExceeded as exc:
        raise DownloadError(
            f"download failed: {host} did not finish sending within {deadline_seconds or 0:g} s "
            "(CESAR_DOWNLOAD_TIMEOUT_SECONDS)"
        ) from exc
    except httpx.HTTPError as exc:
        raise DownloadError(_describe(exc, host, connect_timeout, read_timeout)) from exc
    except httpx.InvalidURL as exc:  # httpx parses a redirect's Location even when not following it
        raise DownloadError(f"download failed: {host} redirected to an unusable URL: {exc}") from exc


def _next_hop(current: str, location: str, guard: egress.Guard) -> str:
    """The redirect's target, if it is a URL Cesar may fetch (checked before any connection)."""
    target = urljoin(current, location.strip())
    try:
        httpx.URL(target)  # what the client would refuse to send
        return validate_url(target, allow_private=guard.allow_private, resolve=False, allowed=guard.allowed)
    except (URLRefusedError, httpx.InvalidURL) as exc:
        reason = str(exc).removeprefix("URL refused: ")
        raise DownloadError(
            f"download failed: {_host(current)} redirected to an unusable URL: {reason}"
        ) from exc


def _save(response: httpx.Response, dest: BinaryIO, *, max_bytes: int, host: str) -> int:
    # a length that is no plain number is not trusted either way: the count below still caps the body
    declared = plain_number(response.headers.get("content-length", "").strip())
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    written = 0
    # iter_bytes decodes gzip/deflate: counting decoded bytes also caps a compression bomb
    for chunk in response.iter_bytes(CHUNK_BYTES):
        written += len(chunk)
        if written > max_bytes:
            raise _too_large(max_bytes)
        dest.write(chunk)
    if written == 0:
        raise DownloadError(f"download failed: {host} sent an empty file")
    dest.flush()
    return written


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the file is larger than {max_bytes // (1024 * 1024)} MB")


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or url
    except ValueError:
        return url


def _describe(exc: httpx.HTTPError, host: str, connect_timeout: float, read_timeout: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"download failed: {host} did not answer within {connect_timeout:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"download failed: {host} sent nothing for {read_timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"download failed: timed out talking to {host}"
    if isinstance(exc, httpx.ConnectError):
        return f"download failed: could not connect to {host} ({_reason(exc)})"
    return f"download failed: {_reason(exc)} from {host}"


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    if text.startswith("[Errno"):
        text = text.split("]", 1)[-1].strip()  # "[Errno 111] Connection refused" -> "Connection refused"
    return text or type(exc).__name__
