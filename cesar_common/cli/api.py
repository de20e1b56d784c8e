"""`cesar api` (placeholder until its issue lands)."""

from __future__ import annotations

import sys

import click


@click.command()
def api() -> None:
    """Not built yet."""
    click.echo("cesar api is not built yet", err=True)
    sys.exit(2)
