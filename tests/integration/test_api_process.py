"""The API as its own process: ``python -m cesar_api`` and ``cesar api`` over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from api_helpers import AUDIO_DIR
from dbtools import migrate

CESAR = Path(sys.executable).with_name("cesar")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    env.update(CESAR_DATABASE_URL=database_url, CESAR_PORT=str(port), CESAR_LOG_LEVEL="warning")
    env.update(extra)
    return env


@contextmanager
def api_process(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 20) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"the API exited: {process.communicate()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            time.sleep(0.02)
    raise AssertionError("the API did not answer /health")


def test_python_m_cesar_api_serves_and_stops_on_sigterm(sqlite_url: str) -> None:
    port = free_port()
    env = api_env(sqlite_url, port, CESAR_MAX_UPLOAD_MB="5")
    with api_process([sys.executable, "-m", "cesar_api"], env) as process:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process)
        with (AUDIO_DIR / "speech_en.flac").open("rb") as audio:
            response = httpx.post(f"{url}/transcribe", files={"file": ("speech_en.flac", audio)}, timeout=30)
        assert response.status_code == 202, response.text
        job = httpx.get(f"{url}{response.headers['location']}").json()
        assert job["status"] == "queued"
        assert job["audio_path"] == "speech_en.flac"
        assert httpx.get(f"{url}/docs/openapi.json").json()["info"]["title"] == "Cesar"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_cesar_api_runs_with_options(sqlite_url: str) -> None:
    port = free_port()
    env = api_env("sqlite:////nonexistent/ignored.db", 1)
    argv = [str(CESAR), "api", "--db", sqlite_url, "--port", str(port), "--host", "127.0.0.1"]
    with api_process(argv, env) as process:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0


def test_cesar_api_refuses_a_database_behind_the_schema(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    result = subprocess.run(
        [str(CESAR), "api", "--port", str(free_port())],
        env=api_env(empty, 0),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "cesar db upgrade" in lines[0]
    assert "Traceback" not in result.stderr


def test_cesar_api_reports_a_bad_option_in_one_line() -> None:
    result = subprocess.run(
        [str(CESAR), "api", "--port", "99999"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1  # a usage error is bad input (docs/cli.md)
    assert "99999" in result.stderr and "Traceback" not in result.stderr


def test_the_api_never_imports_faster_whisper(tmp_path: Path) -> None:
    """Not at import, not while serving an upload (the probe uses PyAV alone)."""
    url = f"sqlite:///{tmp_path / 'cesar.db'}"
    migrate(url)
    script = f"""
import json, sys
from litestar.testing import TestClient
from cesar_api.app import create_app
from cesar_common.settings import Settings
app = create_app(Settings(database_url={url!r}))
with TestClient(app) as client:
    with open({str(AUDIO_DIR / "speech_en.mp3")!r}, "rb") as audio:
        assert client.post("/transcribe", files={{"file": audio}}).status_code == 202
    assert client.get("/docs/openapi.json").status_code == 200
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("faster_whisper", "ctranslate2"))))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_a_public_address_without_a_key_refuses_to_start_unless_insecure(sqlite_url: str) -> None:
    port = free_port()
    refused = subprocess.run(
        [str(CESAR), "api", "--host", "0.0.0.0"],
        env=api_env(sqlite_url, port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: refusing to listen on 0.0.0.0 with no API key")
    assert refused.stderr.count("\n") == 1
    # python -m cesar_api (what `cesar serve` starts) reads CESAR_INSECURE; it serves, and warns
    env = api_env(sqlite_url, port, CESAR_HOST="0.0.0.0", CESAR_LOG_LEVEL="info", CESAR_INSECURE="true")
    with api_process([sys.executable, "-m", "cesar_api"], env) as process:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=15)
    assert "without an API key (--insecure)" in err
