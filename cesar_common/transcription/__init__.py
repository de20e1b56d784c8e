"""The transcription engine: model resolution, decoding, results and output formats.

Importing this package is cheap and never imports faster_whisper: the API imports ``result``,
``writers`` and ``audio`` from here. Only ``faster_whisper_adapter`` imports faster-whisper; ``loading``
(which model, loading it), ``whisper`` (transcribing a file) and ``cuts`` (where to split a long file)
import that adapter inside the functions that need it.
"""

from __future__ import annotations

__all__ = [
    "audio",
    "batching",
    "bundled",
    "cuts",
    "faster_whisper_adapter",
    "live_audio",
    "loading",
    "model_store",
    "result",
    "sentences",
    "streaming",
    "turns",
    "whisper",
    "writers",
]
