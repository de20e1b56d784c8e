"""Resemblyzer's GE2E speaker encoder, in NumPy: 1.6 s of speech in, a 256-number voice print out.

The network (a 3-layer LSTM over 40-band mel frames, a linear layer, ReLU, L2 norm) and its input (librosa's
mel spectrogram as Resemblyzer computes it, after raising quiet audio to -30 dBFS) are reproduced here so
that Cesar needs neither torch nor librosa: the weights were converted once to ``resemblyzer.npz``
(``scripts/convert_resemblyzer.py``; Apache-2.0, see ``NOTICE`` beside it).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

__all__ = ["HOP", "PARTIAL_FRAMES", "SAMPLE_RATE", "SpeakerEncoder", "mel_frames", "normalize_volume"]

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms: one mel frame
N_MELS = 40
#: frames in one partial utterance, the span one voice print describes (1.6 s)
PARTIAL_FRAMES = 160
LAYERS = 3
HIDDEN = 256
_TARGET_DBFS = -30.0
_INT16_MAX = 2**15 - 1
# windows encoded at once: the LSTM's state for a batch stays small (batch x 1024 floats per gate set)
_BATCH = 256


def normalize_volume(samples: np.ndarray) -> np.ndarray:
    """Raise quiet audio to -30 dBFS (never lower it), as Resemblyzer does before encoding."""
    rms = float(np.sqrt(np.mean(np.square(samples * _INT16_MAX, dtype=np.float64))))
    if rms == 0.0:
        return samples
    change = _TARGET_DBFS - 20 * np.log10(rms / _INT16_MAX)
    if change < 0:
        return samples
    return np.asarray(samples * (10 ** (change / 20)), dtype=np.float32)


def mel_frames(samples: np.ndarray) -> np.ndarray:
    """The (frames, 40) power mel spectrogram of 16 kHz samples, one frame every 10 ms: librosa's
    ``melspectrogram`` with Resemblyzer's parameters (centred frames, reflect padding, Hann window, Slaney
    mel filters)."""
    padded = np.pad(samples.astype(np.float32), N_FFT // 2, mode="reflect")
    count = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    spectrum = np.fft.rfft(frames * _window(), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return np.asarray(power @ _mel_filters().T, dtype=np.float32)


class SpeakerEncoder:
    """The network with its weights loaded (about 6 MB of float32)."""

    def __init__(self) -> None:
        weights = _load_weights()
        self._input = [weights[f"lstm.weight_ih_l{layer}"].T.copy() for layer in range(LAYERS)]
        self._recurrent = [weights[f"lstm.weight_hh_l{layer}"].T.copy() for layer in range(LAYERS)]
        self._bias = [
            weights[f"lstm.bias_ih_l{layer}"] + weights[f"lstm.bias_hh_l{layer}"] for layer in range(LAYERS)
        ]
        self._linear = weights["linear.weight"].T.copy()
        self._linear_bias = weights["linear.bias"]

    def embed(self, mels: np.ndarray) -> np.ndarray:
        """Voice prints of a batch of partial utterances, (windows, 160, 40) -> (windows, 256), each of
        unit length."""
        parts = [self._embed(mels[i : i + _BATCH]) for i in range(0, len(mels), _BATCH)]
        if not parts:
            return np.zeros((0, HIDDEN), dtype=np.float32)
        return np.concatenate(parts)

    def _embed(self, mels: np.ndarray) -> np.ndarray:
        sequence = mels.astype(np.float32)
        batch, steps, _ = sequence.shape
        hidden = np.zeros((batch, HIDDEN), dtype=np.float32)
        for layer in range(LAYERS):
            # the input's share of every step at once; only the recurrence is step by step
            gates_in = sequence @ self._input[layer] + self._bias[layer]
            hidden = np.zeros((batch, HIDDEN), dtype=np.float32)
            cell = np.zeros((batch, HIDDEN), dtype=np.float32)
            last = layer == LAYERS - 1
            outputs = None if last else np.empty((batch, steps, HIDDEN), dtype=np.float32)
            for step in range(steps):
                gates = gates_in[:, step] + hidden @ self._recurrent[layer]
                # torch's gate order: input, forget, cell, output
                i = _sigmoid(gates[:, :HIDDEN])
                f = _sigmoid(gates[:, HIDDEN : 2 * HIDDEN])
                g = np.tanh(gates[:, 2 * HIDDEN : 3 * HIDDEN])
                o = _sigmoid(gates[:, 3 * HIDDEN :])
                cell = f * cell + i * g
                hidden = o * np.tanh(cell)
                if outputs is not None:
                    outputs[:, step] = hidden
            if outputs is not None:
                sequence = outputs
        raw = np.maximum(hidden @ self._linear + self._linear_bias, 0.0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.asarray(raw / np.maximum(norms, 1e-12), dtype=np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large negative inputs (pytest turns warnings into errors)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@cache
def _window() -> np.ndarray:
    # scipy's periodic Hann window, as librosa uses (fftbins=True)
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)


@cache
def _mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): Slaney's mel scale and area normalisation."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2)
    mel_freqs = _mel_to_hz(mel_points)
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    weights = np.zeros((N_MELS, len(fft_freqs)))
    for band in range(N_MELS):
        lower = -ramps[band] / widths[band]
        upper = ramps[band + 2] / widths[band + 1]
        weights[band] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2 : N_MELS + 2] - mel_freqs[:N_MELS]))[:, None]
    return weights.astype(np.float32)


_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz, logarithmic above
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = _F_SP * mel
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


def _load_weights() -> dict[str, np.ndarray]:
    with (
        resources.files("cesar_common.diarization").joinpath("resemblyzer.npz").open("rb") as file,
        np.load(file) as data,
    ):
        return {name: data[name].astype(np.float32) for name in data.files}
