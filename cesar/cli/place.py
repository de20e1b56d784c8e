"""The options of a command that acts on the local database or on a Cesar server (`cesar speakers`, `cesar
keys`), and the place they name (:func:`cesar.where.where`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from cesar.cli.options import db_option, option, verbose_option
from cesar.where import Where, where

__all__ = ["place_given", "place_options"]

F = TypeVar("F", bound=Callable[..., Any])


def place_options(what: str, shown: str) -> Callable[[F], F]:
    """--db or --server (with --api-key), --json and --verbose; ``what`` the command acts on ("voice
    library"), ``shown`` what the API shows ("people")."""

    def decorated(func: F) -> F:
        for decorate in reversed(
            [
                db_option,
                option(
                    "--server",
                    metavar="URL",
                    help=f"Act on this Cesar server's {what} instead of the local database's.",
                ),
                option(
                    "--api-key", metavar="KEY", help="With --server: the server's API key, when it has one."
                ),
                option(
                    "--json",
                    "as_json",
                    is_flag=True,
                    help=f"Print JSON, as the API shows {shown} (for scripts).",
                ),
                verbose_option("Show a traceback on failure."),
            ]
        ):
            func = decorate(func)
        return func

    return decorated


def place_given(database_url: str | None, server: str | None, api_key: str | None) -> Where:
    """The place the current command's options name (a flag given on the command line beats a variable)."""
    ctx = click.get_current_context()
    return where(
        database_url,
        server,
        api_key,
        db_given=ctx.get_parameter_source("database_url") is ParameterSource.COMMANDLINE,
        server_given=ctx.get_parameter_source("server") is ParameterSource.COMMANDLINE,
    )
