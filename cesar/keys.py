"""What `cesar keys` does: the API keys of the local database, or of a Cesar server (``--server``, through
``/keys``, with an admin key).

The Click commands in ``cesar.cli.keys`` only parse options and call the ``run_*`` functions here. Both
places hand out keys as the API shows them (:mod:`cesar_common.key_json`), and the flags are read with the
API's own models, so a command prints, and refuses, the same whichever it acts on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import click
from pydantic import BaseModel, ValidationError

from cesar.remote.commands import connected, print_table
from cesar.where import Where, open_store
from cesar_common.errors import InvalidInputError, NotFoundError
from cesar_common.key_json import ME, KeyIn, KeyPatch, key_out
from cesar_common.settings import get_settings

if TYPE_CHECKING:
    from cesar.remote.client import RemoteAPI
    from cesar_common.db.records import KeyRecord
    from cesar_common.db.store import JobStore

__all__ = ["run_create", "run_list", "run_revoke", "run_show", "run_update"]

#: a key as ``GET /keys/{key_id}`` shows it (``POST /keys`` adds ``key``, the revoke route ``cancelled``)
Key = dict[str, Any]
#: the flag each field of a key comes from (the others: ``--`` and the field's name)
FLAGS = {"name": "NAME", "expires_at": "--expires"}
#: what a limit's flag takes to lift it
NO_LIMIT = "none"


# --- the flags ------------------------------------------------------------------------------------------
def _flag(field: str) -> str:
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def _read(model: type[BaseModel], given: dict[str, Any]) -> Any:
    """The flags given (text, as typed) read with the API's models, leniently (the text `3` is a number here,
    not in a JSON body); a refusal names the flag."""
    try:
        return model.model_validate(given, strict=False)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        raise InvalidInputError(f"{_flag(str(error['loc'][0]))}: {message}") from None


def _settings_of(values: dict[str, Any]) -> dict[str, Any]:
    """The options the command line gave (None: not given), a limit's ``none`` as null (no limit)."""
    return {
        field: None if isinstance(value, str) and value.strip().lower() == NO_LIMIT else value
        for field, value in values.items()
        if value is not None
    }


# --- where the keys are ---------------------------------------------------------------------------------
class Keys(Protocol):
    """What each command asks of the keys of a database or a server (``who``: an id, name or prefix)."""

    def create(self, new: KeyIn) -> Key: ...

    def listed(self) -> list[Key]: ...

    def get(self, who: str) -> Key: ...

    def update(self, who: str, changes: KeyPatch) -> Key: ...

    def revoke(self, who: str, *, cancel_jobs: bool) -> Key: ...


class LocalKeys:
    """The keys of the local job database. A SQLite file that does not exist holds none; the first key
    made makes it."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._store: JobStore | None = None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def _opened(self, *, create: bool = False) -> JobStore | None:
        if self._store is None:
            self._store = open_store(self.database_url, create=create)
        return self._store

    def _existing(self, who: str) -> JobStore:
        store = self._opened()
        if store is None:
            raise NotFoundError(f"no API key named {who!r}: the database holds no keys yet")
        return store

    def create(self, new: KeyIn) -> Key:
        store = self._opened(create=True)
        assert store is not None
        record, key = store.create_key(new.name, **new.model_dump(exclude_unset=True, exclude={"name"}))
        return {**_json(record), "key": key}

    def listed(self) -> list[Key]:
        store = self._opened()
        return [] if store is None else [_json(record) for record in store.list_keys()]

    def get(self, who: str) -> Key:
        return _json(self._existing(who).get_key(who))

    def update(self, who: str, changes: KeyPatch) -> Key:
        return _json(self._existing(who).update_key(who, changes.model_dump(exclude_unset=True)))

    def revoke(self, who: str, *, cancel_jobs: bool) -> Key:
        record, cancelled = self._existing(who).revoke_key(who, cancel_jobs=cancel_jobs)
        return {**_json(record), "cancelled": cancelled}


def _json(record: KeyRecord) -> Key:
    return key_out(record).model_dump(mode="json")


class ServerKeys:
    """The keys of a Cesar server (``/keys``: an admin key's routes)."""

    def __init__(self, api: RemoteAPI) -> None:
        self.api = api

    def create(self, new: KeyIn) -> Key:
        return self.api.json("POST", "/keys", json=new.model_dump(mode="json", exclude_unset=True))  # type: ignore[no-any-return]

    def listed(self) -> list[Key]:
        return self.api.json("GET", "/keys")["keys"]  # type: ignore[no-any-return]

    def get(self, who: str) -> Key:
        return self.api.json("GET", _path(who))  # type: ignore[no-any-return]

    def update(self, who: str, changes: KeyPatch) -> Key:
        body = changes.model_dump(mode="json", exclude_unset=True)
        return self.api.json("PATCH", _path(who), json=body)  # type: ignore[no-any-return]

    def revoke(self, who: str, *, cancel_jobs: bool) -> Key:
        return self.api.json("POST", f"{_path(who)}/revoke", json={"cancel_jobs": cancel_jobs})  # type: ignore[no-any-return]


def _path(who: str) -> str:
    who = who.strip()
    if who.casefold() == ME:  # /keys/me is the caller's own key, and no key is named so
        raise NotFoundError(f"no API key named {who!r}")
    return f"/keys/{quote(who, safe='')}"


@contextmanager
def _keys(place: Where, *, verbose: bool) -> Iterator[Keys]:
    if place.server is None:
        local = LocalKeys(get_settings(database_url=place.database_url).database_url)
        try:
            yield local
        finally:
            local.close()
        return
    with connected(place.server, place.api_key, verbose=verbose) as api:
        yield ServerKeys(api)


# --- the commands ---------------------------------------------------------------------------------------
def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _number(value: float) -> str:
    return f"{value:g}"


def limits_text(key: Key) -> str:
    """A key's limits in a few words ("none" when it has none)."""
    said = [
        f"{key['max_queued']} queued" if key["max_queued"] is not None else "",
        f"{_number(key['audio_hours_per_day'])} h/day" if key["audio_hours_per_day"] is not None else "",
        f"{_number(key['requests_per_second'])} req/s" if key["requests_per_second"] is not None else "",
        f"priority {key['priority']}" if key["priority"] else "",
    ]
    return ", ".join(part for part in said if part) or "none"


def _when(stamp: str | None, never: str = "never") -> str:
    return never if stamp is None else stamp[:16].replace("T", " ") + " UTC"


def _said(key: Key) -> str:
    return f"{key['name']} ({key['prefix']})"


def run_create(name: str, settings: dict[str, Any], place: Where, *, as_json: bool, verbose: bool) -> None:
    """Make a key; the key itself alone on stdout (``KEY=$(cesar keys create alice)``)."""
    new = _read(KeyIn, {"name": name, **_settings_of(settings)})
    with _keys(place, verbose=verbose) as keys:
        made = keys.create(new)
    if as_json:
        _print_json(made)
    else:
        click.echo(made["key"])
    click.echo(
        f"made the API key {_said(made)}, limits: {limits_text(made)}: keep it now, it is not shown again",
        err=True,
    )


def run_list(place: Where, *, as_json: bool, verbose: bool) -> None:
    with _keys(place, verbose=verbose) as keys:
        listed = keys.listed()
    if as_json:
        _print_json({"keys": listed})
        return
    if not listed:
        click.echo("no API keys yet: `cesar keys create NAME` makes one", err=True)
    rows = [
        (
            key["name"],
            key["prefix"],
            "yes" if key["admin"] else "no",
            limits_text(key),
            _when(key["expires_at"]),
            key["status"],
        )
        for key in listed
    ]
    print_table(("NAME", "PREFIX", "ADMIN", "LIMITS", "EXPIRES", "STATUS"), rows)


def _show(key: Key) -> None:
    lines = {
        "name": key["name"],
        "id": key["id"],
        "prefix": key["prefix"],
        "status": key["status"] + (f" since {_when(key['revoked_at'])}" if key["revoked_at"] else ""),
        "admin": "yes" if key["admin"] else "no",
        "limits": limits_text(key),
        "expires": _when(key["expires_at"]),
        "created": _when(key["created_at"]),
    }
    for label, value in lines.items():
        click.echo(f"{label:<8} {value}")


def run_show(who: str, place: Where, *, as_json: bool, verbose: bool) -> None:
    with _keys(place, verbose=verbose) as keys:
        key = keys.get(who)
    if as_json:
        _print_json(key)
    else:
        _show(key)


def run_update(who: str, settings: dict[str, Any], place: Where, *, as_json: bool, verbose: bool) -> None:
    """Change what a key may do: the options given (a limit's ``none`` lifts it), the others stay."""
    changes = _read(KeyPatch, _settings_of(settings))
    if not changes.model_fields_set:
        raise InvalidInputError(
            "nothing to change: give --max-queued, --audio-hours-per-day, --requests-per-second, --priority, "
            "--expires (none lifts any of them) or --admin/--no-admin"
        )
    with _keys(place, verbose=verbose) as keys:
        key = keys.update(who, changes)
    if as_json:
        _print_json(key)
    else:
        _show(key)


def run_revoke(who: str, *, cancel_jobs: bool, place: Where, as_json: bool, verbose: bool) -> None:
    with _keys(place, verbose=verbose) as keys:
        key = keys.revoke(who, cancel_jobs=cancel_jobs)
    if as_json:
        _print_json(key)
        return
    jobs = (
        f"{key['cancelled']} of its jobs cancelled or asked to stop"
        if cancel_jobs
        else "its queued jobs still run (--cancel-jobs cancels them)"
    )
    click.echo(f"revoked {_said(key)}: refused from now on; {jobs}")
