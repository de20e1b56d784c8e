"""`cesar jobs` (placeholder until its issue lands)."""

from __future__ import annotations

import sys

import click


@click.command()
def jobs() -> None:
    """Not built yet."""
    click.echo("cesar jobs is not built yet", err=True)
    sys.exit(2)
