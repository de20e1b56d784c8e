"""Who spoke when: speaker diarization that runs offline (see :mod:`.backend` for the interface)."""
