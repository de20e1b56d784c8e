"""The ``cesar`` command line (:mod:`cesar.cli`), ``cesar serve``'s supervisor (:mod:`cesar.supervisor`)
and the client of a remote server (:mod:`cesar.remote`), with what their commands do: the layer above the
API, the worker and their shared base (``cesar_common``). Nothing below imports it."""

from __future__ import annotations

__all__ = [
    "audio_moves",
    "cli",
    "keys",
    "live_client",
    "model_admin",
    "purge",
    "remote",
    "schema",
    "speakers",
    "supervisor",
    "transcribe_file",
    "watch",
    "where",
]
