"""Make tests/fixtures/audio/three_voices.wav and its true speaker turns (three_voices.rttm): a synthetic
conversation of three espeak-ng voices in alternating turns, for the diarization tests.

Run once, by hand, where espeak-ng is installed (``apt-get install espeak-ng``)::

    .venv/bin/python scripts/make_three_voices.py tests/fixtures/audio
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from cesar_common.transcription.audio import decode_samples

# (espeak-ng voice, words per minute, pitch 0-99): three voices a listener tells apart
VOICES = {
    "alice": ("en-us+f3", 165, 70),
    "bob": ("en-gb-scotland+m1", 140, 20),
    "carol": ("en-029+klatt4", 175, 55),
}
TURNS = [
    ("alice", "Good morning everyone, thank you for joining the planning call today."),
    ("bob", "Morning. I have the numbers from last week ready whenever you want them."),
    ("carol", "Before we start, can we agree to finish by half past ten? I have another meeting."),
    ("alice", "That works for me. Bob, go ahead with the numbers please."),
    ("bob", "Sales were up four percent, but the returns doubled in the northern region."),
    ("carol", "Doubled? Do we know why that happened?"),
    ("bob", "A batch of chargers failed the quality check after they had already shipped."),
    ("alice", "Then we should contact those customers before they contact us."),
    ("carol", "I can draft the letter this afternoon and send it to both of you for review."),
    ("bob", "Thanks Carol. I will pull the list of affected orders from the warehouse system."),
    ("alice", "Good. Let us meet again on Thursday to check how far we got."),
    ("carol", "Thursday is fine. Have a good day."),
]
SAMPLE_RATE = 16000
GAP_SECONDS = 0.4


def main(folder: str) -> None:
    pieces: list[np.ndarray] = []
    rttm: list[str] = []
    at = 0.5
    pieces.append(np.zeros(int(at * SAMPLE_RATE), dtype=np.float32))
    with tempfile.TemporaryDirectory() as scratch:
        for index, (speaker, text) in enumerate(TURNS):
            voice, speed, pitch = VOICES[speaker]
            path = Path(scratch) / f"{index}.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                check=True,
            )
            samples = _trim(decode_samples(path))
            pieces += [samples, np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)]
            duration = len(samples) / SAMPLE_RATE
            rttm.append(f"SPEAKER three_voices 1 {at:.3f} {duration:.3f} <NA> <NA> {speaker} <NA> <NA>\n")
            at += duration + GAP_SECONDS
    audio = np.concatenate(pieces)
    target = Path(folder)
    with wave.open(str(target / "three_voices.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    (target / "three_voices.rttm").write_text("".join(rttm))


def _trim(samples: np.ndarray) -> np.ndarray:
    """Without the silence espeak-ng puts before and after, so that the turns' times are the speech."""
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


if __name__ == "__main__":
    main(sys.argv[1])
