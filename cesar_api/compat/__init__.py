"""The dialects other tools already speak: OpenAI's transcription API (:mod:`.openai`) and its Realtime API
in transcription mode (:mod:`.realtime`, G.711 audio decoded by :mod:`.g711`), and whisper-asr-webservice's
``/asr`` (:mod:`.asr`). Each request is an ordinary queued job, answered when it ends (:mod:`.job_wait`); a
realtime connection is a live session; :mod:`.openapi_specs` documents them."""

from __future__ import annotations

__all__ = ["asr", "g711", "job_wait", "openai", "openapi_specs", "realtime"]
