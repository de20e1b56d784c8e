"""The API's routes, one module per resource: submitting (:mod:`.submission`), jobs and transcripts
(:mod:`.job_routes`), their events (:mod:`.event_stream`), corrections of a transcript
(:mod:`.transcript_edits`), the voice library (:mod:`.voice_library`), API keys (:mod:`.api_keys`), health,
docs and the page."""

from __future__ import annotations

__all__ = [
    "api_keys",
    "docs",
    "event_stream",
    "health",
    "job_routes",
    "live_socket",
    "page",
    "submission",
    "transcript_edits",
    "voice_library",
]
