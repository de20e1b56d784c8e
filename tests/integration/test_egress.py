"""Outgoing connections (URL downloads, webhooks) check the address they connect to before connecting, and
cannot be held open by a slow peer past their deadline or after a cancel."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from worker_support import audio_server

from cesar_common.errors import DownloadError, URLRefusedError
from cesar_common.urlpolicy import validate_url
from cesar_worker.download import DownloadStopped, download

PUBLIC = "93.184.215.14"  # what the rebinding name says first


class Counting(BaseHTTPRequestHandler):
    """Records every request that reaches it: the tests assert on the receiver, not on an exception."""

    seen: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"data")

    do_GET = do_POST = _answer


@pytest.fixture
def local_receiver() -> Iterator[tuple[int, list[str]]]:
    handler = type("Handler", (Counting,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1]), handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``rebind.test`` resolves to a public address the first time, to 127.0.0.1 after that."""
    answers: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        address = PUBLIC if not answers else "127.0.0.1"
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_a_rebinding_name_never_reaches_the_local_server_on_download(
    local_receiver: tuple[int, list[str]], rebinding_dns: list[str]
) -> None:
    port, seen = local_receiver
    url = f"http://rebind.test:{port}/audio.mp3"
    assert validate_url(url, allow_private=False) == url  # the submit-time check sees the public address
    with pytest.raises(URLRefusedError, match=r"rebind\.test resolves to 127\.0\.0\.1"):
        download(url, io.BytesIO(), max_bytes=1024, allow_private=False)
    assert rebinding_dns == [PUBLIC, "127.0.0.1"]
    assert seen == []  # not a single request reached it


def test_a_rebinding_name_never_reaches_the_local_receiver_on_webhook(
    local_receiver: tuple[int, list[str]], rebinding_dns: list[str], sqlite_url: str
) -> None:
    from cesar_common.db.records import JobResult, JobSource, NewJob, TranscribeOptions, WebhookState
    from cesar_common.db.store import JobStore
    from cesar_common.settings import Settings
    from cesar_worker.webhook_sender import WebhookSender

    port, seen = local_receiver
    hook = f"http://rebind.test:{port}/hook"
    assert validate_url(hook, allow_private=False) == hook  # as the API checked it at submit
    store = JobStore.from_url(sqlite_url)
    new = NewJob(
        JobSource.URL, TranscribeOptions(model="tiny.en"), source_url="https://a.b/c", callback_url=hook
    )
    job = store.create_job(new, None)
    assert store.claim_work("w", lease_seconds=60) is not None
    store.complete_job(job.id, "w", JobResult("hi", "en", 1.0, 1.0, []))
    sender = WebhookSender(store, Settings(database_url=sqlite_url, allow_private_urls=False), "sender")
    assert sender.send_one()
    [delivery] = store.list_deliveries(job.id)
    store.close()
    assert delivery.state is WebhookState.FAILED
    assert "127.0.0.1" in (delivery.last_error or "")
    assert seen == []


@pytest.fixture(scope="module")
def slow_server(audio_dir: Path) -> Iterator[str]:
    with audio_server(audio_dir) as base:
        yield base


@pytest.mark.timeout(60)  # the server trickles for 10 minutes: only the deadline ends this test
def test_a_trickling_server_cannot_hold_a_download_past_its_deadline(slow_server: str) -> None:
    with pytest.raises(DownloadError, match=r"did not finish sending within 2 s"):
        download(
            f"{slow_server}/trickle?every=0.5&seconds=600",
            io.BytesIO(),
            max_bytes=10**9,
            allow_private=True,
            deadline_seconds=2,
        )


@pytest.mark.timeout(60)
def test_a_cancel_stops_a_trickling_download(slow_server: str) -> None:
    received = io.BytesIO()
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()  # a client cancels while bytes still trickle in
    with pytest.raises(DownloadStopped):
        download(
            f"{slow_server}/trickle?every=3&seconds=600",
            received,
            max_bytes=10**9,
            allow_private=True,
            should_stop=stop.is_set,
        )
