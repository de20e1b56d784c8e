"""Issue 31: the fair claim (cesar_common.db.queue) against the FIFO claim it replaced, side by side.

On SQLite (a temporary file) and on PostgreSQL (a scratch database, dropped afterwards), each migrated to
head: ``--owners`` owners (one the server's own key, ``""``, the others API keys, a tenth of them with
priority 1) hold ``--queued`` queued URL jobs, spread unevenly (owner n gets about 1/n of them: one heavy
user, a long tail of light ones), over ``--finished`` completed jobs of history. The queue is kept steady
while claims are timed: each claim queues a new job for the owner it took from, and the oldest running job
completes once ``--running`` are running, so every claim sees the same queue length and a realistic
running count per owner.

The two claims take turns, ``--claims`` at a time for ``--rounds`` rounds, on the same database, so a change
in the machine's load hits both alike. Each claim runs as a worker's does: its own write transaction
(``BEGIN IMMEDIATE`` on SQLite), its part statement then its job statement. Printed per backend: the
median and p95 of the claim's statements (the transaction without its commit) and of the whole
transaction, and the ratio fair / FIFO of each median. The FIFO claim is the statement pair as it stood
before issue 31, reproduced here.

    .venv/bin/python bench/claim_fairness.py [--queued 10000] [--owners 100] [--claims 200] [--rounds 3]
        [--running 16] [--finished 10000] [--backends sqlite,postgres] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from machine import machine_line
from psycopg import sql
from sqlalchemy import Connection, Row, and_, insert, select, update

from cesar_common.db import queue, state
from cesar_common.db.clock import db_now
from cesar_common.db.connect import normalize_url
from cesar_common.db.migrate import upgrade_to_head
from cesar_common.db.records import JobSource, NewJob, PartStatus, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import job_parts, jobs

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
QUEUED, PROCESSING, COMPLETED = "queued", "processing", "completed"
Claim = Callable[[Connection, str], Any]

# --- the FIFO claim as it was before issue 31 -----------------------------------------------------------
_OLD_PART = (
    select(job_parts.c.id)
    .where(job_parts.c.status == PartStatus.QUEUED.value)
    .order_by(job_parts.c.created_at, job_parts.c.id)
    .limit(1)
)
_OLD_JOB = (
    select(jobs.c.id)
    .where(jobs.c.status == QUEUED, jobs.c.source != JobSource.LIVE.value)
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(1)
)


def fifo_claim(conn: Connection, worker_id: str) -> Row[Any] | None:
    locked = conn.dialect.name == "postgresql"
    part = _OLD_PART.with_for_update(skip_locked=True) if locked else _OLD_PART
    taken = state.change_parts(
        conn,
        and_(job_parts.c.id == part.scalar_subquery(), job_parts.c.status == PartStatus.QUEUED.value),
        {"status": PartStatus.PROCESSING.value, "worker_id": worker_id, "lease_expires_at": db_now(60)},
    )
    if taken:
        return taken[0]
    job = _OLD_JOB.with_for_update(skip_locked=True) if locked else _OLD_JOB
    return state.change_job(
        conn,
        and_(jobs.c.id == job.scalar_subquery(), jobs.c.status == QUEUED),
        {
            "status": PROCESSING,
            "attempts": jobs.c.attempts + 1,
            "started_at": db_now(),
            "worker_id": worker_id,
            "lease_expires_at": db_now(60),
            "progress": 0.0,
            "segment_count": 0,
        },
    )


def fair_claim(conn: Connection, worker_id: str) -> Row[Any] | None:
    claimed = queue.claim(conn, worker_id, lease_seconds=60)
    return None if claimed is None else claimed[0]


# --- the databases ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def database(backend: str, postgres_url: str) -> Iterator[str | None]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cesar-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'claims.db'}"
        return
    admin = normalize_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"cesar_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error:
        yield None
        return
    try:
        yield normalize_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Queue:
    """The bench's queue: a template job row to copy, the owners, and the jobs running in claim order."""

    def __init__(self, store: JobStore, owners: int, rng: random.Random) -> None:
        self.store = store
        self.rng = rng
        self.owners = [""] + [
            store.create_key(f"owner {n:03d}", priority=1 if n % 10 == 0 else 0)[0].id
            for n in range(1, owners)
        ]
        self.weights = [1.0 / (n + 1) for n in range(owners)]
        new = NewJob(
            source=JobSource.URL,
            options=TranscribeOptions(model="tiny.en"),
            source_url="https://example.com/a.mp3",
        )
        template = store.create_job(new, None)
        with store.engine.begin() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == template.id)).one()
            conn.execute(jobs.delete().where(jobs.c.id == template.id))
        self.template = dict(row._mapping)
        self.clock = datetime.now(UTC) - timedelta(days=1)
        self.running: list[str] = []

    def rows(self, count: int, status: str, owner: str | None = None) -> list[dict[str, Any]]:
        made = []
        for _ in range(count):
            self.clock += timedelta(milliseconds=1)
            who = owner if owner is not None else self.rng.choices(self.owners, self.weights)[0]
            made.append(
                {
                    **self.template,
                    "id": str(uuid.uuid4()),
                    "status": status,
                    "owner": who,
                    "created_at": self.clock,
                }
            )
        return made

    def fill(self, queued: int, finished: int) -> None:
        with self.store.engine.begin() as conn:
            for status, count in ((COMPLETED, finished), (QUEUED, queued)):
                for start in range(0, count, 1000):
                    conn.execute(insert(jobs), self.rows(min(1000, count - start), status))
        if self.store.engine.dialect.name == "postgresql":
            with (
                self.store.engine.begin() as conn
            ):  # the statistics autovacuum keeps (Cesar's SQLite has none)
                conn.exec_driver_sql("ANALYZE")

    def timed(self, claim: Claim, worker: str, limit: int) -> tuple[float, float]:
        """One claim in its own write transaction: (statements, whole transaction) in seconds; then the
        queue is set back to its length and the running jobs to ``limit`` (not timed)."""
        started = time.perf_counter()
        with self.store.engine.begin() as conn:
            row = claim(conn, worker)
            statements = time.perf_counter() - started
        whole = time.perf_counter() - started
        if row is None:
            raise SystemExit("a claim found nothing: the queue ran dry")
        with self.store.engine.begin() as conn:
            conn.execute(insert(jobs), self.rows(1, QUEUED, owner=row.owner))
            self.running.append(row.id)
            if len(self.running) > limit:
                done = self.running.pop(0)
                conn.execute(update(jobs).where(jobs.c.id == done).values(status=COMPLETED))
        return statements, whole


def bench_backend(backend: str, url: str, args: argparse.Namespace) -> None:
    store = JobStore.from_url(url)
    try:
        upgrade_to_head(store.engine)
        bench_queue = Queue(store, args.owners, random.Random(31))
        filled = time.perf_counter()
        bench_queue.fill(args.queued, args.finished)
        print(
            f"\n[{backend}] {args.queued:,} queued jobs over {args.owners} owners, {args.finished:,} "
            f"finished, {args.running} running (filled in {time.perf_counter() - filled:.1f} s)"
        )
        claims: dict[str, Claim] = {"FIFO": fifo_claim, "fair": fair_claim}
        statements: dict[str, list[float]] = {name: [] for name in claims}
        transactions: dict[str, list[float]] = {name: [] for name in claims}
        for claim in claims.values():  # warm-up: statement caches, the pool's connection, prepared plans
            for _ in range(20):
                bench_queue.timed(claim, "warm-up", args.running)
        for _ in range(args.rounds):
            for name, claim in claims.items():
                for n in range(args.claims):
                    spent, total = bench_queue.timed(claim, f"w{n % args.running}", args.running)
                    statements[name].append(spent)
                    transactions[name].append(total)
        for name in claims:
            inside, whole = statements[name], transactions[name]
            print(
                f"  {name:5} claim: statements median {ms(inside)} (p95 {ms(inside, 0.95)}), "
                f"transaction median {ms(whole)} (p95 {ms(whole, 0.95)}), {len(whole)} claims"
            )
        ratio = {
            kind: statistics.median(times["fair"]) / statistics.median(times["FIFO"])
            for kind, times in (("statements", statements), ("transaction", transactions))
        }
        print(f"  fair / FIFO: statements {ratio['statements']:.2f}, transaction {ratio['transaction']:.2f}")
    finally:
        store.close()


def ms(values: list[float], quantile: float = 0.5) -> str:
    ordered = sorted(values)
    return f"{ordered[min(int(quantile * len(ordered)), len(ordered) - 1)] * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=16, help="jobs left running (workers at work)")
    parser.add_argument("--claims", type=int, default=200, help="claims of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CESAR_TEST_POSTGRES_URL") or DEFAULT_POSTGRES
    )
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    for backend in args.backends.split(","):
        with database(backend.strip(), args.postgres_url) as url:
            if url is None:
                print(f"\n[{backend}] skipped: server unreachable")
                continue
            bench_backend(backend.strip(), url, args)
    print(f"\nmachine at the end: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
