"""Logging set-up shared by every Cesar process."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: str = "info", *, name: str = "cesar") -> None:
    """One format everywhere: time, level, process role, message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)-7s {name}[%(process)d] %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.lower() != "debug":
        # every child of `cesar serve` checks the schema: Alembic's INFO lines are noise there; boto3 says
        # where it found credentials at every start (the object store, CESAR_BLOB_URL)
        for noisy in ("alembic", "botocore", "boto3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
