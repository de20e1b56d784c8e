"""The clustering of voice prints on made-up prints: the count rule, the bounds, and the pooling that keeps
the distance matrix small on long files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cesar_common.diarization import local
from cesar_common.diarization.backend import SpeakerCount


def _prints(sizes: list[int], *, seed: int = 0) -> np.ndarray:
    """Groups of prints around well-separated directions, in order, as a conversation's turns give."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((256, len(sizes))))[0].T
    # noise of norm about 0.3 around unit centres: prints of one voice about 0.05 apart (cosine), voices 1
    noise = [0.02 * rng.standard_normal((size, 256)) for size in sizes]
    prints = np.concatenate([centre + spread for centre, spread in zip(centres, noise, strict=True)])
    return prints / np.linalg.norm(prints, axis=1, keepdims=True)


def _groups(labels: np.ndarray, sizes: list[int]) -> list[set[int]]:
    bounds = np.cumsum([0, *sizes]).tolist()
    return [set(labels[a:b].tolist()) for a, b in itertools.pairwise(bounds)]


def test_the_count_is_found_and_stray_prints_join_a_speaker() -> None:
    sizes = [40, 30, 2, 25]  # two prints alone are not a speaker
    labels = local.cluster(_prints(sizes))
    groups = _groups(labels, sizes)
    assert len(set(labels.tolist())) == 3
    speakers = [groups[0], groups[1], groups[3]]
    assert all(len(group) == 1 for group in speakers)
    assert len(set().union(*speakers)) == 3


def test_bounds_and_exact_counts() -> None:
    prints = _prints([40, 30, 25])
    assert len(set(local.cluster(prints, SpeakerCount(maximum=2)).tolist())) == 2
    assert len(set(local.cluster(prints, SpeakerCount(exact=3)).tolist())) == 3
    assert len(set(local.cluster(_prints([60]), SpeakerCount(minimum=2)).tolist())) == 2
    assert local.cluster(prints[:1]).tolist() == [0]


def test_long_files_pool_neighbouring_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_MAX_PRINTS", 20)
    sizes = [40, 30, 26]
    labels = local.cluster(_prints(sizes))
    assert len(labels) == sum(sizes)
    assert len(set(labels.tolist())) == 3
