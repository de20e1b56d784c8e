"""Cesar's shared core: settings, errors, job store, transcription engine and CLI."""

from __future__ import annotations

__version__ = "0.1.0"
