"""`cesar keys` on a local SQLite database (the command line run in this process): a key printed once, alone
on stdout, and one the store then accepts; the list; limits changed and lifted; a key revoked with its jobs;
bad input refused in one line. `cesar keys --server` is in test_api_keys_routes.py."""

from __future__ import annotations

import json
from pathlib import Path

from test_speakers_cli import invoke, ok, refused

from cesar_common.db import api_keys
from cesar_common.db.records import JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

HEADER = "NAME\tPREFIX\tADMIN\tLIMITS\tEXPIRES\tSTATUS\n"


def _queued_job(url: str, owner: str) -> str:
    store = JobStore.from_url(url)
    try:
        new = NewJob(
            source=JobSource.URL,
            options=TranscribeOptions(model="tiny.en"),
            source_url="https://example.com/a.mp3",
            owner=owner,
        )
        return store.create_job(new, None).id
    finally:
        store.close()


def _status(url: str, job_id: str) -> JobStatus:
    store = JobStore.from_url(url)
    try:
        return store.get_job(job_id).status
    finally:
        store.close()


def test_the_keys_of_a_local_database(sqlite_url: str, tmp_path: Path) -> None:
    db = ("--db", sqlite_url)

    # a database that does not exist holds no keys, and is not made for asking
    missing = tmp_path / "none.db"
    assert ok("keys", "list", "--db", f"sqlite:///{missing}") == HEADER
    line = refused(1, "keys", "show", "alice", "--db", f"sqlite:///{missing}")
    assert "no API key named 'alice': the database holds no keys yet" in line
    assert not missing.exists()

    # the key alone on stdout (KEY=$(cesar keys create alice)), the note on stderr; the store accepts it
    made = invoke(
        "keys", "create", "alice", "--max-queued", "3", "--audio-hours-per-day", "1.5", "--expires",
        "2030-01-01", *db,
    )  # fmt: skip
    assert made.code == 0, made.stderr
    key = made.stdout.strip()
    assert made.stdout == f"{key}\n" and "not shown again" in made.stderr and key not in made.stderr
    prefix = api_keys.key_prefix(key)
    assert prefix is not None
    store = JobStore.from_url(sqlite_url)
    try:
        assert api_keys.matches(key, store.get_key(prefix))
    finally:
        store.close()
    bob = json.loads(ok("keys", "create", "Bob", "--admin", "--priority", "5", "--json", *db))
    assert bob["admin"] and bob["priority"] == 5 and bob["key"].startswith(f"cesar_{bob['prefix']}_")

    # the list: never a key nor its hash
    listed = ok("keys", "list", "--json", *db)
    assert key not in listed and bob["key"] not in listed and "key_hash" not in listed
    assert [entry["name"] for entry in json.loads(listed)["keys"]] == ["alice", "Bob"]
    assert ok("keys", "list", *db) == (
        f"{HEADER}alice\t{prefix}\tno\t3 queued, 1.5 h/day\t2030-01-01 00:00 UTC\tactive\n"
        f"Bob\t{bob['prefix']}\tyes\tpriority 5\tnever\tactive\n"
    )

    # update: the limits given change (none lifts one), the others stay; by name, prefix or id
    changed = json.loads(ok("keys", "update", "ALICE", "--max-queued", "none", "--requests-per-second", "2",
                            "--expires", "2031-06-01T12:00+02:00", "--json", *db))  # fmt: skip
    assert (changed["max_queued"], changed["audio_hours_per_day"], changed["requests_per_second"]) == (
        None, 1.5, 2.0,
    )  # fmt: skip
    assert changed["expires_at"] == "2031-06-01T10:00:00Z"
    shown = ok("keys", "update", prefix, "--expires", "none", *db)
    assert "limits   1.5 h/day, 2 req/s\n" in shown and "expires  never\n" in shown
    assert "status   active\n" in ok("keys", "show", changed["id"], *db)

    # revoke: refused from then on; with --cancel-jobs its queued jobs end, another key's stay
    mine, theirs = _queued_job(sqlite_url, changed["id"]), _queued_job(sqlite_url, bob["id"])
    revoked = ok("keys", "revoke", "alice", "--cancel-jobs", *db)
    assert (
        revoked
        == f"revoked alice ({prefix}): refused from now on; 1 of its jobs cancelled or asked to stop\n"
    )
    assert (_status(sqlite_url, mine), _status(sqlite_url, theirs)) == (JobStatus.CANCELLED, JobStatus.QUEUED)
    assert "its queued jobs still run" in ok("keys", "revoke", "bob", *db)
    assert [line.rsplit("\t", 1)[1] for line in ok("keys", "list", *db).splitlines()[1:]] == ["revoked"] * 2

    # bad input: one line, exit 1, nothing changed
    assert "no API key named 'nobody'" in refused(1, "keys", "revoke", "nobody", *db)
    assert "an API key named 'BOB' exists already" in refused(1, "keys", "create", "BOB", *db)
    assert "--expires: 'tomorrow' is not a date" in refused(
        1, "keys", "create", "c", "--expires", "tomorrow", *db
    )
    assert "has no time zone" in refused(1, "keys", "create", "c", "--expires", "2030-01-01T10:00", *db)
    assert "max_queued must be more than 0" in refused(1, "keys", "create", "c", "--max-queued", "-1", *db)
    assert "--priority: input should be a valid integer" in refused(
        1, "keys", "update", "bob", "--priority", "x", *db
    )
    assert "nothing to change" in refused(1, "keys", "update", "bob", *db)
    assert "a key's name is 1 to 100" in refused(1, "keys", "create", "-", *db)
    assert "'me' is the caller's own key" in refused(1, "keys", "create", "Me", *db)
    assert "give one of them" in refused(1, "keys", "list", *db, "--server", "http://127.0.0.1:9")
    assert len(json.loads(ok("keys", "list", "--json", *db))["keys"]) == 2
