"""cesar_worker: the process that turns queued jobs into transcripts (``cesar worker``).

Importing this package is cheap; faster-whisper loads only when a job (or ``--preload``) needs a model.
"""

from __future__ import annotations
