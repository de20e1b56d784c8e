"""Numbers a client sends, hostile ones included: a session cookie's expiry and ``Last-Event-ID`` get a 401
or a 400 in the one error shape, never a 500, a broken stream or a traceback in the API's log.

The API runs as its own process (``python -m cesar_api``), so its log is what an operator would read: its
stderr, every logger and uvicorn's included.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from api_helpers import completed_job

from cesar_common.db.store import JobStore

KEY = "hostile-test-key"
#: what ``str.isdigit()`` passes and ``int()`` refuses or reads (the server decodes headers as latin-1, so
#: these are the digits a header can carry), too many digits for ``int()``, and the near misses
HOSTILE_NUMBERS = [
    "9" * 5000,
    "\xb2",
    "\xb9\xb2\xb3",
    "1\xb2",
    "9" * 19,
    "-1",
    "+1",
    " 1",
    "1_0",
    "0x10",
    "1e9",
    "",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def api(db_url: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m cesar_api`` with an API key on ``db_url``; its URL and the process (whose stderr is the
    log, read once it has stopped)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    env.update(CESAR_DATABASE_URL=db_url, CESAR_PORT=str(port), CESAR_API_KEY=KEY, CESAR_LOG_LEVEL="warning")
    process = subprocess.Popen(
        [sys.executable, "-m", "cesar_api"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the API did not answer /health"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.02)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def stopped_log(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=15)
    return stderr


def error_detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.request.headers, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status_code"] == status and body["code"]
    return str(body["detail"])


def test_hostile_cookies_and_event_ids_are_refused_without_a_traceback(
    db_url: str, api: tuple[str, subprocess.Popen[str]]
) -> None:
    url, process = api
    store = JobStore.from_url(db_url)
    try:
        job = completed_job(store)
    finally:
        store.close()
    events = f"{url}/jobs/{job.id}/events"
    with httpx.Client(timeout=30) as client:
        future = str(int(time.time()) + 3600)
        cookies = [f"{number}.x" for number in HOSTILE_NUMBERS]
        cookies += ["9" * 5000, ".", "..", f"{future}.forged", f"{future}.\xe9", f"{future}"]
        for cookie in cookies:
            # bytes: the header goes as sent, latin-1 digits included (httpx would refuse them as text)
            response = client.get(events, headers={"Cookie": f"cesar_session={cookie}".encode("latin-1")})
            assert "API key" in error_detail(response, 401)
        bearer = {"Authorization": f"Bearer {KEY}"}
        for event_id in [f"{number}.1" for number in HOSTILE_NUMBERS] + ["1.\xb2", "1", "1.2.3", "1.", "."]:
            if event_id != event_id.strip():
                continue  # HTTP trims a header value: the client refuses to send it untrimmed
            response = client.get(events, headers={**bearer, "Last-Event-ID": event_id.encode("latin-1")})
            detail = error_detail(response, 400)
            assert "Last-Event-ID" in detail
        for event_id in ["", "1.0", "1.2", "999999999999999999.999999999999999999"]:
            response = client.get(events, headers={**bearer, "Last-Event-ID": event_id})
            assert response.status_code == 200, response.text
            assert "event: end" in response.text  # the finished job's stream, whole
    log = stopped_log(process)
    assert "Traceback" not in log and "Exception" not in log, log
