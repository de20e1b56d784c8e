"""`cesar serve` (placeholder until its issue lands)."""

from __future__ import annotations

import sys

import click


@click.command()
def serve() -> None:
    """Not built yet."""
    click.echo("cesar serve is not built yet", err=True)
    sys.exit(2)
