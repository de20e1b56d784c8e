"""`cesar worker` (placeholder until its issue lands)."""

from __future__ import annotations

import sys

import click


@click.command()
def worker() -> None:
    """Not built yet."""
    click.echo("cesar worker is not built yet", err=True)
    sys.exit(2)
