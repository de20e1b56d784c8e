"""The choices of OpenAI's transcription API, said once: the routes check them, the schemas list them."""

from __future__ import annotations

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
#: OpenAI's clients repeat this field, once per granularity
GRANULARITY_FIELD = "timestamp_granularities[]"
