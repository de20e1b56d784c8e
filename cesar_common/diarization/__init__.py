"""Who spoke when: speaker diarization that runs offline. The interface (:mod:`.backend`), the bundled
diarizer (:mod:`.local`: Silero VAD, the voice encoder of :mod:`.encoder`, clustering), words and segments
given to their speakers (:mod:`.speakers`), speakers linked across a long file's parts
(:mod:`.linking`), and the voice library's matching (:mod:`.library`) that names the speakers it knows
(:mod:`.naming`)."""

from __future__ import annotations

__all__ = ["backend", "encoder", "library", "linking", "local", "naming", "speakers"]
