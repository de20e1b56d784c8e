"""One set of speakers across the parts of a long file: each part is diarized on its own worker, so its
speakers are its own (``SPEAKER_00`` of one part may be ``SPEAKER_01`` of the next). Their voice prints are
clustered together like the prints of one file are (:func:`.local.cluster`), and a part's speakers that fall
in one cluster are one voice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cesar_common.diarization.backend import SpeakerCount, speaker_name

__all__ = ["link_voices"]


def link_voices(
    voices: Sequence[Mapping[str, Sequence[float]]], count: SpeakerCount = SpeakerCount()
) -> list[dict[str, str]]:
    """For each part, its speakers' names -> the file's speaker keys (the same key for the same voice in
    every part). ``count`` is what the job says of the file's number of speakers."""
    import numpy as np

    from cesar_common.diarization.local import cluster_voices

    keys = [(index, name) for index, part in enumerate(voices) for name in part]
    if not keys:
        return [{} for _ in voices]
    prints = np.asarray([voices[index][name] for index, name in keys], dtype=np.float64)
    prints /= np.maximum(np.linalg.norm(prints, axis=1, keepdims=True), 1e-12)
    labels = cluster_voices(prints, count)
    links: list[dict[str, str]] = [{} for _ in voices]
    for (index, name), label in zip(keys, labels, strict=True):
        links[index][name] = speaker_name(int(label))
    return links
