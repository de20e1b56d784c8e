"""Workers behind a real PgBouncer in transaction pooling: no prepared statements, LISTEN past it or polling.

PgBouncer before 1.21 cannot route the statements psycopg prepares (CESAR_DB_PREPARED_STATEMENTS=false), and
transaction pooling cannot carry LISTEN: workers then poll, or listen at CESAR_DATABASE_LISTEN_URL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from worker_support import FAKE_WORKER, REPO, submit_bytes

from cesar.schema import upgrade_database
from cesar_common.db.records import JobStatus
from cesar_common.db.store import JobStore

pytestmark = pytest.mark.postgres
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture
def bounced(postgres_server_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL through PgBouncer in transaction pooling, direct URL) of a fresh database."""
    if not Path(PGBOUNCER).is_file():
        message = "pgbouncer is not installed (apt-get install pgbouncer; make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"cesar_pgb_{os.getpid()}"
    admin = postgres_server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    server = psycopg.conninfo.conninfo_to_dict(admin)
    user, host, server_port = server.get("user", "postgres"), server["host"], server.get("port", 5432)
    direct = f"postgresql+psycopg://{user}@{host}:{server_port}/{name}"
    upgrade_database(direct)
    port = free_port()
    config = Path(tempfile.mkdtemp(prefix="cesar-pgbouncer-"))
    config.chmod(0o755)  # pgbouncer drops root for the postgres user, who must read these
    (config / "users.txt").write_text(f'"{user}" ""\n')
    (config / "pgbouncer.ini").write_text(
        f"[databases]\n{name} = host={host} port={server_port} dbname={name}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {config / 'users.txt'}\npool_mode = transaction\nunix_socket_dir =\n"
        "default_pool_size = 4\n"
    )
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    log = (tmp_path / "pgbouncer.log").open("wb")
    process = subprocess.Popen(
        [PGBOUNCER, *as_user, str(config / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT
    )
    bounced_url = f"postgresql+psycopg://{user}@127.0.0.1:{port}/{name}"
    try:
        wait_for(lambda: _answers(bounced_url), timeout=20, what="pgbouncer")
        yield bounced_url, direct
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(config, ignore_errors=True)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.mark.parametrize("listen", ["polling", "listen url"])
def test_workers_behind_pgbouncer_finish_every_job(
    bounced: tuple[str, str], listen: str, tmp_path: Path
) -> None:
    url, direct = bounced
    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    env.update(CESAR_DATABASE_URL=url, CESAR_DB_PREPARED_STATEMENTS="false", CESAR_POLL_MAX_SECONDS="0.5")
    if listen == "listen url":
        env["CESAR_DATABASE_LISTEN_URL"] = direct
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(FAKE_WORKER)],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    store = JobStore.from_url(url, prepared_statements=False)
    try:
        # enough of each statement that psycopg would have prepared them (it does from the fifth use)
        jobs = [submit_bytes(store, b"RIFF-fake", prompt="slow:0.1").id for _ in range(16)]
        wait_for(
            lambda: all(store.get_job(job).status is JobStatus.COMPLETED for job in jobs),
            timeout=120,
            what="every job to complete through pgbouncer",
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
        store.close()
    text = "".join(log.read_text(errors="replace") for log in logs)
    assert "WARNING" not in text and "ERROR" not in text, text[-3000:]
