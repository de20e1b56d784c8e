"""The dialects other tools already speak: OpenAI's transcription API (:mod:`.openai`) and
whisper-asr-webservice's ``/asr`` (:mod:`.asr`). Each request is an ordinary queued job (:mod:`.jobs`)."""
