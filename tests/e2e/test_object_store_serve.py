"""Audio in an S3-compatible object store (CESAR_BLOB_URL, issue 33) end to end: real `cesar api` and
`cesar worker` processes on PostgreSQL with a real SeaweedFS of this module's own (it is stopped and started
again here, so not the shared ``seaweed`` fixture's).

One API serves every test (a schema, a bucket and an API for the module); each test starts the workers it
needs. The fake workers are the real worker loop with tests/fake_worker.py's engine, which notes the sha256
of the audio the worker read through the store before it "transcribes" it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbtools import migrated_schema
from live_support import LiveSession, pcm_of, ws_url
from seaweed import Seaweed, require_weed
from serve_helpers import (
    AUDIO_DIR,
    CESAR,
    SPEECH_FILES,
    SPEECH_WORDS,
    CesarProcess,
    Client,
    cesar_env,
    free_port,
    start_cesar,
    wait_for,
)
from sqlalchemy import func, select, text, union_all

from cesar_common.blob_store import BlobStore
from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import job_audio, job_part_audio, jobs

pytestmark = pytest.mark.timeout(300)

TESTS_DIR = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
GIB = 1024 * MIB
PREFIX = "cesar/"
ADMIN_KEY = f"s3-admin-{secrets.token_hex(8)}"
FINAL = ("completed", "error", "cancelled")

LONG_WORDS = ("chapter", "mill", "museum", "spring")
#: decoded too, their text not checked (tiny.en on silence or on "The qu-")
OTHER_FILES = ["silence.wav", "truncated.mp3"]
#: refused at submit: no job, no object
REFUSED_FILES = ["empty.wav", "junk.mp3", "not_audio.mp3"]
#: the other fixtures, through the fake engine (five minutes of speech would take tiny.en 25 s here)
FAKE_FILES = sorted(
    path
    for path in AUDIO_DIR.iterdir()
    if path.suffix in (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".webm")
    and path.name not in {*SPEECH_FILES, "speech_en_long.flac", *OTHER_FILES, *REFUSED_FILES}
)

#: the real worker loop around FakeEngine, noting "<job id> <sha256 of the audio it was handed>" per job
HASHING_WORKER = r"""
import hashlib, os, sys
tests_dir, record, worker_id = sys.argv[1:4]
sys.path.insert(0, tests_dir)
from fake_worker import FakeEngine
from cesar_common.logs import configure_logging
from cesar_common.settings import get_settings
from cesar_worker.worker import quiet_library_logs, run_worker


class HashingEngine(FakeEngine):
    def transcribe(self, job, audio_path, **kwargs):
        digest = hashlib.sha256()
        with open(audio_path, "rb") as audio:
            for block in iter(lambda: audio.read(1 << 20), b""):
                digest.update(block)
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{job.id} {digest.hexdigest()}\n".encode())
        finally:
            os.close(fd)
        result = super().transcribe(job, audio_path, **kwargs)
        self.audio.clear()  # FakeEngine keeps what it read; nothing here needs it
        return result


settings = get_settings()
configure_logging(settings.log_level, name="fake-worker")
quiet_library_logs(settings.log_level)
sys.exit(run_worker(settings, worker_id=worker_id, transcriber_factory=lambda _settings: HashingEngine()))
"""


# --- the module's deployment -----------------------------------------------------------------------
@dataclass
class Deployment:
    db_url: str
    weed: Seaweed
    bucket: str
    api: CesarProcess
    tmp: Path

    @property
    def blob_url(self) -> str:
        return f"s3://{self.bucket}/{PREFIX.rstrip('/')}"

    def env(self, *, aws: bool = False, **extra: str) -> dict[str, str]:
        """What every Cesar process of this deployment is given: the object store in the CESAR_BLOB_*
        settings, or (``aws``) in the AWS_* variables boto3 reads itself."""
        return _env(self.db_url, self.weed, self.blob_url, aws=aws, **extra)

    def client(self) -> Client:
        client = Client(self.api.url)
        client.http.headers.update(_auth())
        return client

    def blobs(self) -> BlobStore:
        return BlobStore(
            self.blob_url,
            endpoint_url=self.weed.endpoint,
            region=self.weed.region,
            access_key_id=self.weed.access_key,
            secret_access_key=self.weed.secret_key,
            timeout_seconds=5,
        )

    def objects(self) -> set[str]:
        """Every object under the prefix."""
        client = self.weed.client()
        found: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=PREFIX):
            found.update(item["Key"] for item in page.get("Contents", ()))
        return found

    def wait_swept(self, ids: list[str], what: str) -> None:
        """Until no object of these jobs is left (the workers' sweep, with the grace of 1 s)."""
        wait_for(
            lambda: not {owner_of(key) for key in self.objects()} & set(ids),
            timeout=30,
            interval=0.2,
            what=what,
        )

    def start_worker(
        self, name: str, *, real: bool = False, aws: bool = False, **env: str
    ) -> tuple[CesarProcess, Path]:
        """A worker (the real engine, or the hashing fake), once /health lists it; its record file."""
        record = self.tmp / f"{name}.record"
        worker_id = f"{name}-{uuid.uuid4().hex[:6]}"
        log = self.tmp / f"{name}.log"
        if real:
            process = start_cesar(
                ["worker", "--worker-id", worker_id], log_path=log, env=self.env(aws=aws, **env)
            )
        else:
            args = ["-c", HASHING_WORKER, str(TESTS_DIR), str(record), worker_id]
            process = start_cesar(args, log_path=log, env=self.env(aws=aws, **env), binary=sys.executable)
        try:
            wait_for(lambda: _alive(process) and worker_id in self.worker_ids(), timeout=60, what=worker_id)
        except BaseException:
            stop(process)
            raise
        return process, record

    def worker_ids(self) -> set[str]:
        try:
            body = httpx.get(f"{self.api.url}/health", headers=_auth(), timeout=5).json()
        except httpx.HTTPError:
            return set()
        return {worker["id"] for worker in (body.get("workers") or {}).get("workers", [])}


def _env(db_url: str, weed: Seaweed, blob_url: str, *, aws: bool = False, **extra: str) -> dict[str, str]:
    where = (
        weed.env()
        if aws
        else {
            "CESAR_BLOB_ENDPOINT_URL": weed.endpoint,
            "CESAR_BLOB_ACCESS_KEY_ID": weed.access_key,
            "CESAR_BLOB_SECRET_ACCESS_KEY": weed.secret_key,
            "CESAR_BLOB_REGION": weed.region,
        }
    )
    return {
        "CESAR_DATABASE_URL": db_url,
        "CESAR_API_KEY": ADMIN_KEY,
        "CESAR_BLOB_URL": blob_url,
        "CESAR_BLOB_GRACE_SECONDS": "1",
        "CESAR_BLOB_TIMEOUT_SECONDS": "3",
        **where,
        **extra,
    }


def _auth(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _alive(process: CesarProcess) -> bool:
    code = process.process.poll()
    if code is not None:
        raise AssertionError(f"{process.process.args[:2]} exited with {code}:\n{process.log()[-4000:]}")
    return True


def stop(process: CesarProcess) -> None:
    with contextlib.suppress(Exception):
        if process.process.poll() is None:
            process.stop(timeout=30)
    process.kill_everything()


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A migrated PostgreSQL schema for the module (conftest's ``postgres_url`` is one per test)."""
    with migrated_schema(postgres_server_url, "cesar_s3") as url:
        yield url


@pytest.fixture(scope="module")
def deployment(module_postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_weed()
    tmp = tmp_path_factory.mktemp("object_store_serve")
    weed = Seaweed(tmp / "sw")
    weed.start()
    try:
        bucket = weed.make_bucket(f"cesar-e2e-{uuid.uuid4().hex[:8]}")
        blob_url = f"s3://{bucket}/{PREFIX.rstrip('/')}"
        port = free_port()
        extra = {"CESAR_PORT": str(port), "CESAR_KEEP_AUDIO": "true", "CESAR_MAX_UPLOAD_MB": "1100"}
        env = _env(module_postgres_url, weed, blob_url, **extra)
        api = start_cesar(["api"], log_path=tmp / "api.log", env=env, port=port)
        try:
            api.wait_healthy(timeout=60)
            yield Deployment(module_postgres_url, weed, bucket, api, tmp)
        finally:
            stop(api)
    finally:
        weed.stop(graceful=False)
        shutil.rmtree(weed.data_dir, ignore_errors=True)  # over a GiB: not for pytest to keep


@pytest.fixture
def store(deployment: Deployment) -> Iterator[JobStore]:
    """The module's database with its object store, in this process."""
    blobs = deployment.blobs()
    job_store = JobStore.from_url(deployment.db_url, blobs=blobs)
    yield job_store
    job_store.close()
    blobs.close()


# --- reads of the database ---------------------------------------------------------------------------
def row_bytes(store: JobStore, ids: list[str] | None = None) -> int:
    """Bytes of audio the database itself holds (job_audio and job_part_audio), of the jobs ``ids`` or
    of all."""
    total = 0
    with store.engine.connect() as conn:
        for table in (job_audio, job_part_audio):
            query = select(func.coalesce(func.sum(func.length(table.c.data)), 0))
            if ids is not None:
                query = query.where(table.c.job_id.in_(ids))
            total += int(conn.execute(query).scalar_one())
    return total


def named_keys(store: JobStore) -> set[str]:
    """The objects the database's rows name."""
    query = union_all(
        select(job_audio.c.object_key).where(job_audio.c.object_key.is_not(None)),
        select(job_part_audio.c.object_key).where(job_part_audio.c.object_key.is_not(None)),
    )
    with store.engine.connect() as conn:
        return set(conn.execute(query).scalars())


def job_ids(store: JobStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(jobs.c.id)).scalars())


def statuses(store: JobStore, ids: list[str]) -> dict[str, str]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids)))
        return {row.id: row.status for row in rows}


def owner_of(key: str) -> str:
    """The job an object belongs to: ``cesar/<kind>/<job id>/<name>``."""
    return key[len(PREFIX) :].split("/")[1]


def read_record(path: Path) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            job_id, digest = line.split()
            seen.setdefault(job_id, set()).add(digest)
    return seen


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- 1. the lifecycle ----------------------------------------------------------------------------------
def test_every_job_lives_and_ends_with_its_audio_in_objects_only(
    deployment: Deployment, store: JobStore
) -> None:
    client = deployment.client()
    # refused at submit: nothing in the database, nothing in the bucket
    before = deployment.objects()
    for name in REFUSED_FILES:
        with (AUDIO_DIR / name).open("rb") as handle:
            response = client.http.post("/transcribe", files={"file": (name, handle)})
        assert response.status_code in (400, 415, 422), (name, response.text)
    assert deployment.objects() == before

    # the real engine; audio from AWS_* as boto3 reads it (the API has the CESAR_BLOB_* settings)
    worker, _ = deployment.start_worker(
        "real", real=True, aws=True, CESAR_SPLIT_SECONDS="30", CESAR_KEEP_AUDIO="true"
    )
    try:
        long_id = client.upload(AUDIO_DIR / "speech_en_long.flac")
        speech_ids = {client.upload(AUDIO_DIR / name): name for name in SPEECH_FILES}
        other_ids = [client.upload(AUDIO_DIR / name) for name in OTHER_FILES]
        doomed = client.upload(AUDIO_DIR / "speech_en.wav")  # behind the others: cancelled while queued
        cancelled = client.http.post(f"/jobs/{doomed}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        # the objects are there, the database holds none of the bytes
        assert row_bytes(store) == 0
        assert {owner_of(key) for key in deployment.objects()} >= {long_id, doomed, *speech_ids, *other_ids}

        # while they run: the long job's parts are objects too, and the database never holds audio bytes
        every = [long_id, doomed, *speech_ids, *other_ids]
        part_objects: set[str] = set()

        def all_ended() -> bool:
            objects = deployment.objects()
            part_objects.update(key for key in objects if key.startswith(f"{PREFIX}parts/{long_id}/"))
            assert row_bytes(store) == 0 and objects
            return set(statuses(store, every).values()) <= set(FINAL)

        wait_for(all_ended, timeout=180, interval=0.05, what="the jobs to end")
        done = {job_id: client.job(job_id) for job_id in every}
        assert done[doomed]["status"] == "cancelled"
        for job_id in [long_id, *speech_ids, *other_ids]:
            assert done[job_id]["status"] == "completed", done[job_id]
        for job_id, name in speech_ids.items():
            said = client.transcript(job_id).lower()
            assert all(word in said for word in SPEECH_WORDS), (name, said)
        assert done[long_id]["decoding"]["parts"] >= 2, done[long_id]["decoding"]
        # (the parts are decoded in turn here: the last one's object lives until the job merges them)
        assert part_objects, "no part's audio was seen in the bucket"
        said = client.transcript(long_id).lower()
        assert all(word in said for word in LONG_WORDS), said
        # a live session: its audio goes into objects as it comes
        session = LiveSession(ws_url(deployment.api.url), headers=_auth())
        assert session.start()["type"] == "session"
        session.send_audio(pcm_of(AUDIO_DIR / "speech_en.wav"), pace=None)
        session.stop()
        live = session.wait_final(timeout=120)["job"]
        assert live["status"] == "completed", live
        assert "lazy" in live["result_text"].lower()
        assert any(key.startswith(f"{PREFIX}live/{live['id']}/") for key in named_keys(store))
        # the parts' objects went with the parts: what is named is the jobs' kept audio (CESAR_KEEP_AUDIO)
        assert named_keys(store) and not any(key.startswith(f"{PREFIX}parts/") for key in named_keys(store))

        # DELETE, and retention (`cesar jobs purge`) of the cancelled job
        deleted = next(iter(speech_ids))
        assert client.http.delete(f"/jobs/{deleted}").status_code == 204
        purge = f"{CESAR} jobs purge --older-than 0s --status cancelled --db {deployment.db_url}".split()
        purged = subprocess.run(purge, env=cesar_env(), capture_output=True, text=True, timeout=60)
        assert purged.returncode == 0 and "removed 1 job" in purged.stdout, purged
        assert client.http.get(f"/jobs/{doomed}").status_code == 404

        # CESAR_BLOB_GRACE_SECONDS=1: the worker's sweep leaves only the objects of jobs that still exist,
        # each named by a row (the parts' and the deleted and purged jobs' are gone)
        wait_for(
            lambda: deployment.objects() == named_keys(store), timeout=30, interval=0.2, what="the sweep"
        )
    finally:
        stop(worker)
        client.close()
    left = deployment.objects()
    assert left and {owner_of(key) for key in left} <= job_ids(store)
    assert deleted not in {owner_of(key) for key in left} and doomed not in {owner_of(key) for key in left}
    assert row_bytes(store) == 0


# --- 2. kill -9 between the object and the row ---------------------------------------------------------
def test_an_api_killed_between_the_object_and_the_row_queues_nothing_and_its_object_is_swept(
    deployment: Deployment, store: JobStore
) -> None:
    # The body is whole (spooled) before the pending job's row exists, and the object follows that row in
    # milliseconds, so the job row cannot be locked in between from outside. The key's row can: with a
    # quota, the transaction that queues an upload locks it first (check_quota), after the object.
    record, key = store.create_key(f"crash-{uuid.uuid4().hex[:6]}", max_queued=1000)
    port = free_port()
    api = start_cesar(
        ["api"],
        log_path=deployment.tmp / "api-killed.log",
        env=deployment.env(CESAR_PORT=str(port)),
        port=port,
    )
    lock = store.engine.connect()
    try:
        api.wait_healthy(timeout=60)
        lock.execute(text("SELECT id FROM api_keys WHERE id = :id FOR UPDATE"), {"id": record.id})
        before = deployment.objects()
        answers: list[object] = []

        def upload() -> None:
            try:
                with (AUDIO_DIR / "speech_en.wav").open("rb") as handle:
                    answers.append(
                        httpx.post(
                            f"{api.url}/transcribe",
                            files={"file": ("speech_en.wav", handle)},
                            headers=_auth(key),
                            timeout=60,
                        )
                    )
            except httpx.HTTPError as exc:
                answers.append(exc)

        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        (orphan,) = wait_for(
            lambda: {k for k in deployment.objects() - before if k.startswith(f"{PREFIX}uploads/")},
            timeout=30,
            interval=0.05,
            what="the upload's object",
        )
        job_id = owner_of(orphan)

        def waiting_on_the_key() -> bool:
            with store.engine.connect() as conn:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%api_keys%FOR UPDATE%' AND pid <> pg_backend_pid()"
                        " AND application_name = current_setting('application_name')"  # this schema's
                    )
                ).scalar_one()
            return bool(waiting)

        wait_for(waiting_on_the_key, timeout=30, interval=0.05, what="the API to wait for the key's row")
        assert statuses(store, [job_id]) == {job_id: "pending"}
        api.process.kill()  # kill -9
        api.process.wait(timeout=30)
    finally:
        lock.rollback()
        lock.close()
        stop(api)
    sender.join(timeout=30)
    assert answers and isinstance(answers[0], httpx.HTTPError), answers

    # its connection gone, the database keeps a pending job and no audio row: nothing queued without audio
    wait_for(lambda: not waiting_on_the_key(), timeout=30, what="the killed API's transaction to end")
    assert statuses(store, [job_id]) == {job_id: "pending"}
    assert orphan not in named_keys(store)
    with store.engine.connect() as conn:
        without_audio = conn.execute(
            select(func.count())
            .select_from(jobs)
            .where(
                jobs.c.status.in_(("queued", "processing")),
                ~select(job_audio.c.job_id).where(job_audio.c.job_id == jobs.c.id).exists(),
            )
        ).scalar_one()
    assert without_audio == 0
    # the sweep spares an upload still pending, whatever its age ...
    store.sweep_objects(grace_seconds=0)
    assert orphan in deployment.objects()
    # ... and takes its object once the housekeeping purged the stale pending job
    assert store.purge_stale_uploads(older_than_seconds=0) >= 1
    assert statuses(store, [job_id]) == {}

    def swept() -> bool:
        store.sweep_objects(grace_seconds=1)
        return orphan not in deployment.objects()

    wait_for(swept, timeout=30, interval=0.2, what="the orphan object to be swept")


# --- 3. the object store away mid-run ------------------------------------------------------------------
def test_the_object_store_stopped_mid_run_loses_and_fails_nothing(
    deployment: Deployment, store: JobStore
) -> None:
    client = deployment.client()
    audio = (AUDIO_DIR / "speech_en.wav").read_bytes()
    worker, record = deployment.start_worker("outage")  # CESAR_KEEP_AUDIO unset: audio goes with its job
    try:
        first = client.upload(AUDIO_DIR / "speech_en.wav", initial_prompt="slow:1.5")
        # behind it, every fixture the real engine does not hear in the first test: their bytes checked
        rest = {client.upload(path, initial_prompt="slow:0.02"): path.read_bytes() for path in FAKE_FILES}
        ids = [first, *rest]
        client.wait_status(first, {"processing"}, timeout=30)  # its audio read: the others wait behind it
        deployment.weed.stop(graceful=False)
        try:
            count = len(job_ids(store))
            refused = client.http.post("/transcribe", files={"file": ("speech_en.wav", audio)}, timeout=60)
            assert refused.status_code == 503, refused.text
            assert "object store" in refused.json()["detail"], refused.text
            assert len(job_ids(store)) == count  # nothing queued, nothing left pending

            def unready() -> dict[str, Any] | None:  # its answer is reused for a second
                health = httpx.get(f"{deployment.api.url}/health", headers=_auth(), timeout=30)
                return health.json() if health.status_code == 503 else None

            objects = wait_for(unready, timeout=30, what="/health to say 503")["objects"]
            assert objects["reachable"] is False and "cannot be reached" in objects["error"], objects
            # the next job's audio cannot be read: handed back, and the worker waits for the store
            wait_for(
                lambda: "object store unavailable" in worker.log(),
                timeout=60,
                what="the worker to hand a job back",
            )
        finally:
            deployment.weed.start()
        done = client.wait_all(ids, timeout=60)
        assert [done[job_id]["status"] for job_id in ids] == ["completed"] * len(ids), done
        errors = client.http.get("/jobs", params={"status": "error", "limit": 1000}).json()
        assert errors == []
        read = read_record(record)
        sent = {first: audio, **rest}
        assert {job_id: read.get(job_id) for job_id in ids} == {job_id: {sha(sent[job_id])} for job_id in ids}
        # their audio went with them (CESAR_KEEP_AUDIO unset): the sweep takes the objects
        deployment.wait_swept(ids, "the finished jobs' objects to be swept")
    finally:
        stop(worker)
        client.close()


# --- 4. cesar db move both ways under a running worker ---------------------------------------------------
def test_db_move_both_ways_while_a_worker_reads_keeps_every_job_whole(
    deployment: Deployment, store: JobStore
) -> None:
    plain = JobStore.from_url(deployment.db_url)  # no object store: the audio goes into the database
    audio: dict[str, bytes] = {}
    try:
        for n in range(100):
            data = os.urandom((3 * MIB + 17) if n % 20 == 0 else 20_000 + 997 * n)  # some of several rows
            new = NewJob(
                source=JobSource.UPLOAD,
                options=TranscribeOptions(model="tiny.en", initial_prompt="slow:0.05"),
                filename=f"move{n}.wav",
            )
            audio[plain.create_job(new, data).id] = data
    finally:
        plain.close()
    ids = list(audio)
    total = sum(len(data) for data in audio.values())
    assert row_bytes(store) >= total and not {owner_of(key) for key in named_keys(store)} & set(ids)

    def move(to: str) -> int:
        done = subprocess.run(
            [CESAR, "db", "move", "--to", to],
            env=cesar_env(deployment.env()),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done
        found = re.search(r"moved the audio of (\d+) jobs", done.stdout)
        assert found, done.stdout
        return int(found.group(1))

    worker, record = deployment.start_worker("mover", CESAR_KEEP_AUDIO="true")
    try:
        # the worker claims and the moves go through the jobs in the same order (by id), so they meet; the
        # moves take every settled job's audio, other tests' kept audio too
        in_rows = set(store.audio_to_move(to_objects=True, limit=10_000)) - set(ids)
        in_objects = set(store.audio_to_move(to_objects=False, limit=10_000)) - set(ids)
        assert move("objects") == len(ids) + len(in_rows)
        with store.engine.connect() as conn:
            left_in_rows = conn.execute(
                select(func.count()).where(job_audio.c.job_id.in_(ids), job_audio.c.object_key.is_(None))
            ).scalar_one()
        assert left_in_rows == 0
        during = list(statuses(store, ids).values()).count("completed")
        assert move("database") == len(ids) + len(in_rows) + len(in_objects)
        after = list(statuses(store, ids).values()).count("completed")
        print(f"jobs completed when the moves ended: {during} and {after} of {len(ids)}")
        wait_for(
            lambda: (
                set(statuses(store, ids).values()) <= set(FINAL) and len(statuses(store, ids)) == len(ids)
            ),
            timeout=120,
            interval=0.25,
            what="the jobs to end",
        )
        # what the moves left behind in the bucket, the worker's sweep takes after the grace
        deployment.wait_swept(ids, "the moved-away objects to be swept")
    finally:
        stop(worker)
    assert set(statuses(store, ids).values()) == {"completed"}
    read = read_record(record)
    assert {job_id: read.get(job_id) for job_id in ids} == {
        job_id: {sha(data)} for job_id, data in audio.items()
    }
    # back in the database, whole (CESAR_KEEP_AUDIO: they keep it)
    for job_id, data in audio.items():
        assert sha(b"".join(store.iter_audio(job_id))) == sha(data)
    assert not {owner_of(key) for key in named_keys(store)} & set(ids)


# --- 5. a 1 GiB upload in bounded memory ---------------------------------------------------------------
def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _wav_header(data_bytes: int, *, rate: int = 48_000, channels: int = 2) -> bytes:
    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def _multipart(name: str, size: int, digest: Any) -> tuple[str, int, Iterator[bytes]]:
    """A multipart body of one ``file`` part: a WAV of ``size`` bytes (header included), streamed a MiB at
    a time; ``digest`` sees the file's bytes."""
    boundary = f"cesar-{secrets.token_hex(8)}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = bytes(MIB)  # silence: SeaweedFS stores it compressed, sparing the shared disk a GiB of writes

    def body() -> Iterator[bytes]:
        yield head
        header = _wav_header(size - 44)
        digest.update(header)
        yield header
        left = size - len(header)
        while left:
            piece = block[: min(MIB, left)]
            digest.update(piece)
            yield piece
            left -= len(piece)
        yield tail

    return f"multipart/form-data; boundary={boundary}", len(head) + size + len(tail), body()


def _post_wav(client: Client, size: int) -> tuple[str, str]:
    digest = hashlib.sha256()
    content_type, length, body = _multipart("big.wav", size, digest)
    response = client.http.post(
        "/transcribe",
        content=body,
        headers={"Content-Type": content_type, "Content-Length": str(length)},
        timeout=600,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"]), digest.hexdigest()


def _drop(client: Client, job_id: str) -> None:
    client.http.post(f"/jobs/{job_id}/cancel")
    assert client.http.delete(f"/jobs/{job_id}").status_code == 204


def test_a_1_gib_upload_goes_to_one_object_in_bounded_memory(deployment: Deployment, store: JobStore) -> None:
    client = deployment.client()
    pid = deployment.api.pid
    # the same paths once on a small file (the probe's import, a multipart upload), so that only the
    # upload's own memory counts
    warm, _ = _post_wav(client, 9 * MIB)
    _drop(client, warm)

    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM restarts from the resident size now
    before = _status_kib(pid, "VmRSS") * 1024
    job_id, sent = _post_wav(client, GIB)
    growth = _status_kib(pid, "VmHWM") * 1024 - before
    print(f"API memory growth over a 1 GiB upload: {growth / MIB:.1f} MiB")
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(job_audio.c.object_key, job_audio.c.size, job_audio.c.sha256).where(
                    job_audio.c.job_id == job_id
                )
            ).all()
        assert len(rows) == 1
        key, size, digest = rows[0]
        assert (size, digest) == (GIB, sent)
        # the row's sha256 is the API's, of the bytes it sent the store (every read checks it against
        # them; tests/integration/test_object_store.py reads a multipart object back): here only its size
        assert deployment.weed.client().head_object(Bucket=deployment.bucket, Key=key)["ContentLength"] == GIB
        assert row_bytes(store, [job_id]) == 0
    finally:
        _drop(client, job_id)
        client.close()
    assert growth < 64 * MIB
