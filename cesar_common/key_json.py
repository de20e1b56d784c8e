"""API keys as ``/keys`` takes and shows them: the request bodies and a key's JSON. Shared by the routes and
by `cesar keys` on a local database, which reads its flags with the same models and prints what a server
would answer.

The models check shapes and types only; the values (a limit more than 0, a name Cesar accepts) are the
store's to check (:mod:`cesar_common.db.api_keys`), so one refusal says it whichever door a value came in by.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from cesar_common.db.records import KeyRecord
from cesar_common.job_json import Schema

__all__ = [
    "ME",
    "KeyIn",
    "KeyOut",
    "KeyPatch",
    "KeysOut",
    "NewKeyOut",
    "RevokeIn",
    "RevokedKeyOut",
    "key_out",
]

# strict: a JSON body's `"3"` or `true` is not a number (a client sending one has a bug to hear about);
# `cesar keys` reads its flags' text with ``model_validate(..., strict=False)``
_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True, defer_build=True)
# the columns' range: a larger number is refused here, not by PostgreSQL as an overflow
_Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
_STAMP = "2026-12-31T18:00+02:00"
#: ``GET /keys/me`` is the caller's own key: no key is named so, or that route would hide it
ME = "me"


def parse_expiry(value: Any) -> Any:
    """ISO 8601 text as a time with its zone, in UTC: a date alone is that day's 00:00 UTC."""
    if not isinstance(value, str):
        return value  # null, or a datetime already (strict validation refuses anything else)
    text = value.strip()
    try:
        return datetime.combine(date.fromisoformat(text), time(), UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: give 2026-12-31 (00:00 UTC) or {_STAMP}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: give {_STAMP} or 2026-12-31T16:00Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # the first or last day of datetime's range, moved by the zone out of it
        raise ValueError(f"{text!r} is out of range") from None


_Expiry = Annotated[
    datetime | None,
    BeforeValidator(parse_expiry),
    # documented as text: a date alone is more than the `date-time` format allows
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}], "examples": ["2026-12-31", _STAMP]}),
]
_LIMITS_DOC = "more than 0; null: no limit"


class _Settings(Schema):
    """What a key may do: the fields ``POST /keys`` and ``PATCH /keys/{key_id}`` share."""

    model_config = _STRICT

    admin: bool | None = Field(
        default=None, description="An admin key manages keys and sees every job (default false)."
    )
    expires_at: _Expiry = Field(
        default=None,
        description="When the key stops working: ISO 8601 with a time zone, or a date alone (that day's "
        "00:00 UTC); null: never.",
    )
    max_queued: _Int32 | None = Field(
        default=None, description=f"Jobs the key may have queued or running at once ({_LIMITS_DOC})."
    )
    audio_hours_per_day: float | None = Field(
        default=None, description=f"Hours of audio the key may submit in any 24 hours ({_LIMITS_DOC})."
    )
    requests_per_second: float | None = Field(
        default=None, description=f"Requests a second the key may make, on average ({_LIMITS_DOC})."
    )
    priority: _Int32 | None = Field(
        default=None, description="Higher goes first in the queue (default 0; may be negative)."
    )


class KeyIn(_Settings):
    """A new key: its name and what it may do (a limit left out: none)."""

    name: str = Field(
        description="Unique, any case: 1 to 100 letters, digits, spaces or `._@-` (not `me`).",
        examples=["alice"],
    )

    @field_validator("name")
    @classmethod
    def _not_me(cls, name: str) -> str:
        if name.casefold() == ME:
            raise ValueError(f"{ME!r} is the caller's own key (GET /keys/me): choose another name")
        return name


class KeyPatch(_Settings):
    """Changes to a key: the fields given change (null lifts a limit), the others stay."""


class RevokeIn(Schema):
    model_config = _STRICT

    cancel_jobs: bool = Field(
        default=False,
        description="Cancel the key's queued jobs too (running ones are asked to stop); else they run.",
    )


class KeyOut(Schema):
    """An API key (never the key itself: it is shown once, when made)."""

    id: str
    name: str = Field(examples=["alice"])
    prefix: str = Field(
        description="The key's public part (`cesar_<prefix>_...`): tells keys apart in lists and logs.",
        examples=["1f2e3d4c"],
    )
    admin: bool
    priority: int
    max_queued: int | None
    audio_hours_per_day: float | None
    requests_per_second: float | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    status: Literal["active", "revoked", "expired"] = Field(
        description="`active`: the key works; `revoked` or `expired`: it is refused (`401`)."
    )


class NewKeyOut(KeyOut):
    key: str = Field(
        description="The key itself, shown this once: Cesar keeps only a hash of it.",
        examples=["cesar_1f2e3d4c_..."],
    )


class RevokedKeyOut(KeyOut):
    cancelled: int = Field(description="Jobs of the key cancelled (with `cancel_jobs`), or asked to stop.")


class KeysOut(Schema):
    keys: list[KeyOut] = Field(description="Every key, revoked and expired ones too, oldest first.")


def key_out(record: KeyRecord) -> KeyOut:
    status = "active" if record.active else "revoked" if record.revoked_at is not None else "expired"
    return KeyOut.model_validate({**asdict(record), "status": status})
