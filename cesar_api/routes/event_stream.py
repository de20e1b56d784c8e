"""``GET /jobs/{id}/events``: a job, live, as server-sent events (see :mod:`cesar_api.event_hub`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from cesar_api.access import WATCH_SECONDS, KeyRing, caller_of
from cesar_api.auth import COOKIE_OPENS
from cesar_api.event_hub import EventHub, Position
from cesar_api.exception_mapper import error_responses
from cesar_api.reads import run_read
from cesar_api.routes.job_routes import JOB_ID
from cesar_common.db.store import JobStore

__all__ = ["follow_job"]

_DESCRIPTION = """\
The job as it changes, as `text/event-stream`:

- `job`: the job's JSON (as `GET /jobs/{id}`) when the stream opens and at every change of status, queue
  position, progress or segment count;
- `segment`: each segment as soon as it is decoded (`id`, `start`, `end`, `text`, `words` when asked for),
  in order, each once;
- `end`: the final job JSON (`completed`, `error` or `cancelled`), after the last segment; the stream then
  closes, unless `revisions=true`: then it stays open and sends
- `revision`: the job's JSON each time its transcript is edited (`PATCH /jobs/{id}/transcript`; the JSON's
  `revision` is the new one: fetch the transcript again), until you leave or the job is deleted.

Each event has an `id:`; reconnect with `Last-Event-ID` (browsers' `EventSource` do it by themselves) to
continue with no gap and no duplicate. A `Last-Event-ID` that is not such an id gets `400` before the stream
starts. A comment line comes at least every 15 s. If the job's worker is lost
and the job runs again, a `job` event shows the new `attempts` and segments start over from 0. If the key
is revoked or expires, an `error` event (`{"code": "unauthorized", ...}`) ends the stream within a second.

With `CESAR_API_KEY`, send the key as everywhere, or, from a browser's `EventSource`, the cookie that
`POST /session` sets.

`curl -N http://127.0.0.1:5000/jobs/<id>/events`
"""


@get(
    "/jobs/{job_id:str}/events",
    operation_id="followJob",
    tags=["Jobs"],
    summary="Follow a job live (server-sent events)",
    description=_DESCRIPTION,
    opt={COOKIE_OPENS: True},
    media_type="text/event-stream",
    response_description="A stream of `job`, `segment` and `end` events (and `revision` events).",
    responses={
        200: ResponseSpec(data_container=str, generate_examples=False, media_type="text/event-stream"),
        **error_responses(
            400, 404, 503, s400="A `Last-Event-ID` this stream never sent, or a malformed job id"
        ),
    },
)
async def follow_job(
    request: Request[Any, Any, Any],
    job_id: Annotated[str, JOB_ID],
    store: NamedDependency[JobStore],
    last_event_id: Annotated[
        str | None,
        HeaderParameter(
            name="Last-Event-ID",
            required=False,
            # no max_length: Position.parse bounds it, so every id it refuses gets the same 400
            description="The `id` of the last event received (`<attempt>.<segments>`): the stream continues "
            "after it.",
        ),
    ] = None,
    revisions: Annotated[
        bool,
        QueryParameter(
            description="`true`: once the job has ended, stay open and send a `revision` event after each "
            "edit of its transcript."
        ),
    ] = False,
) -> Stream:
    resume = Position.parse(last_event_id)  # 400 before the stream starts
    job = await run_read(store, store.get_job, job_id)  # and 404
    hub: EventHub = request.app.state.events
    return Stream(
        _while_key_holds(request, hub.stream(job, resume, revisions=revisions)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _while_key_holds(
    request: Request[Any, Any, Any], events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``events`` while the request's key holds; once it is revoked or expires, an ``error`` event and the
    end of the stream."""
    caller = caller_of(request)
    if caller.key is None:  # the server's own key cannot be revoked
        async for chunk in events:
            yield chunk
        return
    ring: KeyRing = request.app.state.key_ring
    iterator = aiter(events)
    pending: asyncio.Future[bytes] = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=WATCH_SECONDS)
            if done:
                try:
                    chunk = pending.result()
                except StopAsyncIteration:
                    return
                yield chunk
                pending = asyncio.ensure_future(anext(iterator))
                continue
            await ring.fresh()
            if not ring.still_valid(caller):
                message = f"the API key {caller.name!r} was revoked or expired"
                data = json.dumps({"code": "unauthorized", "message": message})
                yield f"event: error\ndata: {data}\n\n".encode()
                return
    finally:
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        closing = getattr(iterator, "aclose", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing()
