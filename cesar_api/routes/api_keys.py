"""API keys (``/keys``): an admin makes, lists, changes and revokes the keys of a server's users; any key
reads its own limits and what it has used of them (``GET /keys/me``, what the web page shows).

A key is shown once, in the answer to ``POST /keys``: the database keeps its prefix and a hash
(:mod:`cesar_common.db.api_keys`). The guard resolves each request's key and refuses the routes marked
:data:`~cesar_api.access.ADMIN_ONLY` to a user key (``403``); here a route only reads the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from litestar import Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody
from litestar.params import PathParameter
from pydantic import BaseModel, Field

from cesar_api.access import ADMIN_ONLY, caller_of
from cesar_api.exception_mapper import error_responses
from cesar_api.submit import validated
from cesar_api.uploads import MAX_JSON_BYTES, read_json_body
from cesar_common.db.store import JobStore
from cesar_common.errors import NotFoundError
from cesar_common.job_json import Schema
from cesar_common.key_json import (
    KeyIn,
    KeyOut,
    KeyPatch,
    KeysOut,
    NewKeyOut,
    RevokedKeyOut,
    RevokeIn,
    key_out,
)

__all__ = ["create_key", "get_key", "list_keys", "my_key", "revoke_key", "update_key"]

KEY_ID = PathParameter(description="The key's id, name (any case) or prefix.", max_length=100)
_ADMIN = {ADMIN_ONLY: True}
_S403 = "The key is not an admin key"


class LimitsOut(Schema):
    max_queued: int | None = Field(description="Jobs queued or running at once; null: no limit.")
    audio_hours_per_day: float | None = Field(description="Hours of audio in any 24 hours; null: no limit.")
    requests_per_second: float | None = Field(description="Requests a second; null: no limit.")


class UsageOut(Schema):
    queued: int = Field(description="The key's jobs queued or running now.")
    audio_hours_today: float = Field(description="Hours of audio the key submitted in the last 24 hours.")


class RemainingOut(Schema):
    queued: int | None = Field(description="Jobs the key may queue now; null: no limit.")
    audio_hours_today: float | None = Field(
        description="Hours of audio the key may submit now; null: no limit."
    )


class MeOut(Schema):
    """The key a request was made with: its limits, and what it has used of them."""

    name: str = Field(examples=["alice"])
    admin: bool
    prefix: str | None = Field(description="null for the server's own key (`CESAR_API_KEY`).")
    limits: LimitsOut
    usage: UsageOut
    remaining: RemainingOut


def _body(model: type[BaseModel], *, required: bool = True) -> RequestBody:
    # inline: a model of the body is in no handler's signature (the routes read it strictly, themselves),
    # so Litestar would not put it in the document's components
    schema: Any = model.model_json_schema()
    return RequestBody(required=required, content={"application/json": OpenAPIMediaType(schema=schema)})


@dataclass
class CreateKeyOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body(KeyIn)


@dataclass
class UpdateKeyOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body(KeyPatch)


@dataclass
class RevokeKeyOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body(RevokeIn, required=False)


async def _read(request: Request[Any, Any, Any], model: type[BaseModel]) -> Any:
    """The JSON body as ``model``, strictly: a Litestar body parameter would take `"3"` for a number."""
    return validated(model, await read_json_body(request), request.method, request.url.path)


def _who(key_id: str) -> str:
    # PostgreSQL refuses a NUL in a query's text; no key's name, id or prefix holds one
    if "\x00" in key_id:
        raise NotFoundError(f"no API key named {key_id!r}", extra={"key": key_id})
    return key_id


@post(
    "/keys",
    operation_id="createKey",
    tags=["Keys"],
    summary="Make an API key",
    description="A key for one user, with its limits (each left out or null: none). The answer holds the "
    "key itself (`key`), this once: Cesar keeps only a hash of it. Admin keys only.",
    status_code=201,
    opt=_ADMIN,
    operation_class=CreateKeyOperation,
    responses=error_responses(400, 403, 409, 413, 422, 503, s403=_S403, s409="A key has this name already"),
)
async def create_key(
    request: Request[Any, Any, Any], store: NamedDependency[JobStore]
) -> Response[NewKeyOut]:
    data: KeyIn = await _read(request, KeyIn)
    limits = data.model_dump(exclude_unset=True, exclude={"name"})
    record, key = await anyio.to_thread.run_sync(lambda: store.create_key(data.name, **limits))
    made = NewKeyOut(**key_out(record).model_dump(), key=key)
    return Response(made, status_code=201, headers={"Location": f"/keys/{record.id}"})


@get(
    "/keys",
    operation_id="listKeys",
    tags=["Keys"],
    summary="List the API keys",
    description="Every key with its limits, revoked and expired ones too (`status`); never the keys "
    "themselves. Admin keys only.",
    opt=_ADMIN,
    sync_to_thread=True,
    responses=error_responses(403, 503, s403=_S403),
)
def list_keys(store: NamedDependency[JobStore]) -> KeysOut:
    return KeysOut(keys=[key_out(record) for record in store.list_keys()])


@get(
    "/keys/me",
    operation_id="getMyKey",
    tags=["Keys"],
    summary="The caller's key, limits and usage",
    description="The key this request was made with: its limits, what it has used of them (its jobs "
    "queued or running, the hours of audio it submitted in the last 24 hours) and what remains (null: no "
    "limit). The server's own key (`CESAR_API_KEY`), and everyone on a server without keys, is an admin "
    "with no limits.",
    sync_to_thread=True,
    responses=error_responses(503),
)
def my_key(request: Request[Any, Any, Any], store: NamedDependency[JobStore]) -> MeOut:
    caller = caller_of(request)
    used = store.key_usage(caller.owner)
    key = caller.key
    max_queued = None if key is None else key.max_queued
    hours = None if key is None else key.audio_hours_per_day
    hours_used = used.audio_seconds_today / 3600
    return MeOut(
        name=caller.name,
        admin=caller.admin,
        prefix=None if key is None else key.prefix,
        limits=LimitsOut(
            max_queued=max_queued,
            audio_hours_per_day=hours,
            requests_per_second=None if key is None else key.requests_per_second,
        ),
        usage=UsageOut(queued=used.queued, audio_hours_today=hours_used),
        remaining=RemainingOut(
            queued=None if max_queued is None else max(max_queued - used.queued, 0),
            audio_hours_today=None if hours is None else max(hours - hours_used, 0.0),
        ),
    )


@get(
    "/keys/{key_id:str}",
    operation_id="getKey",
    tags=["Keys"],
    summary="Get an API key",
    description="One key by its id, name or prefix (never the key itself). Admin keys only.",
    opt=_ADMIN,
    sync_to_thread=True,
    responses=error_responses(400, 403, 404, 503, s403=_S403, s404="No key with this id, name or prefix"),
)
def get_key(key_id: Annotated[str, KEY_ID], store: NamedDependency[JobStore]) -> KeyOut:
    return key_out(store.get_key(_who(key_id)))


@patch(
    "/keys/{key_id:str}",
    operation_id="updateKey",
    tags=["Keys"],
    summary="Change an API key's limits",
    description="The fields given change (null lifts a limit, or makes the key never expire); the others "
    "stay. A request already counted goes on; the next one meets the new limits. Admin keys only.",
    opt=_ADMIN,
    operation_class=UpdateKeyOperation,
    responses=error_responses(
        400, 403, 404, 413, 422, 503, s403=_S403, s404="No key with this id, name or prefix"
    ),
)
async def update_key(
    key_id: Annotated[str, KEY_ID], request: Request[Any, Any, Any], store: NamedDependency[JobStore]
) -> KeyOut:
    data: KeyPatch = await _read(request, KeyPatch)
    changes = data.model_dump(exclude_unset=True)
    return key_out(await anyio.to_thread.run_sync(lambda: store.update_key(_who(key_id), changes)))


@post(
    "/keys/{key_id:str}/revoke",
    operation_id="revokeKey",
    tags=["Keys"],
    summary="Revoke an API key",
    description="Every request with the key is refused from now on (`401`), on every API process; "
    "revoking again changes nothing. Its queued jobs run as queued, unless `cancel_jobs` (the body is "
    "optional). The key stays listed, so its jobs keep an owner. Admin keys only.",
    status_code=200,
    opt=_ADMIN,
    operation_class=RevokeKeyOperation,
    request_max_body_size=MAX_JSON_BYTES,
    responses=error_responses(
        400, 403, 404, 413, 503, s403=_S403, s404="No key with this id, name or prefix"
    ),
)
async def revoke_key(
    key_id: Annotated[str, KEY_ID], request: Request[Any, Any, Any], store: NamedDependency[JobStore]
) -> RevokedKeyOut:
    # the body is optional: none is `{}` (read_json_body refuses an empty one)
    data = await _read(request, RevokeIn) if (await request.body()).strip() else RevokeIn()
    record, cancelled = await anyio.to_thread.run_sync(
        lambda: store.revoke_key(_who(key_id), cancel_jobs=data.cancel_jobs)
    )
    return RevokedKeyOut(**key_out(record).model_dump(), cancelled=cancelled)
