"""The 10-minute file of issue 20's tests and bench/split.py, made from the 70 s story fixture.

``speech_en_long.flac`` (the three-chapter story, said twice) repeated ``copies`` times with
``gap_seconds`` of digital silence between copies: long enough to be split (CESAR_SPLIT_SECONDS), with
silences to cut at, and a known text to score a merged transcript against. Made on the fly (numpy only,
deterministic, well under a second) rather than stored: 8 copies are 18 MB of WAV.
"""

from __future__ import annotations

from pathlib import Path

from wer import reference_from_readme

from cesar_common.transcription.audio import SAMPLE_RATE, decode_samples, wav_header

AUDIO_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"
STORY = AUDIO_DIR / "speech_en_long.flac"

#: what speech_en_long.flac says: the story's text twice (the fixtures README's "Spoken text")
STORY_TEXT = reference_from_readme((AUDIO_DIR / "README.md").read_text(), "speech_en_long")


def make_long_story(path: Path, *, copies: int = 8, gap_seconds: float = 2.0) -> str:
    """Write ``copies`` copies of the story as a 16 kHz mono 16-bit WAV at ``path``, ``gap_seconds`` of
    silence between them (8 copies, 2 s gaps: 9.5 minutes); returns the reference text of the whole file.
    """
    repeat_audio(STORY, path, copies=copies, gap_seconds=gap_seconds)
    return " ".join([STORY_TEXT] * copies)


def repeat_audio(source: Path, path: Path, *, copies: int, gap_seconds: float) -> float:
    """Write ``copies`` copies of ``source``'s audio, ``gap_seconds`` of silence between them, as a 16 kHz
    mono 16-bit WAV at ``path``; returns the seconds from one copy's start to the next's."""
    import numpy as np

    if copies < 1:
        raise ValueError("copies must be at least 1")
    audio = np.round(decode_samples(source) * 32768.0).clip(-32768, 32767).astype("<i2")
    gap = np.zeros(round(gap_seconds * SAMPLE_RATE), dtype="<i2")
    pieces = [audio]
    for _ in range(copies - 1):
        pieces += [gap, audio]
    data = np.concatenate(pieces).tobytes()
    path.write_bytes(wav_header(len(data)) + data)
    return (audio.size + gap.size) / SAMPLE_RATE
