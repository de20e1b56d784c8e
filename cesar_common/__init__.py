"""The base every Cesar process shares: settings, errors, the choices and job options said once, the job store
(:mod:`.db`), the job's JSON (:mod:`.job_json`) and a key's (:mod:`.key_json`), corrections of a transcript
(:mod:`.transcript_edits`), and the engine (:mod:`.transcription`, :mod:`.diarization`).
It imports nothing above it (the import contracts in pyproject.toml say so)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "blob_store",
    "choices",
    "db",
    "diarization",
    "errors",
    "exits",
    "exposure",
    "job_json",
    "job_options",
    "key_json",
    "logs",
    "parentwatch",
    "settings",
    "signals",
    "text",
    "transcript_edits",
    "transcription",
    "urlpolicy",
]
