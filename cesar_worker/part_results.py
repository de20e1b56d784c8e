"""A long job's parts on the worker's side: what a part is asked, what it keeps of its transcript, and the
merge of the parts' transcripts into the job's one transcript.

A part's transcript is shifted to the file's time before it is stored, and the merge only renumbers, joins
and (when diarized) names the speakers across parts. Where the file is cut is the engine's business
(:mod:`cesar_common.transcription.cuts`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from cesar_common.db.records import Decoding, FinishedPart, JobResult
from cesar_common.diarization.naming import name_speakers, relabel
from cesar_common.job_options import TranscribeOptions

if TYPE_CHECKING:
    from cesar_common.diarization.library import Library

__all__ = ["merge_parts", "part_options", "part_result"]


def part_options(options: TranscribeOptions, language: str | None) -> TranscribeOptions:
    """What one part is asked: the job's options in the language chosen for the whole file. A part may hold
    fewer speakers than the file: it finds its own (at most the file's), the merge sets the file's count."""
    most = options.num_speakers or options.max_speakers
    return dataclasses.replace(
        options, language=language, num_speakers=None, min_speakers=None, max_speakers=most
    )


def part_result(result: JobResult, *, offset: float, language_probability: float | None) -> dict[str, Any]:
    """A part's transcript as its row keeps it until the merge: times in the file's, the file's language."""
    return {
        "segments": [_shifted(segment, offset) for segment in result.segments],
        "language": result.language,
        "language_probability": language_probability,
        "decoding": None if result.decoding is None else dataclasses.asdict(result.decoding),
        "voices": result.voices,
    }


def _shifted(segment: dict[str, Any], offset: float) -> dict[str, Any]:
    moved = {
        **segment,
        "start": round(segment["start"] + offset, 3),
        "end": round(segment["end"] + offset, 3),
    }
    if segment.get("words") is not None:
        moved["words"] = [
            {**word, "start": round(word["start"] + offset, 3), "end": round(word["end"] + offset, 3)}
            for word in segment["words"]
        ]
    return moved


def merge_parts(
    parts: list[FinishedPart],
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    library: Library | None = None,
) -> JobResult:
    """The job's transcript from its parts' (in order): segments joined and renumbered, speakers named
    across parts (the same voice gets the same label in every part, then the person's name where the voice
    ``library`` knows it), how it was decoded."""
    segments = [segment for part in parts for segment in part.result["segments"]]
    diarized = any("speaker" in segment for segment in segments)
    speakers = voices = None
    if diarized:
        segments, voices = _name_speakers(parts, num_speakers, min_speakers, max_speakers)
        segments, speakers = name_speakers(segments, voices, library)
    segments = [{**segment, "id": index} for index, segment in enumerate(segments)]
    first = parts[0].result
    return JobResult(
        text=" ".join(segment["text"] for segment in segments if segment["text"]),
        language=first.get("language"),
        language_probability=first.get("language_probability"),
        duration=round(parts[-1].end, 3),
        segments=segments,
        decoding=_decoding(parts),
        speakers=speakers,
        voices=voices or None,
    )


def _decoding(parts: list[FinishedPart]) -> Decoding | None:
    stored = [part.result.get("decoding") for part in parts]
    if any(item is None for item in stored):
        return None
    first = stored[0]
    assert first is not None
    return Decoding(
        device=first["device"],
        compute_type=first["compute_type"],
        mode=first["mode"],
        batch_size=max(int(item["batch_size"]) for item in stored if item is not None),
        parts=len(parts),
        workers=len({part.worker_id for part in parts}),
    )


def _name_speakers(
    parts: list[FinishedPart], exact: int | None, minimum: int | None, maximum: int | None
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Every part's segments with one set of speaker labels: the parts' voices clustered together, then
    labelled ``SPEAKER_00``, ... by first appearance in the file; and each label's voice print (the mean
    of its parts', unit length)."""
    import numpy as np

    from cesar_common.diarization.backend import SpeakerCount, speaker_name
    from cesar_common.diarization.linking import link_voices

    voices = [part.result.get("voices") or {} for part in parts]
    # a part where nobody speaks has no voices, and needs none
    if all(voice or not _local_speakers(part) for voice, part in zip(voices, parts, strict=True)):
        links = link_voices(voices, SpeakerCount(exact, minimum, maximum))
    else:  # a diarizer that gives no voice prints: each part's speakers stay apart
        links = [{local: f"{part.seq}/{local}" for local in _local_speakers(part)} for part in parts]
    relabelled: list[dict[str, Any]] = []
    for part, link in zip(parts, links, strict=True):
        for segment in part.result["segments"]:
            relabelled.append(relabel(segment, link))
    names: dict[str, str] = {}
    for segment in relabelled:
        if segment.get("speaker") is not None:
            names.setdefault(segment["speaker"], speaker_name(len(names)))
    prints: dict[str, list[np.ndarray]] = {}
    for part_voices, link in zip(voices, links, strict=True):
        for local, vector in part_voices.items():
            if local in link and link[local] in names:
                prints.setdefault(names[link[local]], []).append(np.asarray(vector, dtype=np.float64))
    merged = {}
    for label, found in prints.items():
        mean = np.mean(found, axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        merged[label] = [round(float(value), 5) for value in mean]
    return [relabel(segment, names) for segment in relabelled], merged


def _local_speakers(part: FinishedPart) -> set[str]:
    found = set()
    for segment in part.result["segments"]:
        if segment.get("speaker") is not None:
            found.add(segment["speaker"])
        found.update(word["speaker"] for word in segment.get("words") or () if word.get("speaker"))
    return found
