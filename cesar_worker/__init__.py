"""The worker: the process that turns queued jobs into transcripts (``cesar worker``, ``python -m
cesar_worker``). It claims work (:mod:`.worker`), runs the engine (:mod:`.transcriber`), tends the
lease (:mod:`.heartbeat`), merges long jobs' parts (:mod:`.part_results`), names voices the voice library
knows and reads voice samples (:mod:`.speaker_names`) and sends webhooks (:mod:`.webhook_sender`).

Importing this package is cheap; faster-whisper loads only when a job (or ``--preload``) needs a model.
"""

from __future__ import annotations

__all__ = [
    "download",
    "egress",
    "heartbeat",
    "hls",
    "jobrun",
    "live_runner",
    "live_stream_url",
    "live_turns",
    "model_cache",
    "model_memory",
    "part_results",
    "speaker_names",
    "transcriber",
    "webhook_sender",
    "webhooks",
    "worker",
]
