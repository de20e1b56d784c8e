"""Fetching a URL job's audio: streamed to disk, capped, with timeouts and the address policy on every hop.

Redirects are followed by hand so that :func:`cesar_common.urlpolicy.validate_url` runs before each request,
and the address each response actually came from is checked too (a name may resolve differently the second
time: DNS rebinding). Every failure is a ``ClientError`` whose message a person understands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from cesar_common import __version__
from cesar_common.errors import DownloadError, PayloadTooLargeError
from cesar_common.urlpolicy import check_address, validate_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
MAX_REDIRECTS = 5
CHUNK_BYTES = 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = f"cesar/{__version__}"


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
    max_redirects: int = MAX_REDIRECTS,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    should_stop: Callable[[], bool] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Downloaded:
    """Stream ``url`` into ``dest``; raise DownloadError, PayloadTooLargeError or URLRefusedError.

    ``should_stop`` is asked between chunks; when it says yes, :class:`DownloadStopped` is raised.
    """
    timeout = httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
    )
    with httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,  # no proxies or netrc from the environment: the policy must see the real peer
        headers={"User-Agent": USER_AGENT},
        transport=transport,
    ) as client:
        current = url
        for _hop in range(max_redirects + 1):
            validate_url(current, allow_private=allow_private)
            host = _host(current)
            try:
                with client.stream("GET", current) as response:
                    _check_peer(response, allow_private=allow_private, host=host)
                    if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    if response.status_code >= 400:
                        raise DownloadError(
                            f"download failed: {response.status_code} {response.reason_phrase} from {host}"
                        )
                    size = _save(response, dest, max_bytes=max_bytes, host=host, should_stop=should_stop)
                    return Downloaded(current, size, response.headers.get("content-type"))
            except httpx.HTTPError as exc:
                raise DownloadError(_describe(exc, host, connect_timeout, read_timeout)) from exc
        raise DownloadError(f"download failed: more than {max_redirects} redirects from {_host(url)}")


def _save(
    response: httpx.Response,
    dest: BinaryIO,
    *,
    max_bytes: int,
    host: str,
    should_stop: Callable[[], bool] | None,
) -> int:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    written = 0
    # iter_bytes decodes gzip/deflate: counting decoded bytes also caps a compression bomb
    for chunk in response.iter_bytes(CHUNK_BYTES):
        if should_stop is not None and should_stop():
            raise DownloadStopped
        written += len(chunk)
        if written > max_bytes:
            raise _too_large(max_bytes)
        dest.write(chunk)
    if written == 0:
        raise DownloadError(f"download failed: {host} sent an empty file")
    dest.flush()
    return written


def _check_peer(response: httpx.Response, *, allow_private: bool, host: str) -> None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return
    peer = stream.get_extra_info("server_addr")
    if peer:
        check_address(str(peer[0]), allow_private=allow_private, host=host)


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the file is larger than {max_bytes // (1024 * 1024)} MB")


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


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
