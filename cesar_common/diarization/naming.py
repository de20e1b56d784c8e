"""A diarized transcript's speakers given the names of the people of the voice library they are
(:func:`.library.match_voices`), and the transcript's list of speakers: who, as which label of the
diarizer, how long, and how close to the person's voice. Pure Python (the API may import it: only the
matching, on the worker, takes NumPy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cesar_common.diarization.library import Library, Match

__all__ = ["name_speakers", "relabel", "speaker_list"]


def name_speakers(
    segments: Sequence[dict[str, Any]],
    voices: Mapping[str, Sequence[float]] | None,
    library: Library | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``segments`` (as stored, speakers labelled ``SPEAKER_nn``) with the speakers the library knows
    named, and the transcript's speakers (:func:`speaker_list`). Without voices or a library the labels
    stay."""
    from cesar_common.diarization.library import match_voices

    matches = match_voices(voices, library) if voices and library is not None else {}
    names = {label: match.name for label, match in matches.items()}
    named = [relabel(segment, names) for segment in segments] if names else list(segments)
    return named, speaker_list(named, matches)


def relabel(segment: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``segment`` (as stored) with its speaker and its words' renamed by ``names`` (others unchanged)."""
    moved = dict(segment)
    if segment.get("speaker") is not None:
        moved["speaker"] = names.get(segment["speaker"], segment["speaker"])
    if segment.get("words") is not None:
        moved["words"] = [
            {**word, "speaker": names.get(word["speaker"], word["speaker"])} if word.get("speaker") else word
            for word in segment["words"]
        ]
    return moved


def speaker_list(
    segments: Sequence[dict[str, Any]], matches: Mapping[str, Match] | None = None
) -> list[dict[str, Any]]:
    """Each speaker of ``segments`` with their speaking time (the sum of their segments), by name: the
    diarizer's ``label``, and for a person of the library their ``speaker_id`` and the cosine
    ``distance`` between the voices (null for others)."""
    by_name = {match.name: match for match in (matches or {}).values()}
    totals: dict[str, float] = {}
    for segment in segments:
        speaker = segment.get("speaker")
        if speaker is not None:
            seconds = max(float(segment["end"]) - float(segment["start"]), 0.0)
            totals[speaker] = totals.get(speaker, 0.0) + seconds
    listed = []
    for name in sorted(totals):
        match = by_name.get(name)
        listed.append(
            {
                "speaker": name,
                "duration": round(totals[name], 3),
                "label": name if match is None else match.label,
                "speaker_id": None if match is None else match.speaker_id,
                "distance": None if match is None else match.distance,
            }
        )
    return listed
