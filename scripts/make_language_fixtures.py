"""The multilingual fixtures (tests/fixtures/audio/speech_<lang>.flac): one sentence per language, spoken by
espeak-ng (Debian's espeak-ng 1.51; no MBROLA voices are packaged there), 16 kHz mono FLAC by PyAV.

    apt-get install espeak-ng && .venv/bin/python scripts/make_language_fixtures.py

The languages are those whose espeak-ng voice the multilingual ``base`` model recognises (tried: de, es, it,
pl, ro; fr, pt, nl, ru, el, sv, tr, fi, zh were taken for other languages). Russian is kept for its script:
with its language given, ``base`` writes it in Cyrillic. speech_de_es.flac is the German sentence and then the
Spanish one.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio"
#: language -> (espeak-ng voice, the sentence)
SENTENCES = {
    "de": ("de", "Guten Morgen. Das Wetter ist heute sehr schön, und wir gehen in den Park."),
    "es": ("es", "Buenos días. Me gusta mucho viajar en tren por las montañas de España."),
    "it": ("it", "Buongiorno a tutti. Oggi parliamo della cucina italiana e del buon vino."),
    "pl": ("pl", "Dzień dobry. Dzisiaj pogoda jest bardzo ładna i idziemy do parku."),
    "ro": ("ro", "Bună dimineața. Astăzi vremea este foarte frumoasă și mergem în parc."),
    "ru": ("ru", "Доброе утро. Сегодня мы будем говорить о погоде и о музыке."),  # noqa: RUF001 - Cyrillic
}
RATE = 16000


def spoken(voice: str, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(wav), text], check=True)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        with av.open(str(wav)) as container:
            frames = [*container.decode(audio=0), None]
        pieces = [out.to_ndarray().reshape(-1) for frame in frames for out in resampler.resample(frame)]
    return np.concatenate(pieces).astype(np.int16)


def write_flac(path: Path, samples: np.ndarray) -> None:
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    speech = {lang: spoken(voice, text) for lang, (voice, text) in SENTENCES.items()}
    for lang, samples in speech.items():
        write_flac(AUDIO / f"speech_{lang}.flac", samples)
    pause = np.zeros(RATE, dtype=np.int16)
    write_flac(AUDIO / "speech_de_es.flac", np.concatenate((speech["de"], pause, speech["es"])))


if __name__ == "__main__":
    main()
