"""The dialects other tools already speak: OpenAI's transcription API (:mod:`.openai`) and
whisper-asr-webservice's ``/asr`` (:mod:`.asr`). Each request is an ordinary queued job, answered when it
ends (:mod:`.job_wait`); :mod:`.openapi_specs` documents them."""

from __future__ import annotations

__all__ = ["asr", "job_wait", "openai", "openapi_specs"]
