"""The ``cesar`` command line. Commands only parse options and call plain functions."""

from __future__ import annotations

import click

from cesar.cli.api import api
from cesar.cli.db import db
from cesar.cli.jobs import jobs
from cesar.cli.models import models
from cesar.cli.options import COMMAND_SETTINGS
from cesar.cli.remote import remote, submit
from cesar.cli.serve import serve
from cesar.cli.transcribe import transcribe
from cesar.cli.worker import worker
from cesar_common import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], **COMMAND_SETTINGS})
@click.version_option(__version__, "-V", "--version", prog_name="cesar")
def cli() -> None:
    """Cesar: self-hosted speech-to-text with Whisper.

    Every option can also be set with an environment variable: CESAR_ followed by the option's
    name in capitals (CESAR_MODEL, CESAR_PORT, CESAR_DATABASE_URL for --db, ...).
    """


for command in (transcribe, serve, worker, api, db, jobs, models, submit, remote):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="cesar")


# the command group and its entry point, and each command (their modules are named after them)
__all__ = [
    "api",
    "cli",
    "db",
    "jobs",
    "main",
    "models",
    "options",
    "remote",
    "serve",
    "submit",
    "transcribe",
    "worker",
]
