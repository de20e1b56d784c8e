"""Where a URL job may send Cesar: the address policy against server-side request forgery.

The API checks a URL when it is submitted; the worker checks it again on every redirect hop, and checks the
address it actually connected to (a name can resolve differently the second time).

Always refused: link-local addresses (which include the cloud metadata services), known metadata names and
addresses, unspecified, multicast and reserved addresses. Loopback and private ranges (RFC 1918, CGNAT
100.64/10, IPv6 unique-local fc00::/7, ...) are refused unless ``CESAR_ALLOW_PRIVATE_URLS=true``, or unless
the address lies in one of the networks of ``CESAR_ALLOW_PRIVATE_NETWORKS`` (``allowed``): one internal
server reachable without opening every private address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from cesar_common.errors import URLRefusedError
from cesar_common.text import control_character

__all__ = ["Networks", "check_address", "is_loopback", "resolve_host", "validate_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: private networks a URL may reach even without ``allow_private`` (``CESAR_ALLOW_PRIVATE_NETWORKS``)
Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]

ALLOWED_SCHEMES = frozenset({"http", "https"})

#: Host names of cloud metadata services (compared without a trailing dot, lower case).
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})

#: Metadata services that do not live in a link-local range, so the range checks alone would miss them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "fd00:ec2::254",  # AWS over IPv6 (a unique-local address)
        "100.100.100.200",  # Alibaba Cloud (inside CGNAT 100.64/10)
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure wire server (a public address)
    )
)

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host" on Linux: reaches local services
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

PRIVATE_HINT = (
    "set CESAR_ALLOW_PRIVATE_URLS=true to allow loopback and private addresses, or list the network in "
    "CESAR_ALLOW_PRIVATE_NETWORKS"
)


def validate_url(url: str, *, allow_private: bool, resolve: bool = True, allowed: Networks = ()) -> str:
    """Return ``url`` (stripped) if Cesar may fetch it, else raise :class:`URLRefusedError`.

    With ``resolve`` the host name is looked up and every address it resolves to must pass; without it only
    the URL's form, a literal address and the metadata names are checked. ``allowed``: private networks
    that pass without ``allow_private``.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise URLRefusedError(f"URL refused: malformed URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        got = f" (got '{scheme}:')" if scheme else ""
        raise URLRefusedError(f"URL refused: only http and https URLs are accepted{got}")
    if control_character(url) or any(character.isspace() for character in url):
        raise URLRefusedError("URL refused: it contains spaces or control characters")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise URLRefusedError("URL refused: the URL has no host")
    if host in METADATA_HOSTS:
        raise URLRefusedError(f"URL refused: {host} is a cloud metadata service (never allowed)")

    # with networks allowed, the addresses the name resolves to decide (here or when connecting)
    if (host == "localhost" or host.endswith(".localhost")) and not (allow_private or allowed):
        raise URLRefusedError(f"URL refused: {host} is a loopback address ({PRIVATE_HINT})")
    literal = _parse_address(host)
    if literal is not None:
        check_address(literal, allow_private=allow_private, host=host, allowed=allowed)
    elif resolve:
        for address in resolve_host(host, port or (443 if scheme == "https" else 80)):
            check_address(address, allow_private=allow_private, host=host, allowed=allowed)
    return url


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (URLRefusedError when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise URLRefusedError(f"URL refused: cannot resolve host {host}") from exc
    addresses = []
    for *_, sockaddr in infos:
        address = _parse_address(str(sockaddr[0]))
        if address is not None:
            addresses.append(address)
    if not addresses:
        raise URLRefusedError(f"URL refused: cannot resolve host {host}")
    return addresses


def check_address(
    address: IPAddress | str, *, allow_private: bool, host: str | None = None, allowed: Networks = ()
) -> None:
    """Raise :class:`URLRefusedError` unless the policy lets Cesar connect to ``address``."""
    if isinstance(address, str):
        parsed = _parse_address(address)
        if parsed is None:
            raise URLRefusedError(f"URL refused: {address!r} is not an IP address")
        address = parsed
    problem = address_problem(address, allow_private=allow_private, allowed=allowed)
    if problem is None:
        return
    where = f"{host} resolves to {address}" if host and host != str(address) else str(address)
    raise URLRefusedError(f"URL refused: {where}, {problem}")


def address_problem(address: IPAddress, *, allow_private: bool, allowed: Networks = ()) -> str | None:
    """Why the policy refuses ``address``, or None when it is fine."""
    for candidate in _embedded_ipv4(address):
        problem = address_problem(candidate, allow_private=allow_private, allowed=allowed)
        if problem is not None:
            return problem
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return None  # judged above by the IPv4 address it carries
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64:
        return None  # NAT64 reaches whatever IPv4 address it embeds, judged above

    always = _always_refused(address)
    if always is not None:
        return f"{always} (never allowed)"
    private = _private_kind(address)
    if private is not None and not allow_private and not any(address in network for network in allowed):
        return f"{private} ({PRIVATE_HINT})"
    return None


def _always_refused(address: IPAddress) -> str | None:
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_loopback:
        return None  # ::1 sits inside the reserved ::/8; loopback is a private kind
    if address.is_reserved:
        return "a reserved address"
    return None


def _private_kind(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "a loopback address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a private address"
    if address.is_private or not address.is_global:
        return "a private address"
    return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to (mapped, NAT64, 6to4), which must pass too."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    return found


def is_loopback(host: str) -> bool:
    """True when only this machine can reach a server listening on ``host`` (``localhost``, ``127.0.0.2``,
    ``::1``, ``[::1]``)."""
    if host.lower() == "localhost":
        return True
    address = _parse_address(host.strip("[]"))
    return address is not None and address.is_loopback


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
