"""`cesar transcribe` (placeholder until its issue lands)."""

from __future__ import annotations

import sys

import click


@click.command()
def transcribe() -> None:
    """Not built yet."""
    click.echo("cesar transcribe is not built yet", err=True)
    sys.exit(2)
