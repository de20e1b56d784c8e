"""The API's address: is its port free, and how to show it."""

from __future__ import annotations

import errno
import socket

from cesar_common.errors import ClientError

__all__ = ["PortInUseError", "base_url", "check_port", "is_listening"]


class PortInUseError(ClientError):
    """Another process listens on the port the API should take."""

    status_code = 409
    code = "port_in_use"

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is in use: pass --port", extra={"port": port})
        self.port = port


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` the way uvicorn will (SO_REUSEADDR), and let go at once.

    Raises PortInUseError, or a ClientError naming the problem (unknown host, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses it
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:
            raise ClientError(f"cannot listen on {host!r}: unknown host (pass --host)") from exc
        except OSError as exc:
            raise _bind_error(exc, host, port) from exc


def _bind_error(exc: OSError, host: str, port: int) -> ClientError:
    if exc.errno == errno.EADDRINUSE:
        return PortInUseError(port)
    if exc.errno == errno.EACCES:
        return ClientError(f"no permission to listen on port {port}: pass --port with a port above 1023")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ClientError(f"cannot listen on {host}: not an address of this machine (pass --host)")
    return ClientError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def is_listening(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """True once something accepts TCP connections on the API's address."""
    try:
        with socket.create_connection((connect_host(host), port), timeout=timeout):
            return True
    except OSError:
        return False


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host`` (wildcards become loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def base_url(host: str, port: int) -> str:
    """``http://127.0.0.1:5000``; IPv6 addresses in brackets."""
    shown = connect_host(host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
