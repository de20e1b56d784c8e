"""The bundled diarizer: speech regions (faster-whisper's Silero VAD) -> a voice print of 1.6 s of speech
every 0.5 s (:mod:`.encoder`) -> agglomerative clustering of the prints (cosine distance, average linkage)
-> speaker turns. Offline, no torch; imports faster-whisper (:mod:`faster_whisper_adapter`), so the API never
imports this module."""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np

from cesar_common.diarization.backend import (
    DiarizationStopped,
    ProgressCallback,
    SpeakerCount,
    StopCheck,
    Turn,
    named_by_appearance,
    speaker_name,
)
from cesar_common.diarization.encoder import (
    HOP,
    PARTIAL_FRAMES,
    SAMPLE_RATE,
    SpeakerEncoder,
    mel_frames,
    normalize_volume,
)

__all__ = ["LocalDiarizer", "cluster", "cluster_voices", "default_diarizer"]

#: frames between voice prints: the resolution of the turns (0.5 s)
STEP_FRAMES = 25
WINDOW_FRAMES = PARTIAL_FRAMES
#: cosine distance (average linkage) under which two groups of prints are one voice, tuned on the
#: two-speaker call, the single-voice story and the three synthetic voices in tests/fixtures/audio
DISTANCE_THRESHOLD = 0.3
#: cosine distance (average linkage) under which the voices of speakers found apart (the parts of a long
#: file) are one voice. A speaker's voice is the mean of many prints, so it varies far less than one print:
#: the same voice in different parts of the fixtures' conversations stays within 0.05, two voices are 0.10
#: apart or more (the two women of the telephone call; the synthetic voices 0.17 or more)
VOICE_DISTANCE_THRESHOLD = 0.07
#: a found speaker with less speech than this is folded into the nearest other (a cough, a laugh, a
#: mispronounced word rarely make a speaker)
MIN_SPEAKER_SECONDS = 3.0
# Above this many prints (about 30 minutes of speech) neighbouring prints are averaged before clustering:
# the distance matrix grows with the square of their number.
_MAX_PRINTS = 3600
_VAD_SILENCE_MS = 150
_VAD_PAD_MS = 250


@cache
def default_diarizer() -> LocalDiarizer:
    """The bundled diarizer, loaded once per process and kept (as a worker keeps its Whisper model)."""
    return LocalDiarizer()


class LocalDiarizer:
    """Keeps the speaker encoder loaded: make one, use it for many files."""

    def __init__(self) -> None:
        self._encoder = SpeakerEncoder()

    def diarize(
        self,
        samples: np.ndarray,
        count: SpeakerCount = SpeakerCount(),
        *,
        should_stop: StopCheck | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[Turn]:
        return self.diarize_with_voices(samples, count, should_stop=should_stop, on_progress=on_progress)[0]

    def diarize_with_voices(
        self,
        samples: np.ndarray,
        count: SpeakerCount = SpeakerCount(),
        *,
        should_stop: StopCheck | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[list[Turn], dict[str, list[float]]]:
        """:meth:`diarize`, and each speaker's voice print (the mean of their prints, unit length): the
        parts of a long file are diarized apart, and these tell which of their speakers are one voice."""
        from threadpoolctl import threadpool_limits

        # The encoder multiplies small matrices step by step: BLAS threads spin more than they help
        # (several times the CPU for the same result, worse on a busy machine).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._diarize(samples, count, should_stop, on_progress)

    def _diarize(
        self,
        samples: np.ndarray,
        count: SpeakerCount,
        should_stop: StopCheck | None,
        on_progress: ProgressCallback | None,
    ) -> tuple[list[Turn], dict[str, list[float]]]:
        regions = speech_regions(samples)
        if not regions:
            return [], {}
        speech = np.concatenate([samples[start:end] for start, end in regions])
        frames = mel_frames(normalize_volume(speech))
        starts = _window_starts(len(frames))
        prints = self._prints(frames, starts, should_stop, on_progress)
        labels = cluster(prints, count)
        frame_labels = _frame_labels(prints, labels, starts, len(frames))
        turns = _turns(regions, frame_labels)
        if on_progress is not None:
            on_progress(1.0, 1.0)
        named = named_by_appearance(turns)
        voices: dict[str, list[float]] = {}
        for turn, renamed in zip(sorted(turns, key=lambda turn: (turn.start, turn.end)), named, strict=True):
            if renamed.speaker not in voices:
                label = int(turn.speaker.rsplit("_", 1)[1])
                centroid = prints[labels == label].mean(axis=0)
                centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
                voices[renamed.speaker] = [round(float(value), 5) for value in centroid]
        return named, voices

    def _prints(
        self,
        frames: np.ndarray,
        starts: np.ndarray,
        should_stop: StopCheck | None,
        on_progress: ProgressCallback | None,
    ) -> np.ndarray:
        if len(frames) < WINDOW_FRAMES:
            frames = np.pad(frames, ((0, WINDOW_FRAMES - len(frames)), (0, 0)))
        windows = np.lib.stride_tricks.sliding_window_view(frames, WINDOW_FRAMES, axis=0)[starts]
        windows = windows.transpose(0, 2, 1)  # (prints, frames, bands)
        parts = []
        batch = 64
        for first in range(0, len(windows), batch):
            if should_stop is not None and should_stop():
                raise DiarizationStopped("the diarization was asked to stop")
            parts.append(self._encoder.embed(windows[first : first + batch]))
            if on_progress is not None:
                on_progress(min(first + batch, len(windows)) / len(windows) * 0.95, 1.0)
        return np.concatenate(parts)


def speech_regions(samples: np.ndarray) -> list[tuple[int, int]]:
    """Where someone speaks, as (start, end) sample indices."""
    from cesar_common.transcription.faster_whisper_adapter import speech_timestamps

    return speech_timestamps(samples, min_silence_ms=_VAD_SILENCE_MS, pad_ms=_VAD_PAD_MS)


def cluster(prints: np.ndarray, count: SpeakerCount = SpeakerCount()) -> np.ndarray:
    """A speaker label (0, 1, ...) for each voice print."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(prints) < 2:
        return np.zeros(len(prints), dtype=int)
    group = math.ceil(len(prints) / _MAX_PRINTS)
    pooled = _pool(prints, group)
    tree = linkage(pooled.astype(np.float64), method="average", metric="cosine")
    minimum = math.ceil(MIN_SPEAKER_SECONDS / (STEP_FRAMES * HOP / SAMPLE_RATE) / group)
    if count.exact is not None:
        wanted = count.exact
    else:
        labels = _fold_small(pooled, fcluster(tree, DISTANCE_THRESHOLD, criterion="distance"), minimum)
        found = len(np.unique(labels))
        wanted = max(found, count.minimum or 1)
        if count.maximum is not None:
            wanted = min(wanted, count.maximum)
    if count.exact is not None or wanted != found:
        # cut the tree finer until ``wanted`` clusters are big enough to be speakers (a few stray prints
        # otherwise take a cluster of their own), then fold the rest into them
        for clusters in range(wanted, min(wanted + 20, len(pooled)) + 1):
            labels = fcluster(tree, clusters, criterion="maxclust")
            if (np.unique(labels, return_counts=True)[1] >= minimum).sum() >= wanted:
                break
        labels = _fold_small(pooled, labels, minimum, keep=wanted)
    return np.repeat(np.unique(labels, return_inverse=True)[1], group)[: len(prints)]


def cluster_voices(voices: np.ndarray, count: SpeakerCount = SpeakerCount()) -> np.ndarray:
    """A label (0, 1, ...) for each speaker voice print (unit vectors), from speakers found apart (the
    parts of a long file), cut at :data:`VOICE_DISTANCE_THRESHOLD` or at the count the job gives."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(voices) < 2:
        return np.zeros(len(voices), dtype=int)
    tree = linkage(voices.astype(np.float64), method="average", metric="cosine")
    labels = fcluster(tree, VOICE_DISTANCE_THRESHOLD, criterion="distance")
    found = len(np.unique(labels))
    wanted = count.exact or max(found, count.minimum or 1)
    if count.maximum is not None:
        wanted = min(wanted, count.maximum)
    if wanted != found:
        labels = fcluster(tree, min(wanted, len(voices)), criterion="maxclust")
    return np.asarray(np.unique(labels, return_inverse=True)[1])


def _frame_labels(prints: np.ndarray, labels: np.ndarray, starts: np.ndarray, frames: int) -> np.ndarray:
    """A label for each frame: the speaker whose centroid the prints of the windows covering the frame
    resemble most, summed over those windows (finer than giving each frame its nearest window's label)."""
    names = np.unique(labels)
    centroids = np.stack([prints[labels == name].mean(axis=0) for name in names])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    scores = prints @ centroids.T  # (windows, speakers)
    totals = np.zeros((frames + 1, len(names)))
    np.add.at(totals, starts, scores)
    np.add.at(totals, np.minimum(starts + WINDOW_FRAMES, frames), -scores)
    totals = np.cumsum(totals, axis=0)[:frames]
    return np.asarray(names[np.argmax(totals, axis=1)])


def _pool(prints: np.ndarray, group: int) -> np.ndarray:
    if group == 1:
        return prints
    padded = np.concatenate([prints, np.repeat(prints[-1:], (-len(prints)) % group, axis=0)])
    means = padded.reshape(-1, group, prints.shape[1]).mean(axis=1)
    return np.asarray(means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12))


def _fold_small(
    prints: np.ndarray, labels: np.ndarray, minimum: int, *, keep: int | None = None
) -> np.ndarray:
    """Give the prints of clusters smaller than ``minimum`` (or beyond the ``keep`` largest) to the
    nearest remaining cluster, by centroid."""
    names, sizes = np.unique(labels, return_counts=True)
    order = np.argsort(-sizes, kind="stable")
    large = names[order][sizes[order] >= minimum] if keep is None else names[order][:keep]
    if len(large) == 0:
        large = names[order][:1]
    if len(large) == len(names):
        return labels
    centroids = np.stack([prints[labels == name].mean(axis=0) for name in large])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    small = ~np.isin(labels, large)
    result = labels.copy()
    result[small] = large[np.argmax(prints[small] @ centroids.T, axis=1)]
    return result


def _window_starts(frames: int) -> np.ndarray:
    """Where the prints' windows start (frames): every 0.5 s, the last one flush with the end."""
    last = max(frames - WINDOW_FRAMES, 0)
    starts = np.arange(0, last + 1, STEP_FRAMES)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def _turns(regions: list[tuple[int, int]], frame_labels: np.ndarray) -> list[Turn]:
    """Map the labels of the concatenated speech's frames back to the regions they came from."""
    turns: list[Turn] = []
    offset = 0  # samples of speech before this region
    for start, end in regions:
        first = offset // HOP
        last = max((offset + end - start) // HOP, first + 1)
        labels = frame_labels[min(first, len(frame_labels) - 1) : last]
        changes = np.flatnonzero(np.diff(labels)) + 1
        bounds = [0, *changes.tolist(), len(labels)]
        for begin, stop in itertools.pairwise(bounds):
            turns.append(
                Turn(
                    start=(start + begin * HOP) / SAMPLE_RATE,
                    end=min(start + stop * HOP, end) / SAMPLE_RATE,
                    speaker=speaker_name(int(labels[begin])),
                )
            )
        offset += end - start
    return turns
