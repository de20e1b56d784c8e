"""A real webhook receiver on 127.0.0.1 for the webhook tests: answers from a script, records every POST."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Script:
    """What the receiver answers, in order; the last entry repeats. An entry is a status code, or
    ``("hang", seconds)`` to hold the request that long before answering 200."""

    answers: list[int | tuple[str, float]] = field(default_factory=lambda: [200])
    retry_after: str | None = None


class Receiver:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.received: list[Received] = []
        self.arrived = threading.Condition()
        self.release = threading.Event()  # ends every hang early
        self.url = ""

    def next_answer(self) -> int | tuple[str, float]:
        with self.arrived:
            index = min(len(self.received) - 1, len(self.script.answers) - 1)
        return self.script.answers[index]

    def record(self, received: Received) -> None:
        with self.arrived:
            self.received.append(received)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self.received)} of {count} deliveries arrived in {timeout} s")
                self.arrived.wait(remaining)
            return list(self.received)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    receiver: Receiver

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.receiver.record(Received(self.path, headers, body, time.monotonic()))
        answer = self.receiver.next_answer()
        if isinstance(answer, tuple):
            self.receiver.release.wait(answer[1])
            answer = 200
        self.send_response(answer)
        if self.receiver.script.retry_after is not None:
            self.send_header("Retry-After", self.receiver.script.retry_after)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # senders that give up mid-request are part of the tests


@contextmanager
def webhook_receiver(*answers: int | tuple[str, float], retry_after: str | None = None) -> Iterator[Receiver]:
    """A receiver at ``receiver.url`` (``http://127.0.0.1:PORT/hook``)."""
    receiver = Receiver(Script(list(answers) or [200], retry_after))
    handler = type("Handler", (_Handler,), {"receiver": receiver})
    server = _Server(("127.0.0.1", 0), handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
