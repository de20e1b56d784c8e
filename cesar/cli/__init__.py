"""The ``cesar`` command line. Commands only parse options and call plain functions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from cesar.cli.api import api
from cesar.cli.db import db
from cesar.cli.jobs import jobs
from cesar.cli.keys import keys
from cesar.cli.live import live
from cesar.cli.models import models
from cesar.cli.options import COMMAND_SETTINGS
from cesar.cli.remote import remote, submit
from cesar.cli.serve import serve
from cesar.cli.speakers import speakers
from cesar.cli.transcribe import transcribe
from cesar.cli.watch import watch
from cesar.cli.worker import worker
from cesar_common import __version__
from cesar_common.exits import EXIT_CLIENT_ERROR


@contextmanager
def _usage_errors_are_bad_input() -> Iterator[None]:
    try:
        yield
    except click.UsageError as exc:
        # Click declares the code per class; the instance's own is the one its standalone mode exits with
        exc.exit_code = EXIT_CLIENT_ERROR  # type: ignore[misc]
        raise


class CesarGroup(click.Group):
    """The ``cesar`` group. A usage error (an unknown option, a value out of range) exits 1, as any bad
    input does, rather than Click's 2: Cesar's 2 says the environment failed (a database, a server), what a
    script may retry, and a typo never gets better by retrying. The same wrong value also exits the same
    whether Click, Cesar or the server refuses it."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with _usage_errors_are_bad_input():  # this group's own options
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _usage_errors_are_bad_input():  # the commands' (and nested groups')
            return super().invoke(ctx)


@click.group(cls=CesarGroup, context_settings={"help_option_names": ["-h", "--help"], **COMMAND_SETTINGS})
@click.version_option(__version__, "-V", "--version", prog_name="cesar")
def cli() -> None:
    """Cesar: self-hosted speech-to-text with Whisper.

    Every option can also be set with an environment variable: CESAR_ followed by the option's
    name in capitals (CESAR_MODEL, CESAR_PORT, CESAR_DATABASE_URL for --db, ...).
    """


for command in (
    transcribe,
    serve,
    worker,
    api,
    db,
    jobs,
    models,
    submit,
    remote,
    watch,
    live,
    speakers,
    keys,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="cesar")


# the command group and its entry point, and each command (their modules are named after them)
__all__ = [
    "CesarGroup",
    "api",
    "cli",
    "db",
    "jobs",
    "keys",
    "live",
    "main",
    "models",
    "options",
    "place",
    "remote",
    "serve",
    "speakers",
    "submit",
    "transcribe",
    "watch",
    "worker",
]
