"""Outgoing HTTP from a worker (URL downloads, webhook deliveries): it connects only where the address policy
allows, and it never waits on a peer longer than its caller allows.

- **Addresses are checked before connecting.** The host name is resolved here, once per connection, every
  address it resolves to must pass the policy (:mod:`cesar_common.urlpolicy`), and the socket connects to
  one of exactly those addresses. The request keeps its URL, so the Host header and TLS (the certificate is
  verified for the host name, sent as SNI) are unchanged: only the address lookup is ours. A name that
  resolves to a public address when a URL is checked and to 127.0.0.1 when it is fetched (DNS rebinding)
  never reaches 127.0.0.1.
- **Nothing blocks for long.** Each socket operation waits at most :data:`TICK` seconds at a time, and
  between waits the exchange's :class:`Guard` is asked whether to go on: a deadline for the whole exchange,
  a job's cancel or a worker's shutdown are noticed within a tick, however slowly a peer trickles bytes.

The Guard raises :class:`Stopped` or :class:`DeadlineExceeded` from inside the HTTP client; callers catch
them around the whole exchange.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpcore
import httpx

from cesar_common import __version__
from cesar_common.errors import URLRefusedError
from cesar_common.urlpolicy import Networks, check_address, resolve_host

__all__ = ["DeadlineExceeded", "Guard", "Stopped", "client"]

#: the longest a socket operation blocks before the guard is asked again
TICK = 0.25
USER_AGENT = f"cesar/{__version__}"


class Stopped(Exception):  # control flow: the caller asked to stop
    pass


class DeadlineExceeded(Exception):  # the exchange took longer than its deadline
    pass


@dataclass
class Guard:
    """What an exchange may do: connect where ``allow_private`` and ``allowed`` (private networks) allow,
    until ``deadline`` (a ``time.monotonic()`` value), as long as ``should_stop()`` says no. ``on_tick``
    runs between waits (a webhook sender keeps its delivery's lease with it)."""

    allow_private: bool
    allowed: Networks = ()
    deadline: float | None = None
    should_stop: Callable[[], bool] | None = None
    on_tick: Callable[[], None] | None = None

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Stopped
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineExceeded
        if self.on_tick is not None:
            self.on_tick()

    def wait_for(self, until: float | None) -> float:
        """How long the next blocking step may wait: a tick, less when ``until`` or the deadline is nearer."""
        limits = [TICK]
        limits += [end - time.monotonic() for end in (until, self.deadline) if end is not None]
        return max(min(limits), 0.001)


def client(guard: Guard, *, timeout: httpx.Timeout, headers: dict[str, str] | None = None) -> httpx.Client:
    """An HTTP client whose connections obey ``guard``: no proxies or settings from the environment (the
    policy must see the real peer), no redirects followed (callers check every hop)."""
    return httpx.Client(
        transport=_GuardedTransport(guard),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
    )


@cache
def _ssl_context() -> ssl.SSLContext:
    # loading the CA bundle costs a tenth of a second: once per process, not per request
    return httpx.create_ssl_context()


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, guard: Guard) -> None:
        super().__init__(verify=_ssl_context())
        # httpx's transport over httpcore's pool, with our network backend in place of the default one
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(), network_backend=_GuardedBackend(guard), max_connections=2
        )


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.guard.check()
        addresses = _vetted_addresses(host, port, self.guard)
        until = None if timeout is None else time.monotonic() + timeout
        failure: Exception | None = None
        for address in addresses:
            try:
                sock = _connect(str(address), port, self.guard, until, socket_options or ())
            except OSError as exc:  # refused, unreachable: the next address may answer
                failure = exc
                continue
            return _GuardedStream(sock, self.guard)
        if isinstance(failure, TimeoutError):
            raise httpcore.ConnectTimeout(f"{host} did not accept a connection in time")
        raise httpcore.ConnectError(str(failure) if failure else f"cannot connect to {host}")


def _vetted_addresses(host: str, port: int, guard: Guard) -> list[Any]:
    """Every address ``host`` resolves to, all of them allowed (URLRefusedError otherwise)."""
    try:
        addresses = resolve_host(host, port)
    except URLRefusedError as exc:
        raise httpcore.ConnectError(f"cannot resolve host {host}") from exc
    for address in addresses:
        check_address(address, allow_private=guard.allow_private, host=host, allowed=guard.allowed)
    return addresses


def _connect(
    address: str, port: int, guard: Guard, until: float | None, options: Iterable[Any]
) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in options:
            sock.setsockopt(*option)
        sock.setblocking(False)
        code = sock.connect_ex((address, port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, f"cannot connect to {address}:{port}: {os.strerror(code)}")
        while True:
            _, writable, _ = select.select([], [sock], [], guard.wait_for(until))
            if writable:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, os.strerror(error))
                return sock
            guard.check()
            if until is not None and time.monotonic() >= until:
                raise TimeoutError(f"{address}:{port} did not accept a connection in time")
    except BaseException:
        sock.close()
        raise


@dataclass
class _GuardedStream(httpcore.NetworkStream):
    sock: socket.socket
    guard: Guard
    _closed: bool = field(default=False, init=False)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            self.guard.check()
            self.sock.settimeout(self.guard.wait_for(until))
            try:
                return self.sock.recv(max_bytes)
            except TimeoutError:
                if until is not None and time.monotonic() >= until:
                    raise httpcore.ReadTimeout("no data in time") from None
            except OSError as exc:
                raise httpcore.ReadError(str(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        until = None if timeout is None else time.monotonic() + timeout
        view = memoryview(buffer)
        while view:
            self.guard.check()
            self.sock.settimeout(self.guard.wait_for(until))
            try:
                view = view[self.sock.send(view) :]
            except TimeoutError:
                if until is not None and time.monotonic() >= until:
                    raise httpcore.WriteTimeout("the peer did not take the data in time") from None
            except OSError as exc:
                raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sock.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        until = None if timeout is None else time.monotonic() + timeout
        try:
            wrapped = ssl_context.wrap_socket(
                self.sock, server_hostname=server_hostname, do_handshake_on_connect=False
            )
            while True:
                self.guard.check()
                wrapped.settimeout(self.guard.wait_for(until))
                try:
                    wrapped.do_handshake()
                    return _GuardedStream(wrapped, self.guard)
                except TimeoutError:
                    if until is not None and time.monotonic() >= until:
                        raise httpcore.ConnectTimeout("the TLS handshake did not finish in time") from None
        except (ssl.SSLError, OSError) as exc:
            self.close()
            raise httpcore.ConnectError(str(exc)) from exc
        except BaseException:
            self.close()
            raise

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object" and isinstance(self.sock, ssl.SSLSocket):
            return self.sock._sslobj  # type: ignore[attr-defined]  # what httpcore's own stream returns
        if info == "client_addr":
            return self.sock.getsockname()
        if info == "server_addr":
            return self.sock.getpeername()
        if info == "socket":
            return self.sock
        if info == "is_readable":
            readable, _, _ = select.select([self.sock], [], [], 0)
            return bool(readable)
        return None
