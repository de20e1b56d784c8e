"""`cesar keys`: the API keys of a server's users, in the local database (--db) or through a Cesar server's
/keys routes (--server, with an admin key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cesar.cli.options import COMMAND_SETTINGS
from cesar.cli.place import place_given, place_options
from cesar_common.exits import one_line_errors

__all__ = ["keys"]

F = TypeVar("F", bound=Callable[..., Any])

key_options = place_options("API keys", "keys")
#: a key's limits (flag, metavar, help, what `none` does), passed on as text: `cesar.keys` reads them as the
#: API reads its JSON
LIMITS = (
    ("--max-queued", "N", "Jobs the key may have queued or running at once.", "no limit"),
    ("--audio-hours-per-day", "HOURS", "Hours of audio the key may submit in any 24 hours.", "no limit"),
    ("--requests-per-second", "R", "Requests a second the key may make, on average.", "no limit"),
    ("--priority", "P", "Higher goes first in the queue (0 unless given; may be negative).", "0"),
    (
        "--expires",
        "DATE",
        "When the key stops working: 2026-12-31 (00:00 UTC) or 2026-12-31T18:00+02:00.",
        "never",
    ),
)


def limit_options(*, lifting: bool) -> Callable[[F], F]:
    """The options of :data:`LIMITS` (``lifting``: saying what ``none`` does, as `update` takes it)."""

    def decorated(func: F) -> F:
        for flag, metavar, help_text, none in reversed(LIMITS):
            dest = "expires_at" if flag == "--expires" else flag[2:].replace("-", "_")
            # not from CESAR_* variables: a key's limits are said for each key
            func = click.option(
                flag,
                dest,
                metavar=f"{metavar}|none" if lifting else metavar,
                allow_from_autoenv=False,
                help=f"{help_text} (none: {none})" if lifting else help_text,
            )(func)
        return func

    return decorated


@click.group(context_settings=COMMAND_SETTINGS)
def keys() -> None:
    """API keys: one per user of a server, each with its own limits, jobs and voice library.

    Acts on the local job database (--db, CESAR_DATABASE_URL: the one the server uses), or with --server
    (CESAR_SERVER) through a server's /keys routes, with an admin key (--api-key, CESAR_API_KEY). A key is
    shown once, when made; the database keeps only its prefix and a hash.
    """


@keys.command(context_settings=COMMAND_SETTINGS)
@click.argument("name")
@click.option("--admin", is_flag=True, allow_from_autoenv=False, help="An admin key: manages keys, sees all.")
@limit_options(lifting=False)
@key_options
def create(
    name: str,
    admin: bool,
    database_url: str | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
    **settings: str | None,
) -> None:
    """Make a key for NAME; print the key (alone, on stdout: KEY=$(cesar keys create alice)).

    It is not shown again: Cesar keeps only a hash of it.
    """
    with one_line_errors(verbose=verbose):
        from cesar.keys import run_create

        place = place_given(database_url, server, api_key)
        run_create(name, {"admin": admin, **settings}, place, as_json=as_json, verbose=verbose)


@keys.command("list", context_settings=COMMAND_SETTINGS)
@key_options
def list_keys(
    database_url: str | None, server: str | None, api_key: str | None, as_json: bool, verbose: bool
) -> None:
    """Every key: name, prefix, admin, limits, expiry, and whether it works (active, revoked, expired)."""
    with one_line_errors(verbose=verbose):
        from cesar.keys import run_list

        run_list(place_given(database_url, server, api_key), as_json=as_json, verbose=verbose)


@keys.command(context_settings=COMMAND_SETTINGS)
@click.argument("who", metavar="NAME")
@key_options
def show(
    who: str, database_url: str | None, server: str | None, api_key: str | None, as_json: bool, verbose: bool
) -> None:
    """One key (by name, id or prefix): its limits, expiry and status."""
    with one_line_errors(verbose=verbose):
        from cesar.keys import run_show

        run_show(who, place_given(database_url, server, api_key), as_json=as_json, verbose=verbose)


@keys.command(context_settings=COMMAND_SETTINGS)
@click.argument("who", metavar="NAME")
@click.option(
    "--admin/--no-admin", default=None, allow_from_autoenv=False, help="Make it an admin key, or not."
)
@limit_options(lifting=True)
@key_options
def update(
    who: str,
    admin: bool | None,
    database_url: str | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
    **settings: str | None,
) -> None:
    """Change a key's limits: those given (none lifts one, --expires none: never); the others stay."""
    with one_line_errors(verbose=verbose):
        from cesar.keys import run_update

        place = place_given(database_url, server, api_key)
        run_update(who, {"admin": admin, **settings}, place, as_json=as_json, verbose=verbose)


@keys.command(context_settings=COMMAND_SETTINGS)
@click.argument("who", metavar="NAME")
@click.option(
    "--cancel-jobs",
    is_flag=True,
    allow_from_autoenv=False,
    help="Cancel its queued jobs too (running ones are asked to stop). [default: they still run]",
)
@key_options
def revoke(
    who: str,
    cancel_jobs: bool,
    database_url: str | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Revoke a key: every request with it is refused from now on. It stays listed, its jobs keep it."""
    with one_line_errors(verbose=verbose):
        from cesar.keys import run_revoke

        place = place_given(database_url, server, api_key)
        run_revoke(who, cancel_jobs=cancel_jobs, place=place, as_json=as_json, verbose=verbose)
