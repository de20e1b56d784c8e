"""Live jobs: ``GET /jobs/{id}/events`` as server-sent events, for any number of subscribers per process.

One :class:`EventHub` per API process watches the jobs that have subscribers, whatever their number. It
hears of changes from the process's change feed (:mod:`cesar_common.db.feed`: job changes announced by the
transactions that make them on PostgreSQL, the file's commits on SQLite) while it has subscribers, and
reads at most ten times a second however many jobs change, each change once (the watched jobs in one
statement, the new segments of all of them in another, and the queue positions of queued ones in a third),
and encodes each event once: subscribers get the same bytes.

Events, each with an ``id:`` of the form ``<attempt>.<segments delivered>``:

- ``job``: the job's JSON (as ``GET /jobs/{id}``) when the stream opens and whenever its status, queue
  position, progress or segment count changes;
- ``segment``: each segment, in order, exactly once (``{"id", "start", "end", "text", "words"?}``);
- ``end``: the final job JSON, after the last segment; then the stream closes, unless it follows
  revisions (``revisions``): then it stays open and sends
- ``revision``: the job's JSON after each edit of its transcript (its ``revision`` the new one), until the
  client leaves or the job is deleted.

A client that reconnects with ``Last-Event-ID`` continues after the last segment it got. If a worker is
lost and the job starts again, a ``job`` event shows a new ``attempts`` and segments start over from 0 (not
a live session's: its next worker goes on after the segments confirmed before).

A subscriber whose queue fills (a stalled reader) is cut off, not buffered for: it reconnects and resumes
from the database. A subscriber that leaves is dropped at once; a job nobody follows is not watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cesar_common.db.feed import ChangeFeed, ChangeKind, Subscription
from cesar_common.db.records import JobRecord, JobSource, JobStatus
from cesar_common.db.store import JobStore
from cesar_common.errors import CesarError, ClientError
from cesar_common.job_json import job_to_schema
from cesar_common.text import plain_number

__all__ = ["EventHub", "Position"]

log = logging.getLogger("cesar.api.events")

#: events a subscriber may fall behind by before it is cut off (it then resumes with Last-Event-ID)
QUEUE_EVENTS = 256
KEEPALIVE_SECONDS = 15.0
#: time to let notifications that arrive together be read together
COALESCE_SECONDS = 0.01
#: the shortest time between two reads of the watched jobs
REFRESH_SECONDS = 0.1
#: both, while a request waits to answer with a job's end (``follow``): its client is waiting on the
#: line, and one look costs the same however many requests wait
ANSWERING_SECONDS = 0.02


def encode(event: str, event_id: str, data: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"
END_OF_STREAM = b""  # what a topic sends subscribers when the job ended, after the end event


@dataclass
class Position:
    """Where a subscriber is: the attempt it follows and how many of its segments it has had."""

    attempt: int
    delivered: int
    ended: bool = False
    gone: bool = False  # the job was deleted
    revision: int = 0  # of the transcript the client was last sent

    @property
    def event_id(self) -> str:
        return f"{self.attempt}.{self.delivered}"

    @classmethod
    def parse(cls, last_event_id: str | None) -> Position | None:
        """Where a ``Last-Event-ID`` says the client is (None without one). An id this hub never sends is
        a ClientError, raised before the stream starts: once it has, an error can only drop it."""
        if last_event_id is None or not last_event_id.strip():
            return None
        before, _, after = last_event_id.strip().partition(".")
        attempt, delivered = plain_number(before), plain_number(after)
        if attempt is None or delivered is None:
            raise ClientError(  # not quoted back: a client may send anything here
                "Last-Event-ID is not an id this stream sent: send the `id` of the last event received "
                "(`<attempt>.<segments>`, digits), or no Last-Event-ID to start over"
            )
        return cls(attempt, delivered)


#: what a subscriber's queue holds: kind, attempt, segment number, the encoded event less its id line, and
#: the event's data (a segment's dict; the JobRecord of a job or end event)
_Item = tuple[str, int, int, bytes, Any]


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[_Item] = field(default_factory=lambda: asyncio.Queue(maxsize=QUEUE_EVENTS))
    cut_off: bool = False


@dataclass(eq=False)
class _Topic:
    """One watched job: its subscribers and what was last published about it."""

    job_id: str
    subscribers: set[_Subscriber] = field(default_factory=set)
    attempt: int = -1
    published: int = 0  # segments of this attempt published so far
    state: tuple[Any, ...] | None = None
    ended: bool = False
    revision: int = 0  # of the transcript, once ended

    def publish(self, kind: str, seq: int, payload: bytes, data: Any) -> None:
        """``payload`` is the encoded event less its id line (each subscriber's id differs)."""
        for subscriber in list(self.subscribers):
            if subscriber.cut_off:
                continue
            try:
                subscriber.queue.put_nowait((kind, self.attempt, seq, payload, data))
            except asyncio.QueueFull:
                subscriber.cut_off = True  # it reconnects and resumes from the database


class EventHub:
    """The process's one watcher and its topics. Start with :meth:`start`, stop with :meth:`close`."""

    def __init__(self, store: JobStore, read: Callable[..., Any], feed: ChangeFeed) -> None:
        self.store = store
        self._read = read  # runs a store call: inline on SQLite, in a thread on PostgreSQL
        self._feed = feed
        self._topics: dict[str, _Topic] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self.open_streams = 0
        self._answering = 0  # requests in follow()

    @property
    def watcher_statements(self) -> int:
        """Statements the change feed sent on a connection of its own (outside the engine's count)."""
        return self._feed.statements

    # --- subscribers -----------------------------------------------------------------------------
    async def stream(
        self, job: JobRecord, resume: Position | None, *, revisions: bool = False
    ) -> AsyncIterator[bytes]:
        """The events of ``job`` after ``resume`` (both checked already: a 404 or a 400 happens before the
        stream starts); ``revisions``: after its end, its transcript's edits."""
        with self._subscribed(job) as subscriber:
            # subscribed first, then read: anything published meanwhile is in the queue, and duplicates
            # are skipped by segment number
            position = resume
            if position is None or position.attempt != _epoch(job):
                position = Position(_epoch(job), 0)
            async for chunk in self._catch_up(job, position):
                yield chunk
            if position.ended and (position.gone or not revisions):
                return
            async for chunk in self._follow(subscriber, position, revisions):
                yield chunk

    async def follow(self, job: JobRecord) -> AsyncGenerator[tuple[str, Any]]:
        """``job``'s segments as dicts, in order, each once (``("segment", dict)``), then its final record
        with its transcript (``("end", JobRecord)``): for the routes that answer when a job ends.

        Decoding is deterministic, so a job that starts again (a lost worker) produces the segments
        already given again: they are skipped by number. A subscriber that falls behind reads again from
        the database. Ends without ``end`` only if the job is deleted meanwhile.
        """
        self._answering += 1
        try:
            async for item in self._follow_job(job):
                yield item
        finally:
            self._answering -= 1

    async def _follow_job(self, job: JobRecord) -> AsyncIterator[tuple[str, Any]]:
        with self._subscribed(job) as subscriber:
            delivered = 0
            while True:
                record = (await self._read(self.store.jobs_by_id, [job.id])).get(job.id)
                if record is None:
                    return
                for segment in await self._read(self._segments_after, record, delivered):
                    delivered += 1
                    yield "segment", segment
                if record.is_final:
                    yield "end", await self._read(self.store.get_job, job.id, with_segments=True)
                    return
                subscriber.cut_off = False
                while not subscriber.cut_off or not subscriber.queue.empty():
                    try:
                        kind, _attempt, seq, _payload, data = await asyncio.wait_for(
                            subscriber.queue.get(), KEEPALIVE_SECONDS
                        )
                    except TimeoutError:
                        continue
                    if kind == "end":
                        for segment in (data.segments or [])[delivered:]:
                            delivered += 1
                            yield "segment", segment
                        yield "end", data
                        return
                    if kind == "segment" and seq == delivered:
                        delivered += 1
                        yield "segment", data
                    elif kind == "segment" and seq > delivered:
                        break  # a gap (an attempt that started over and overtook us): read again

    @contextlib.contextmanager
    def _subscribed(self, job: JobRecord) -> Iterator[_Subscriber]:
        subscriber = _Subscriber()
        self.open_streams += 1
        topic = self._topics.get(job.id)
        if topic is None:  # it publishes what comes after what this subscriber reads now
            topic = self._topics[job.id] = _Topic(
                job.id,
                attempt=_epoch(job),
                published=job.segment_count,
                ended=job.is_final,  # a final job's end comes from the catch-up
                revision=job.revision,
            )
        topic.subscribers.add(subscriber)
        self._ensure_running()
        try:
            yield subscriber
        finally:
            self.open_streams -= 1
            topic.subscribers.discard(subscriber)
            if not topic.subscribers and self._topics.get(job.id) is topic:
                del self._topics[job.id]

    async def _catch_up(self, job: JobRecord, position: Position) -> AsyncIterator[bytes]:
        fresh = await self._read(self._job_event_data, job.id)
        if fresh is None:  # deleted meanwhile
            position.ended = position.gone = True
            return
        record, data, queue_position = fresh
        position.revision = record.revision
        topic = self._topics.get(record.id)
        if topic is not None and topic.state is None and topic.attempt == _epoch(record):
            topic.state = _state(record, queue_position)  # what this first job event already said
        if _epoch(record) != position.attempt:  # started again since the client's last event
            position.attempt, position.delivered = _epoch(record), 0
        yield encode("job", position.event_id, data)
        for segment in await self._read(self._segments_after, record, position.delivered):
            position.delivered += 1
            yield encode("segment", position.event_id, _segment_json(segment))
        if record.is_final:
            position.ended = True
            yield encode("end", position.event_id, data)

    async def _follow(
        self, subscriber: _Subscriber, position: Position, revisions: bool = False
    ) -> AsyncIterator[bytes]:
        while True:
            try:
                kind, attempt, seq, payload, data = await asyncio.wait_for(
                    subscriber.queue.get(), KEEPALIVE_SECONDS
                )
            except TimeoutError:
                if subscriber.cut_off:
                    return
                yield KEEPALIVE
                continue
            if kind == _CLOSED:
                return
            if kind == "revision":
                if not revisions or data.revision <= position.revision:
                    continue  # not followed, or the client has it (the catch-up read it)
                position.revision = data.revision
            elif kind == "segment":
                if attempt != position.attempt or seq != position.delivered:
                    continue  # sent already (the catch-up read it), or of an attempt being replaced
                position.delivered += 1
            elif attempt != position.attempt:
                position.attempt, position.delivered = attempt, 0  # a new attempt: segments start over
            yield f"id: {position.event_id}\n".encode() + payload
            if kind == "end" and not revisions:
                return
            if subscriber.cut_off and subscriber.queue.empty():
                return

    # --- the watcher -------------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="cesar-events")
        self._changed.set()  # a new subscriber: look now

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            self._subscription.close()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        if self._subscription is None:
            self._subscription = self._feed.subscribe(
                [ChangeKind.JOB],
                lambda change: _call_soon(loop, self._changed.set),
                waiting=False,
                settle=False,  # on the event loop: told to look once the feed hears instead
            )
        last = -math.inf
        try:
            while self._topics:
                gap = ANSWERING_SECONDS if self._answering else REFRESH_SECONDS
                self._subscription.poll_seconds = gap  # how often SQLite's commits are looked for
                self._subscription.wait_for_changes(True)
                try:
                    await asyncio.wait_for(self._changed.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    continue
                # changes that come together are read together, and reads come at most every `gap` however
                # many jobs change: the hub's reads stay bounded under any write load
                await asyncio.sleep(max(COALESCE_SECONDS, last + gap - loop.time()))
                self._changed.clear()
                last = loop.time()
                try:
                    await self._refresh()
                except CesarError as exc:  # the database hiccuped: look again in a while
                    log.warning("events: %s", exc.describe())
                    await asyncio.sleep(1.0)
                    self._changed.set()
        finally:
            self._subscription.wait_for_changes(False)
            self._task = None

    async def _refresh(self) -> None:
        ids = list(self._topics)
        records: dict[str, JobRecord] = await self._read(self.store.jobs_by_id, ids)
        queued = [job_id for job_id, record in records.items() if record.status is JobStatus.QUEUED]
        positions: dict[str, int] = {}
        if queued:
            positions = await self._read(self.store.queue_positions, queued)
        changed: list[tuple[_Topic, JobRecord]] = []
        for job_id in ids:
            topic = self._topics.get(job_id)
            record = records.get(job_id)
            if topic is not None and topic.ended:
                _publish_revision(topic, record)
                continue
            if topic is None or record is None:
                continue
            if _epoch(record) != topic.attempt:
                topic.attempt, topic.published, topic.state = _epoch(record), 0, None
            if record.segment_count < topic.published:
                topic.published = 0
            changed.append((topic, record))
        # the new segments of every running job that has some, in one read
        firsts = {
            topic.job_id: topic.published
            for topic, record in changed
            if record.segment_count > topic.published and not record.is_final
        }
        live = await self._read(self.store.live_segments_of, firsts) if firsts else {}
        for topic, record in changed:
            await self._publish_changes(
                topic, record, positions.get(topic.job_id), live.get(topic.job_id, [])
            )

    async def _publish_changes(
        self, topic: _Topic, record: JobRecord, position: int | None, live: list[dict[str, Any]]
    ) -> None:
        for segment in live:
            topic.publish("segment", topic.published, _segment_payload(segment), segment)
            topic.published += 1
        state = _state(record, position)
        if record.is_final:
            final = await self._read(self.store.get_job, record.id, with_segments=True)
            for segment in (final.segments or [])[topic.published :]:
                topic.publish("segment", topic.published, _segment_payload(segment), segment)
                topic.published += 1
            data = _job_json(final, None)
            topic.publish("job", topic.published, _payload("job", data), final)
            topic.publish("end", topic.published, _payload("end", data), final)
            topic.ended, topic.revision = True, final.revision
        elif state != topic.state:
            topic.state = state
            topic.publish("job", topic.published, _payload("job", _job_json(record, position)), record)

    # --- reads (run through self._read) ------------------------------------------------------------
    def _job_event_data(self, job_id: str) -> tuple[JobRecord, str, int | None] | None:
        records = self.store.jobs_by_id([job_id])
        record = records.get(job_id)
        if record is None:
            return None
        position = self.store.queue_position(record)
        return record, _job_json(record, position), position

    def _segments_after(self, record: JobRecord, first: int) -> list[dict[str, Any]]:
        if record.source is JobSource.LIVE:  # its confirmed segments stay with it, whatever its status
            return self.store.live_segments(record.id, first=first)
        if record.status is JobStatus.COMPLETED:
            return list(self.store.get_job(record.id, with_segments=True).segments or [])[first:]
        if record.status is JobStatus.PROCESSING:
            return self.store.live_segments(record.id, first=first)
        return []


#: what an ended topic sends when its job is deleted: the streams that follow its revisions close
_CLOSED = "closed"


def _publish_revision(topic: _Topic, record: JobRecord | None) -> None:
    """An ended job's transcript edited since the topic last said (or the job deleted)."""
    if record is None:
        topic.publish(_CLOSED, topic.published, b"", None)
    elif record.revision != topic.revision:
        topic.revision = record.revision
        topic.publish("revision", topic.published, _payload("revision", _job_json(record, None)), record)


def _epoch(record: JobRecord) -> int:
    """What a stream's segments are numbered within: the job's attempt (a job that starts again decodes
    again from its start), but one for a whole live session (a worker that takes it over goes on after the
    segments confirmed before)."""
    return 0 if record.source is JobSource.LIVE else record.attempts


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: the process is stopping
        loop.call_soon_threadsafe(callback)


def _state(record: JobRecord, position: int | None) -> tuple[Any, ...]:
    """What a job event shows that may change while the job is followed."""
    return (record.status, position, round(record.progress, 4), record.segment_count, record.webhook)


def _job_json(record: JobRecord, position: int | None) -> str:
    return job_to_schema(record, queue_position=position).model_dump_json()


def _payload(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _segment_json(segment: dict[str, Any]) -> str:
    """A segment event's data: id, start, end, text and words (not how its window was decoded)."""
    return json.dumps({key: value for key, value in segment.items() if key != "decoded"}, ensure_ascii=False)


def _segment_payload(segment: dict[str, Any]) -> bytes:
    return _payload("segment", _segment_json(segment))
