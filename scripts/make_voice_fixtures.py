"""The named-speaker fixtures (tests/fixtures/audio): synthetic voices (espeak-ng variants) to enroll and
to find again in a meeting, and the real telephone call's second half with an unenrolled synthetic voice
added. 16 kHz mono FLAC (PyAV), the true turns in RTTM; the same files every run.

    apt-get install espeak-ng && .venv/bin/python scripts/make_voice_fixtures.py

- ``voice_<name>.flac``: one voice reading its own enrollment passage (12-15 s).
- ``voices_meeting.flac`` / ``.rttm``: the six voices in a meeting of twelve turns (3-4.5 s each), none a
  sentence of any enrollment passage.
- ``call_third_voice.flac`` / ``.rttm``: two_speakers.wav from ``CALL_SPLIT`` (bench/speaker_naming.py)
  on, between two announcements of an operator: a synthetic voice none of the others is, band-limited as
  the telephone is (the call carries nothing above 3.4 kHz) and levelled to the call's speech.

The voices are espeak-ng variants the bundled diarizer tells apart: the enrollment prints of those kept
are 0.18 or more apart (cosine; bench/speaker_naming.py), and the meeting's speakers are found as six.
Closer variants were left out (en+m1 and en+m3: 0.05 apart; en+f4 and en-029+f3: 0.09; en+linda and
en-us+Annie: 0.13).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from scipy import signal

from cesar_common.transcription.audio import decode_samples

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from speaker_naming import CALL_SPLIT  # noqa: E402 - where the bench and the test cut the call

AUDIO = ROOT / "tests" / "fixtures" / "audio"
RATE = 16000
#: name -> (espeak-ng voice, words per minute, pitch 0-99)
VOICES = {
    "ada": ("en+f2", 160, 50),
    "ben": ("en-us+m7", 150, 50),
    "cleo": ("en-029+f3", 165, 50),
    "dev": ("en+klatt", 155, 50),
    "eve": ("en-us+Annie", 160, 50),
    "finn": ("en+edward", 150, 50),
}
ENROLLMENT = {
    "ada": "I am reading this so that the service learns my voice. Most mornings I cycle to the office along "
    "the canal, and when it rains I take the tram instead. I like long walks, strong tea and quiet "
    "libraries, and I never answer the phone before nine.",
    "ben": "Hello, this is my enrollment sample. I grew up near the coast, where the wind never really "
    "stops, and I still sleep better with a window open. On weekends I repair old radios and I sell a few of "
    "them at the market in town.",
    "cleo": "This recording is for the voice library. My job is planning the delivery routes for a bakery, "
    "so I start very early and finish by two. In the evenings I play the piano badly and I cook far "
    "too much food for one person.",
    "dev": "Let me read a few sentences for the sample. I moved here from the mountains ten years ago and I "
    "still miss the snow in winter. I teach chemistry at the secondary school and I coach the chess "
    "team on Wednesday afternoons.",
    "eve": "Good afternoon, I am recording my voice for the library. I work in the hospital pharmacy, "
    "mostly on night shifts, and I read detective novels on the bus home. My sister says I talk too "
    "fast when I am excited about something.",
    "finn": "Right, here is my sample for the voice library. I build garden sheds and fences for a living, "
    "and I have two dogs who follow me to every job. On Sundays I go fishing at the lake, although I "
    "rarely catch anything worth keeping.",
}
#: the meeting's turns: (speaker, text)
MEETING = [
    ("ada", "Shall we begin? The first thing on the list is the new office layout."),
    ("ben", "I looked at the drawings yesterday and the kitchen is far too small."),
    ("cleo", "We could move the printers into the corridor and gain some space."),
    ("dev", "The fire inspector will not allow anything to block that corridor."),
    ("eve", "Then perhaps the meeting room could shrink by a metre or two."),
    ("finn", "I can build a partition wall there in about three days."),
    ("ada", "Good. Finn, please send me a price for the wall by Friday."),
    ("ben", "And who is going to tell the staff about the noise next month?"),
    ("cleo", "I will write to everyone once we know the dates for the work."),
    ("dev", "Please mention that the car park will be closed on those days."),
    ("eve", "I think we should also order new chairs while we are at it."),
    ("finn", "That sounds sensible. I have nothing more for today, thank you."),
]
#: the third voice: an operator's announcements before and after the call's second half. Cut in at the
#: pause inside the half (21.6 s), each of 8 voices tried but one made the diarizer take Diane and Sheila
#: for one person in some of 8 slightly changed copies of the mix; before and after, en+f4 in none.
THIRD_VOICE = ("en+f4", 160, 50)
THIRD_TURNS = (
    "This call is being recorded for quality and training purposes. Please hold while we connect you.",
    "Thank you for calling. Please stay on the line for a short survey about our service.",
)
#: the pause between turns (s). With 0.4 s the diarizer found a seventh speaker, made of the turn
#: changes, in 5 of 11 slightly changed copies of the meeting; with 1 s in none of them.
GAP_SECONDS = 1.0
#: the synthetic voices' level (RMS, dBFS), as a recording might have it (espeak-ng speaks at full scale)
LEVEL_DBFS = -26.0


def spoken(voice: tuple[str, int, int], text: str) -> np.ndarray:
    """``text`` said by an espeak-ng voice, 16 kHz mono float32 at :data:`LEVEL_DBFS`, without the silence
    around it."""
    name, speed, pitch = voice
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        command = ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
        subprocess.run(command, check=True)
        samples = decode_samples(wav)
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    speech = samples[loud[0] : loud[-1] + 1]
    return np.asarray(speech * (10 ** (LEVEL_DBFS / 20) / _rms(speech)), dtype=np.float32)


def write_flac(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype(np.int16)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def rttm_line(file: str, start: float, end: float, speaker: str) -> str:
    return f"SPEAKER {file} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>\n"


def conversation(turns: list[tuple[str, np.ndarray]], file: str) -> tuple[np.ndarray, str]:
    """The turns one after another with :data:`GAP_SECONDS` between them, and their RTTM."""
    gap = np.zeros(int(GAP_SECONDS * RATE), dtype=np.float32)
    pieces = [gap]
    lines = []
    at = GAP_SECONDS
    for speaker, samples in turns:
        pieces += [samples, gap]
        lines.append(rttm_line(file, at, at + len(samples) / RATE, speaker))
        at += (len(samples) + len(gap)) / RATE
    return np.concatenate(pieces), "".join(lines)


def telephone(samples: np.ndarray, level: float) -> np.ndarray:
    """``samples`` as the telephone carries them (100 Hz to 3.4 kHz), scaled to RMS ``level``."""
    band = signal.butter(6, (100, 3400), btype="bandpass", fs=RATE, output="sos")
    filtered = signal.sosfiltfilt(band, samples).astype(np.float32)
    return np.asarray(filtered * (level / _rms(filtered)), dtype=np.float32)


def third_voice_call() -> tuple[np.ndarray, str]:
    """The call from :data:`CALL_SPLIT` on between the third voice's two turns, and the RTTM (the call's
    reference turns moved to where they now are)."""
    call = decode_samples(AUDIO / "two_speakers.wav")
    reference = [line.split() for line in (AUDIO / "two_speakers.rttm").read_text().splitlines()]
    turns = [(float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in reference]
    level = _rms(np.concatenate([call[int(start * RATE) : int(end * RATE)] for start, end, _ in turns]))
    before, after = (telephone(spoken(THIRD_VOICE, text), level) for text in THIRD_TURNS)
    half = call[int(CALL_SPLIT * RATE) :]
    gap = np.zeros(int(GAP_SECONDS * RATE), dtype=np.float32)
    shift = (len(before) + 2 * len(gap)) / RATE - CALL_SPLIT  # from the call's time to the mix's
    lines = [rttm_line("call_third_voice", GAP_SECONDS, GAP_SECONDS + len(before) / RATE, "third")]
    for start, end, speaker in turns:
        if end > CALL_SPLIT:
            lines.append(rttm_line("call_third_voice", max(start, CALL_SPLIT) + shift, end + shift, speaker))
    at = (len(before) + 3 * len(gap) + len(half)) / RATE
    lines.append(rttm_line("call_third_voice", at, at + len(after) / RATE, "third"))
    return np.concatenate((gap, before, gap, half, gap, after, gap)), "".join(lines)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def main() -> None:
    for name, text in ENROLLMENT.items():
        write_flac(AUDIO / f"voice_{name}.flac", spoken(VOICES[name], text))
    meeting, rttm = conversation(
        [(who, spoken(VOICES[who], text)) for who, text in MEETING], "voices_meeting"
    )
    write_flac(AUDIO / "voices_meeting.flac", meeting)
    (AUDIO / "voices_meeting.rttm").write_text(rttm)
    mixed, rttm = third_voice_call()
    write_flac(AUDIO / "call_third_voice.flac", mixed)
    (AUDIO / "call_third_voice.rttm").write_text(rttm)


if __name__ == "__main__":
    main()
