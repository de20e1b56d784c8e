"""URL downloads over real HTTP (a local server): streaming, redirects, the address policy, limits."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_support import audio_server

from cesar_common.errors import DownloadError, PayloadTooLargeError, URLRefusedError
from cesar_worker import download as download_module
from cesar_worker.download import DownloadStopped, download

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(audio_dir: Path) -> Iterator[str]:
    with audio_server(audio_dir) as base:
        yield base


def fetch(url: str, **kwargs: object) -> tuple[bytes, object]:
    out = io.BytesIO()
    options: dict[str, object] = {"max_bytes": 10 * MIB, "allow_private": True, **kwargs}
    result = download(url, out, **options)  # type: ignore[arg-type]
    return out.getvalue(), result


def test_a_file_is_streamed_to_disk(server: str, audio_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "a.wav"
    with target.open("wb") as out:
        result = download(f"{server}/audio/speech_en.wav", out, max_bytes=10 * MIB, allow_private=True)
    assert target.read_bytes() == (audio_dir / "speech_en.wav").read_bytes()
    assert result.size == target.stat().st_size


def test_redirects_are_followed_and_checked_on_every_hop(server: str, audio_dir: Path) -> None:
    data, result = fetch(f"{server}/redirect?to=/redirect%3Fto%3D/audio/speech_en.mp3")
    assert data == (audio_dir / "speech_en.mp3").read_bytes()
    assert result.url == f"{server}/audio/speech_en.mp3"  # type: ignore[attr-defined]
    # an unusable hop ends the download with a message, before any connection to it
    with pytest.raises(DownloadError, match=r"redirected to an unusable URL: 169\.254\.169\.254, a cloud"):
        fetch(f"{server}/redirect?to=http://169.254.169.254/latest/meta-data/")
    with pytest.raises(DownloadError, match="redirected to an unusable URL: only http and https"):
        fetch(f"{server}/redirect?to=file:///etc/passwd")
    with pytest.raises(DownloadError, match="redirected to an unusable URL"):
        fetch(f"{server}/redirect?to=http:%5C%5C169.254.169.254%5Cx")  # http:\\169.254.169.254\x


def test_redirects_are_bounded(server: str) -> None:
    with pytest.raises(DownloadError, match=r"download failed: more than 5 redirects from 127.0.0.1"):
        fetch(f"{server}/loop")


def test_the_private_address_policy_applies(server: str) -> None:
    with pytest.raises(URLRefusedError, match="CESAR_ALLOW_PRIVATE_URLS"):
        fetch(f"{server}/audio/speech_en.wav", allow_private=False)


def test_the_connected_address_is_checked_too(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the name looked public when checked, then resolved to loopback for the connection
    monkeypatch.setattr(download_module, "validate_url", lambda url, **kwargs: url)
    with pytest.raises(URLRefusedError, match=r"127.0.0.1, a loopback address"):
        fetch(f"{server}/audio/speech_en.wav", allow_private=False)


def test_http_errors_read_like_a_sentence(server: str) -> None:
    with pytest.raises(DownloadError, match=r"^download failed: 404 Not Found from 127.0.0.1$"):
        fetch(f"{server}/nothing-here.mp3")


@pytest.mark.parametrize("route", ["big", "stream"])
def test_the_size_cap_holds_with_or_without_a_declared_length(server: str, route: str) -> None:
    with pytest.raises(PayloadTooLargeError, match=r"^the file is larger than 1 MB$"):
        fetch(f"{server}/{route}?bytes={3 * MIB}", max_bytes=MIB)


def test_a_stalled_server_times_out(server: str) -> None:
    with pytest.raises(DownloadError, match=r"download failed: 127.0.0.1 sent nothing for 0.3 s"):
        fetch(f"{server}/stall?seconds=2", read_timeout=0.3)


def test_a_closed_port_is_reported(unused_port: int) -> None:
    with pytest.raises(DownloadError, match=r"could not connect to 127.0.0.1 \(.*refused.*\)"):
        fetch(f"http://127.0.0.1:{unused_port}/a.mp3")


def test_an_empty_body_is_an_error(server: str) -> None:
    with pytest.raises(DownloadError, match=r"127.0.0.1 sent an empty file"):
        fetch(f"{server}/empty")


def test_a_stop_request_interrupts_the_download(server: str) -> None:
    with pytest.raises(DownloadStopped):
        fetch(f"{server}/stream?bytes={4 * MIB}", should_stop=lambda: True)


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
