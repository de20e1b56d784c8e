"""Answering when the job ends: the compatible routes queue an ordinary job and hold the request open.

The job is like any other: it survives a restart of the API (the client's request does not), any worker on
any host may run it, and it shows in ``GET /jobs``. The response waits for it through the process's
:class:`~cesar_api.event_hub.EventHub` (no query loop per request). If the client goes away first, the job is
cancelled: nobody is left to read its transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import IO, Any

import anyio.to_thread
from litestar import Request

from cesar_api.access import Caller
from cesar_api.event_hub import EventHub
from cesar_api.submit import probe_upload, submit_upload_job
from cesar_common.db.records import JobRecord
from cesar_common.db.store import JobStore
from cesar_common.errors import CesarError, ServerError
from cesar_common.job_options import TranscribeOptions
from cesar_common.settings import Settings

__all__ = ["ClientGone", "cancel", "follow_to_end", "queue_upload", "wait_for_end"]

log = logging.getLogger("cesar.api")


class ClientGone(Exception):
    """The client closed the connection before its job ended (the job was cancelled)."""


async def queue_upload(
    store: JobStore,
    settings: Settings,
    options: TranscribeOptions,
    file: IO[bytes],
    caller: Caller,
    *,
    filename: str | None,
    content_type: str | None,
) -> JobRecord:
    """Probe ``file`` (415/422 without a job when it is not usable audio) and queue it as a job of
    ``caller`` (within its quotas)."""
    seconds = await anyio.to_thread.run_sync(probe_upload, file, settings)
    submitted = await anyio.to_thread.run_sync(
        lambda: submit_upload_job(
            store,
            settings,
            options,
            file,
            caller,
            filename=filename,
            content_type=content_type,
            audio_seconds=seconds,
        )
    )
    return submitted.record


async def follow_to_end(
    request: Request[Any, Any, Any], job: JobRecord, *, watch_client: bool = True
) -> AsyncIterator[tuple[str, Any]]:
    """``job``'s segments and then its final record, as :meth:`EventHub.follow` gives them; if the client
    disconnects first, the job is cancelled and :class:`ClientGone` raised. ``watch_client=False`` for a
    streamed answer, whose response already listens for the client leaving (and cancels the stream)."""
    hub: EventHub = request.app.state.events
    store: JobStore = request.app.state.store
    events = hub.follow(job)
    gone = asyncio.ensure_future(_disconnected(request) if watch_client else asyncio.Event().wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(events))
            done, _pending = await asyncio.wait({step, gone}, return_when=asyncio.FIRST_COMPLETED)
            if step not in done:
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
                await cancel(store, job.id)
                raise ClientGone
            try:
                event = step.result()
            except StopAsyncIteration:
                raise ServerError(f"job {job.id} was deleted before it ended") from None
            yield event
            if event[0] == "end":
                return
    finally:
        gone.cancel()
        await events.aclose()


async def wait_for_end(request: Request[Any, Any, Any], job: JobRecord) -> JobRecord:
    """``job``'s final record, with its transcript (see :func:`follow_to_end`)."""
    async for kind, data in follow_to_end(request, job):
        if kind == "end":
            return data  # type: ignore[no-any-return]
    raise ServerError(f"job {job.id} ended without an end")  # follow_to_end never ends otherwise


async def cancel(store: JobStore, job_id: str) -> None:
    """Cancel ``job_id`` if it has not ended (a stream's reader left)."""
    try:
        await anyio.to_thread.run_sync(store.request_cancel, job_id)
    except CesarError as exc:  # ended meanwhile (409), or the database is away: nothing more to do
        log.debug("job %s not cancelled: %s", job_id, exc.describe())
    else:
        log.info("job %s cancelled: its client went away before it ended", job_id)


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    """Returns when the client closes the connection (its body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
