"""The change feed: how every process learns that work arrived or that a job changed.

Writers announce a change in the transaction that makes it, through :func:`announce`, which only
:mod:`cesar_common.db.state` calls. Each process reads the changes through one :class:`ChangeFeed`, which any
number of consumers subscribe to: the worker's wait for work (:class:`WorkSignal`), the API's event hub.

- PostgreSQL: ``NOTIFY`` on one channel per kind of change (:data:`CHANNELS`), the payload naming the schema
  (channels are database-wide: another Cesar's changes are ignored) and, for a job, its id. The feed holds
  one ``LISTEN`` connection per process, on a thread of its own, listening only to the kinds its subscribers
  want (workers never hear the API's stream of job changes). When the connection drops it connects again and
  then tells every subscriber to look (notifications sent meanwhile are lost).
- SQLite has no notifications: the feed's thread looks at ``PRAGMA data_version`` (it changes when another
  connection commits) while a subscriber waits, and on a change asks what it means: whether work is waiting
  (the question :mod:`cesar_common.db.queue` claims with) for ``work`` subscribers, "some job changed" for
  ``job`` subscribers. Its looks pause while nobody waits; the version seen last still tells, when they
  resume, whether something was committed meanwhile.

A change is a hint, never a promise: a subscriber told ``work`` tries to claim and may find nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from cesar_common.db.connect import CONNECT_TIMEOUT_S, error_reason, normalize_url, sqlite_path

if TYPE_CHECKING:
    import psycopg

__all__ = ["CHANNELS", "Change", "ChangeFeed", "ChangeKind", "Subscription", "WorkSignal", "announce"]

log = logging.getLogger(__name__)


class ChangeKind(StrEnum):
    WORK = "work"  # a job or a part became claimable
    JOB = "job"  # a job changed: status, progress, segments, cancel request, deleted


#: the PostgreSQL channel of each kind (payloads: ``<schema>`` for work, ``<schema>|<job id>`` for a job)
CHANNELS = {ChangeKind.WORK: "cesar_jobs", ChangeKind.JOB: "cesar_job_events"}
_KIND_OF_CHANNEL = {channel: kind for kind, channel in CHANNELS.items()}
_SCHEMA = "coalesce(current_schema(), '')"
#: how often a SQLite feed looks for commits while a subscriber asks for no other rate
SQLITE_POLL_SECONDS = 0.05
#: longest the PostgreSQL listener blocks before it looks at what it should listen to
LISTEN_STEP_SECONDS = 0.25
#: pause before connecting again after the listening connection was lost
RECONNECT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    #: the job that changed; None: any job may have (a look after a gap, or SQLite, which cannot tell)
    job_id: str | None = None


def announce(connection: Connection, change: Change) -> None:
    """Announce ``change`` when ``connection``'s transaction commits (PostgreSQL; SQLite's watchers see the
    commit itself). Only :mod:`cesar_common.db.state` calls this."""
    if connection.dialect.name != "postgresql":
        return
    channel = CHANNELS[change.kind]
    if change.kind is ChangeKind.WORK:
        connection.exec_driver_sql(f"SELECT pg_notify('{channel}', {_SCHEMA})")
    else:
        connection.exec_driver_sql(
            f"SELECT pg_notify('{channel}', {_SCHEMA} || '|' || %(job_id)s)", {"job_id": change.job_id}
        )


OnChange = Callable[[Change], None]


class Subscription:
    """One consumer of a feed. ``on_change`` runs on the feed's thread: it must be quick and thread-safe
    (set an event, hand the change to an event loop)."""

    def __init__(
        self, feed: ChangeFeed, kinds: frozenset[ChangeKind], on_change: OnChange, poll_seconds: float
    ) -> None:
        self._feed = feed
        self.kinds = kinds
        self.on_change = on_change
        self.poll_seconds = poll_seconds
        #: whether this subscriber is waiting for changes now (SQLite looks only while someone is)
        self.waiting = True
        #: set once the feed hears every change of ``kinds`` (at once on SQLite; once LISTENing on PostgreSQL)
        self.hearing = threading.Event()
        #: subscribe() returned before the feed heard: the subscriber is told to look once it does
        self.late = False

    def wait_for_changes(self, waiting: bool = True) -> None:
        """Say whether this subscriber waits for changes now; SQLite's looks pause while nobody does."""
        self.waiting = waiting
        self._feed.wake()

    def close(self) -> None:
        self._feed.unsubscribe(self)


class ChangeFeed:
    """A process's one reader of changes. Thread-safe; its thread starts with the first subscriber."""

    def __init__(
        self,
        engine: Engine,
        *,
        listen_url: str | URL | None = None,
        work_waiting: Callable[[Connection], bool] | None = None,
    ) -> None:
        """``listen_url``: where to LISTEN instead of the engine's URL (past a transaction-pooling PgBouncer).
        ``work_waiting``: on SQLite, whether anything is claimable (default: the claims' own question)."""
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._listen_url = normalize_url(listen_url) if listen_url else engine.url
        if work_waiting is None:
            from cesar_common.db.queue import work_waiting as claimable

            work_waiting = claimable
        self._work_waiting = work_waiting
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: statements this feed sent on connections of its own (SQLite's looks), for the API's count
        self.statements = 0

    # --- subscribers ---------------------------------------------------------------------------------
    def subscribe(
        self,
        kinds: Iterable[ChangeKind],
        on_change: OnChange,
        *,
        poll_seconds: float = SQLITE_POLL_SECONDS,
        waiting: bool = True,
        settle: bool = True,
    ) -> Subscription:
        """Hear ``kinds`` of changes; on SQLite, looked for every ``poll_seconds`` while ``waiting``.

        ``settle``: return once the feed hears them (PostgreSQL: LISTENs; at most a connection's timeout),
        so that nothing committed after this call goes unheard. Otherwise (an event loop must not block),
        or when the database cannot be reached yet, the subscriber is told to look once the feed hears.
        """
        subscription = Subscription(self, frozenset(kinds), on_change, poll_seconds)
        subscription.waiting = waiting
        with self._lock:
            if self._closed:
                raise RuntimeError("the change feed is closed")
            self._subscriptions.append(subscription)
            if not self._postgres:
                subscription.hearing.set()  # every commit from now on changes data_version
            if self._thread is None:
                target = self._listen if self._postgres else self._watch
                self._thread = threading.Thread(target=target, name="cesar-change-feed", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        if settle:
            subscription.hearing.wait(CONNECT_TIMEOUT_S)
        with self._lock:
            subscription.late = not subscription.hearing.is_set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                self._subscriptions.remove(subscription)
            self._lock.notify_all()

    def wake(self) -> None:
        """Have the thread look at its subscribers again now (one began or stopped waiting)."""
        with self._lock:
            self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._subscriptions.clear()
            self._lock.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _is_closed(self) -> bool:
        return self._closed

    def _kinds(self) -> frozenset[ChangeKind]:
        with self._lock:
            return frozenset(kind for subscription in self._subscriptions for kind in subscription.kinds)

    def _dispatch(self, change: Change) -> None:
        with self._lock:
            wanting = [s for s in self._subscriptions if change.kind in s.kinds]
        for subscription in wanting:
            try:
                subscription.on_change(change)
            except Exception:  # a consumer's bug must not end the feed for every other consumer
                log.exception("a change-feed subscriber failed")

    def _hearing(self, kinds: set[ChangeKind]) -> None:
        """The feed now hears ``kinds``: subscribers waiting for that are told; those that stopped waiting
        look (what changed before is unheard)."""
        late: list[Subscription] = []
        with self._lock:
            for subscription in self._subscriptions:
                if not subscription.hearing.is_set() and subscription.kinds <= kinds:
                    subscription.hearing.set()
                    if subscription.late:
                        late.append(subscription)
        for subscription in late:
            for kind in subscription.kinds:
                subscription.on_change(Change(kind))

    def _look_again(self) -> None:
        """Notifications may have been missed: every subscriber looks for itself."""
        for kind in self._kinds():
            self._dispatch(Change(kind))

    # --- PostgreSQL --------------------------------------------------------------------------------------
    def _listen(self) -> None:
        conninfo = self._listen_url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._closed:
            try:
                self._listen_on(conninfo)
            except Exception as exc:  # psycopg.Error, and anything else: the next connection starts afresh
                if self._is_closed():
                    return
                log.warning("lost the connection listening for changes (will retry): %s", error_reason(exc))
                with self._lock:
                    self._lock.wait_for(lambda: self._closed, timeout=RECONNECT_SECONDS)
                self._look_again()

    def _listen_on(self, conninfo: str) -> None:
        import psycopg  # here: SQLite deployments never need it

        with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            row = conn.execute(f"SELECT {_SCHEMA}").fetchone()
            schema = row[0] if row else ""
            listening: set[ChangeKind] = set()
            while not self._closed:
                wanted = self._kinds()
                for kind in sorted(wanted - listening):
                    conn.execute(f"LISTEN {CHANNELS[kind]}")
                for kind in sorted(listening - wanted):
                    conn.execute(f"UNLISTEN {CHANNELS[kind]}")
                listening = set(wanted)
                self._hearing(listening)
                # each change is handed on the moment it arrives (dispatching is quick: subscribers set an
                # event or hand it to their loop), and the generator is run to its end before the next look
                for note in conn.notifies(timeout=LISTEN_STEP_SECONDS):
                    change = _parse(note, schema)
                    if change is not None:
                        self._dispatch(change)

    # --- SQLite ------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        watcher = _SqliteWatcher(sqlite_path(self._engine.url))
        try:
            while True:
                with self._lock:
                    self._lock.wait_for(lambda: self._closed or self._someone_waits())
                    if self._closed:
                        return
                    step = min(s.poll_seconds for s in self._subscriptions if s.waiting)
                self.statements += 1
                if watcher.changed():
                    self._changed_on_sqlite()
                with self._lock:
                    self._lock.wait_for(lambda: self._closed, timeout=step)
        finally:
            watcher.close()

    def _someone_waits(self) -> bool:
        return any(subscription.waiting for subscription in self._subscriptions)

    def _changed_on_sqlite(self) -> None:
        kinds = self._kinds()
        if ChangeKind.JOB in kinds:
            self._dispatch(Change(ChangeKind.JOB))
        if ChangeKind.WORK in kinds:
            self.statements += 1
            try:
                with self._engine.connect() as conn:
                    waiting = self._work_waiting(conn)
            except Exception as exc:  # the database is away: let the workers find out by claiming
                log.warning("could not look for work: %s", error_reason(exc))
                waiting = True
            if waiting:
                self._dispatch(Change(ChangeKind.WORK))


def _parse(note: psycopg.Notify, schema: str) -> Change | None:
    kind = _KIND_OF_CHANNEL.get(note.channel)
    if kind is None:
        return None
    where, _, job_id = note.payload.partition("|")
    if where != schema:
        return None
    return Change(kind, job_id or None)


class _SqliteWatcher:
    """``PRAGMA data_version`` on a connection of its own: it changes when any other connection commits."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None

    def changed(self) -> bool:
        """Whether another connection committed since the last call (True when the file cannot be read:
        the subscribers then look for themselves)."""
        if self._conn is None and not self._open():
            return True
        assert self._conn is not None
        try:
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            log.warning("error watching %s for changes: %s", self._path, exc)
            self.close()
            return True
        changed, self._version = version != self._version, version
        return changed

    def _open(self) -> bool:
        if self._path is None or not self._path.exists():
            return False
        try:
            # never create a missing database; the first look counts as a change (nothing was seen yet)
            self._conn = sqlite3.connect(
                f"{self._path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
        except sqlite3.Error as exc:
            log.warning("cannot watch %s for changes: %s", self._path, exc)
            return False
        return True

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
            self._version = None


class WorkSignal:
    """What an idle worker waits on: a ``work`` change since its last look. Create it before the worker's
    first claim, so that nothing queued between a fruitless claim and the next :meth:`wait` goes unheard.
    One thread at a time."""

    def __init__(self, feed: ChangeFeed, *, stop_event: threading.Event | None = None) -> None:
        self._stop = stop_event
        self._heard = threading.Event()
        #: True while a thread is in :meth:`wait` (the worker is idle)
        self.waiting = False
        self._subscription = feed.subscribe([ChangeKind.WORK], self._hear, waiting=False)

    def _hear(self, change: Change) -> None:
        self._heard.set()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds (less once the stop event is set); True when work may be there."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._subscription.wait_for_changes(True)
        self.waiting = True
        try:
            while not self._heard.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._stop is not None and self._stop.is_set()):
                    return False
                # the stop event cannot wake this wait: look at it every little while
                self._heard.wait(min(remaining, 0.25) if self._stop is not None else remaining)
            self._heard.clear()
            return True
        finally:
            self.waiting = False
            self._subscription.wait_for_changes(False)

    def close(self) -> None:
        self._subscription.close()

    def __enter__(self) -> WorkSignal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
