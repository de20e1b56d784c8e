"""The ``cesar`` command line. Commands only parse options and call plain functions."""

from __future__ import annotations

import click

from cesar_common import __version__
from cesar_common.cli.api import api
from cesar_common.cli.jobs import jobs
from cesar_common.cli.serve import serve
from cesar_common.cli.transcribe import transcribe
from cesar_common.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "CESAR"})
@click.version_option(__version__, "-V", "--version", prog_name="cesar")
def cli() -> None:
    """Cesar: self-hosted speech-to-text with Whisper.

    Every option can also be set with an environment variable: CESAR_ followed by the option's
    name in capitals (CESAR_MODEL, CESAR_PORT, CESAR_DATABASE_URL, ...).
    """


for command in (transcribe, serve, worker, api, jobs):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="cesar")
