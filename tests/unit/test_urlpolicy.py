"""The URL address policy: what a URL job may fetch."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from cesar_common.errors import URLRefusedError
from cesar_common.urlpolicy import validate_url

ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.google.internal./",
    "http://0.0.0.0:8080/",
    "http://0.1.2.3/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254
]

PRIVATE = [
    "http://127.0.0.1:5000/a.mp3",
    "http://127.1.2.3/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # CGNAT
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",  # unique-local
    "http://[fec0::1]/",  # site-local
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://localhost:8000/",
]

PUBLIC = [
    "http://93.184.216.34/audio.mp3",
    "https://8.8.8.8:8443/x",
    "https://[2606:4700:4700::1111]/talk.ogg",
    "http://[64:ff9b::808:808]/",  # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
@pytest.mark.parametrize("allow_private", [False, True])
def test_link_local_metadata_and_special_addresses_are_always_refused(url: str, allow_private: bool) -> None:
    with pytest.raises(URLRefusedError, match="never allowed"):
        validate_url(url, allow_private=allow_private)


@pytest.mark.parametrize("url", PRIVATE)
def test_loopback_and_private_addresses_need_the_setting(url: str) -> None:
    with pytest.raises(URLRefusedError, match="CESAR_ALLOW_PRIVATE_URLS=true"):
        validate_url(url, allow_private=False)
    assert validate_url(url, allow_private=True) == url


@pytest.mark.parametrize("url", PUBLIC)
def test_public_addresses_pass(url: str) -> None:
    assert validate_url(f"  {url} ", allow_private=False) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/a.mp3", "only http and https URLs are accepted (got 'ftp:')"),
        ("file:///etc/passwd", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("example.org/a.mp3", "only http and https URLs are accepted"),
        ("http:///a.mp3", "the URL has no host"),
        ("http://example.org:99999/", "malformed URL"),
        ("http://[::1/", "malformed URL"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(URLRefusedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_url(url, allow_private=True)


def fake_resolver(table: dict[str, list[str]]) -> Any:
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    return getaddrinfo


def test_every_address_a_name_resolves_to_must_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {
        "cdn.example": ["93.184.216.34", "2606:2800:220:1::1"],
        "intranet.example": ["10.1.2.3"],
        "rebind.example": ["93.184.216.34", "169.254.169.254"],
    }
    monkeypatch.setattr(socket, "getaddrinfo", fake_resolver(table))
    assert validate_url("https://cdn.example/a.mp3", allow_private=False) == "https://cdn.example/a.mp3"
    with pytest.raises(URLRefusedError, match=r"intranet.example resolves to 10.1.2.3, a private address"):
        validate_url("http://intranet.example/", allow_private=False)
    assert validate_url("http://intranet.example/", allow_private=True)
    with pytest.raises(URLRefusedError, match=r"169.254.169.254, a cloud metadata address"):
        validate_url("http://rebind.example/", allow_private=True)
    with pytest.raises(URLRefusedError, match=r"cannot resolve host nowhere.example"):
        validate_url("http://nowhere.example/", allow_private=True)


def test_without_resolving_only_the_form_and_literals_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lookups(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("resolve=False must not look names up")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookups)
    assert validate_url("http://intranet.example/", allow_private=False, resolve=False)
    with pytest.raises(URLRefusedError):
        validate_url("http://10.0.0.1/", allow_private=False, resolve=False)
    with pytest.raises(URLRefusedError, match=r"api.localhost is a loopback address"):
        validate_url("http://api.localhost/", allow_private=False, resolve=False)
    with pytest.raises(URLRefusedError):
        validate_url("http://metadata.google.internal/", allow_private=True, resolve=False)


def test_odd_spellings_of_loopback_are_caught_by_resolving() -> None:
    # 2130706433 == 0x7f000001: the C resolver reads it as 127.0.0.1 (no DNS involved)
    with pytest.raises(URLRefusedError, match=r"127.0.0.1, a loopback address"):
        validate_url("http://2130706433/", allow_private=False)


def test_an_allowed_network_opens_its_addresses_only(monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.8.0.0/16")]
    assert validate_url("http://127.0.0.1:8000/live.m3u8", allow_private=False, allowed=allowed)
    assert validate_url("http://10.8.3.4/radio", allow_private=False, allowed=allowed)
    assert validate_url("http://[::ffff:10.8.0.1]/", allow_private=False, allowed=allowed)  # IPv4-mapped
    for outside in ("http://127.0.0.2/", "http://10.9.0.1/", "http://[::1]/", "http://192.168.1.1/"):
        with pytest.raises(URLRefusedError, match="CESAR_ALLOW_PRIVATE_NETWORKS"):
            validate_url(outside, allow_private=False, allowed=allowed)
    # a name is judged by what it resolves to, not by its spelling
    monkeypatch.setattr(socket, "getaddrinfo", fake_resolver({"localhost": ["127.0.0.1", "127.0.0.2"]}))
    with pytest.raises(URLRefusedError, match=r"localhost resolves to 127.0.0.2"):
        validate_url("http://localhost/", allow_private=False, allowed=allowed)


def test_an_allowed_network_never_opens_link_local_or_metadata_addresses() -> None:
    allowed = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("100.64.0.0/10")]
    for url in ("http://169.254.169.254/latest/meta-data/", "http://100.100.100.200/"):
        with pytest.raises(URLRefusedError, match="never allowed"):
            validate_url(url, allow_private=False, allowed=allowed)
