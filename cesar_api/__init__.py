"""The HTTP API: a Litestar app (:func:`cesar_api.app.create_app`) that validates, stores, reads and streams
events; it never loads a model. Its routes by resource (:mod:`.routes`), other tools' dialects
(:mod:`.compat`), the web page (:mod:`.webpage`), the live event hub (:mod:`.event_hub`), one exception
mapper (:mod:`.exception_mapper`) and the server that runs it (:mod:`.server`, ``python -m cesar_api``)."""

from __future__ import annotations

__all__ = [
    "access",
    "app",
    "auth",
    "body_timeout",
    "compat",
    "event_hub",
    "exception_mapper",
    "job_metrics",
    "load_shedding",
    "metrics",
    "reads",
    "routes",
    "schemas",
    "server",
    "submit",
    "transcripts",
    "uploads",
    "webpage",
]
