"""Fair claims (issue 31), on SQLite and PostgreSQL: the next claim goes to the owner of the highest key
priority, then of the least running work, then to the oldest job; a split job's parts take their turn by
the same rule."""

from __future__ import annotations

from cesar_common.db import queue
from cesar_common.db.records import JobSource, NewJob, PartPlan, PartWork, TranscribeOptions
from cesar_common.db.store import JobStore

LEASE = 60.0


def url_job(store: JobStore, owner: str) -> str:
    new = NewJob(
        source=JobSource.URL,
        options=TranscribeOptions(model="tiny.en"),
        source_url="https://example.com/a.mp3",
        owner=owner,
    )
    return store.create_job(new, None).id


def claimed(store: JobStore, worker: str = "w") -> str:
    """The id of what the next claim takes: a job's, or ``<job id>:<seq>`` for a part."""
    work = store.claim_work(worker, lease_seconds=LEASE)
    assert work is not None
    return work.part.id if isinstance(work, PartWork) else work.id


def key(store: JobStore, name: str, priority: int = 0) -> str:
    return store.create_key(name, priority=priority)[0].id


def test_one_job_waits_behind_one_job_of_a_user_with_a_hundred(store: JobStore) -> None:
    a, b = key(store, "a"), key(store, "b")
    heavy = [url_job(store, a) for _ in range(100)]
    light = url_job(store, b)
    assert [claimed(store), claimed(store)] == [heavy[0], light]  # a runs one: b goes next
    assert claimed(store) == heavy[1]


def test_three_owners_take_turns_oldest_first(store: JobStore) -> None:
    owners = [key(store, "a"), key(store, "b"), ""]  # "": the server's own key is an owner like any other
    jobs = {owner: [url_job(store, owner) for _ in range(3)] for owner in owners}
    taken = [claimed(store) for _ in range(9)]
    assert taken == [jobs[owner][n] for n in range(3) for owner in owners]
    assert store.claim_work("w", lease_seconds=LEASE) is None


def test_priority_goes_first_then_owners_without_a_key_row_count_as_priority_0(store: JobStore) -> None:
    gone = url_job(store, "no-such-key")  # the oldest job, of an owner with no api_keys row
    plain = url_job(store, key(store, "plain"))
    first = key(store, "first", priority=5)
    urgent = [url_job(store, first) for _ in range(2)]
    # priority wins over running work: "first" runs one and still goes again
    assert [claimed(store) for _ in range(4)] == [*urgent, gone, plain]


def test_a_split_jobs_parts_take_turns_with_another_owners_job(store: JobStore) -> None:
    a, b = key(store, "a"), key(store, "b")
    new = NewJob(
        source=JobSource.UPLOAD, options=TranscribeOptions(model="tiny.en"), filename="long.wav", owner=a
    )
    long = store.create_job(new, b"RIFF-not-really-audio")
    assert claimed(store, "cutter") == long.id
    plans = [PartPlan(0.0, 10.0), PartPlan(10.0, 20.0), PartPlan(20.0, 30.0)]
    for seq in range(len(plans)):
        store.store_part_audio(long.id, "cutter", seq, bytes([seq]) * 3000, lease_seconds=LEASE)
    assert store.split_job(long.id, "cutter", plans, language="en", language_probability=0.5)
    other = url_job(store, b)
    # a's part ties with b (nothing running): work started goes first; then a runs a part and b goes
    taken = [claimed(store, f"w{n}") for n in range(4)]
    assert taken == [f"{long.id}:0", other, f"{long.id}:1", f"{long.id}:2"]


def test_a_claimer_takes_the_next_job_while_another_holds_the_owners_first(postgres_url: str) -> None:
    store = JobStore.from_url(postgres_url)
    try:
        jobs = [url_job(store, "") for _ in range(2)]
        with store.engine.begin() as holding:  # a claim not yet committed: its row stays locked
            first = queue.claim(holding, "w1", lease_seconds=LEASE)
            assert first is not None and first[0].id == jobs[0]
            assert claimed(store, "w2") == jobs[1]  # not None: the oldest unlocked job
    finally:
        store.close()
