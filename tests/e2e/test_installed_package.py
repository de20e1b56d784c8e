"""Cesar as a user installs it: the wheel, with the locked dependencies, in a fresh virtual environment
outside the repository. It migrates SQLite and PostgreSQL from any directory, serves and transcribes an
upload, and its worker takes a job that an API from this checkout queued (a GPU box needs only the wheel
and CESAR_DATABASE_URL).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from serve_helpers import AUDIO_DIR, SPEECH_WORDS, Client, cesar_env, free_port, running_serve, start_cesar

from cesar_common.db.connect import normalize_url

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(900)


def outside_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """No trace of this checkout: no PYTHONPATH, no CESAR_* from the developer."""
    env = cesar_env(extra)
    env.pop("PYTHONPATH", None)
    return env


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env or outside_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with requirements.lock and the wheel installed; its bin/."""
    root = tmp_path_factory.mktemp("installed")
    dist, venv = root / "dist", root / "venv"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist)]
    run([*build, str(REPO)], cwd=root)
    [wheel] = dist.glob("cesar-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    # uv installs the same locked, hash-checked files as pip, several times faster (it is a dev dependency)
    uv = [
        str(Path(sys.executable).with_name("uv")),
        "pip",
        "install",
        "-q",
        "--python",
        str(venv / "bin" / "python"),
    ]
    run([*uv, "--require-hashes", "-r", str(REPO / "requirements.lock")], cwd=root)
    run([*uv, "--no-deps", str(wheel)], cwd=root)
    return venv / "bin"


@pytest.fixture
def empty_postgres(postgres_server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (not even a schema migrated)."""
    name = f"cesar_w_{uuid.uuid4().hex[:12]}"
    server = normalize_url(postgres_server_url)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_installed_package_is_not_this_checkout(installed: Path, tmp_path: Path) -> None:
    script = "import cesar, cesar_common.db.migrate as m; print(cesar.__file__); print(m.migrations_dir())"
    lines = run([str(installed / "python"), "-c", script], cwd=tmp_path).splitlines()
    assert lines and all(Path(line).is_relative_to(installed.parent / "lib") for line in lines), lines


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_db_upgrade_from_any_directory(
    installed: Path, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'data' / 'cesar.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("empty_postgres"))
    )
    cesar, env = str(installed / "cesar"), outside_env({"CESAR_DATABASE_URL": url})
    behind = subprocess.run([cesar, "db", "current"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert behind.returncode == 1 and "cesar db upgrade" in behind.stdout, behind
    assert "from an empty database" in run([cesar, "db", "upgrade"], cwd=tmp_path, env=env)
    assert "(head)" in run([cesar, "db", "current"], cwd=tmp_path, env=env)
    assert "already at revision" in run([cesar, "db", "upgrade"], cwd=tmp_path, env=env)


def test_serve_from_the_installed_package_transcribes_an_upload(installed: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'serve.db'}"
    with running_serve(
        database, log_path=tmp_path / "serve.log", binary=str(installed / "cesar"), cwd=tmp_path
    ) as serve:
        client = Client(serve.url)
        job_id = client.upload(AUDIO_DIR / "speech_en.mp3")
        job = client.wait_all([job_id], timeout=120)[job_id]
        text = client.transcript(job_id).lower() if job["status"] == "completed" else ""
        # the web page, the OpenAI dialect and the docs' assets come from the wheel too
        page = client.http.get("/")
        script = client.http.get("/ui/cesar.js")
        models = client.http.get("/v1/models")
        client.close()
        assert page.status_code == 200 and "/ui/cesar.js" in page.text
        assert script.status_code == 200 and models.status_code == 200
        workers = serve.workers()
        assert workers and all(str(installed) in " ".join(w.cmdline()) for w in workers)
    assert job["status"] == "completed", (job, serve.log())
    assert all(word in text for word in SPEECH_WORDS), text


def test_an_installed_worker_takes_a_job_the_checkouts_api_queued(
    installed: Path, postgres_url: str, tmp_path: Path
) -> None:
    """`cesar db upgrade` from the wheel (nothing to do on the migrated schema), a job queued through this
    checkout's `cesar api`, and `cesar worker --once` from the wheel completing it: a GPU box's part."""
    env = outside_env({"CESAR_DATABASE_URL": postgres_url})
    cesar = str(installed / "cesar")
    assert "already at revision" in run([cesar, "db", "upgrade"], cwd=tmp_path, env=env)
    port = free_port()
    api = start_cesar(
        ["api"],
        log_path=tmp_path / "api.log",
        env={"CESAR_DATABASE_URL": postgres_url, "CESAR_PORT": str(port)},
        port=port,
    )
    try:
        api.wait_healthy(timeout=60)
        client = Client(api.url)
        job_id = client.upload(AUDIO_DIR / "speech_en.wav")
        assert client.job(job_id)["status"] == "queued"
        run([cesar, "worker", "--once", "--worker-id", "gpu-box-1"], cwd=tmp_path, env=env, timeout=300)
        job = client.job(job_id)
        assert job["status"] == "completed", job
        assert all(word in client.transcript(job_id).lower() for word in SPEECH_WORDS)
        client.close()
    finally:
        api.stop()
        api.kill_everything()
