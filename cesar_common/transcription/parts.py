"""Long files cut into parts (``CESAR_SPLIT_SECONDS``): where to cut, what each part is asked, what a part
keeps of its transcript, and the merge of the parts into the job's one transcript.

Cuts fall in the middle of pauses that voice activity detection finds, so no word is cut in two and none is
heard twice; a part's transcript is shifted to the file's time before it is stored, and the merge only
renumbers, joins and (when diarized) names the speakers across parts. Only workers use this module; NumPy,
SciPy and faster_whisper are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cesar_common.db.records import Decoding, FinishedPart, JobResult, PartPlan
from cesar_common.options import TranscribeOptions
from cesar_common.transcription.audio import SAMPLE_RATE
from cesar_common.transcription.result import speaking_time

if TYPE_CHECKING:
    import numpy as np

#: pauses at least this long are places to cut (voice activity detection's min_silence_duration_ms)
PAUSE_MS = 300
#: speech padding of the detected regions, so a cut never clips a word's soft start or end
PAD_MS = 100
#: no part shorter than this share of the planned length, whatever the pauses
MIN_SHARE = 0.5
#: how far from its planned place a cut may move to fall in a pause (seconds; at most half a part)
SEARCH_SECONDS = 30.0
#: the middles (seconds into the file) of the pauses between two times
PauseFinder = Callable[[float, float], list[float]]


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """A long file's parts and its samples (16 kHz mono float32), and the one language for every part."""

    parts: list[PartPlan]
    samples: np.ndarray
    language: str | None
    language_probability: float | None

    def pcm(self, index: int) -> bytes:
        """Part ``index``'s audio as 16-bit little-endian PCM (what ``job_part_audio`` stores)."""
        import numpy as np

        part = self.parts[index]
        first, last = round(part.start * SAMPLE_RATE), round(part.end * SAMPLE_RATE)
        clipped = np.clip(self.samples[first:last], -1.0, 32767 / 32768)
        return bytes((clipped * 32768.0).astype("<i2").tobytes())


def speech_regions(samples: np.ndarray) -> list[tuple[int, int]]:
    """Where someone speaks, as (start, end) sample indices, pauses of ``PAUSE_MS`` kept apart."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=PAUSE_MS, speech_pad_ms=PAD_MS)
    found = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
    return [(int(item["start"]), int(item["end"])) for item in found if item["end"] > item["start"]]


def pauses_in(samples: np.ndarray) -> PauseFinder:
    """Where ``samples`` pause between two times, found by voice activity detection of that stretch only:
    the cost grows with the number of cuts, not with the length of the file."""

    def between(start: float, end: float) -> list[float]:
        first, last = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
        return [start + middle for middle in pause_middles(last - first, speech_regions(samples[first:last]))]

    return between


def plan_cuts(total_seconds: float, split_seconds: float, pauses_between: PauseFinder) -> list[PartPlan]:
    """Parts of about ``split_seconds`` covering the whole file, each cut in the middle of the pause nearest
    its planned place (within ``SEARCH_SECONDS``); where speech never pauses, at the planned place itself.
    ``pauses_between(start, end)`` gives the middles of the pauses in that stretch (:func:`pauses_in`)."""
    total = round(total_seconds, 3)
    if split_seconds <= 0 or total <= split_seconds:
        return [PartPlan(0.0, total)]
    count = math.ceil(total / split_seconds)
    length = total / count
    reach = min(SEARCH_SECONDS, length / 2)
    cuts: list[float] = []
    for index in range(1, count):
        planned = index * length
        earliest = max(planned - reach, (cuts[-1] if cuts else 0.0) + MIN_SHARE * length)
        latest = min(planned + reach, total - MIN_SHARE * length)
        if latest <= earliest:
            break  # what is left is too short to be a part of its own
        candidates = [middle for middle in pauses_between(earliest, latest) if earliest <= middle <= latest]
        cut = min(candidates, key=lambda middle: abs(middle - planned)) if candidates else planned
        cuts.append(round(cut, 3))
    bounds = [0.0, *cuts, total]
    return [PartPlan(start, end) for start, end in itertools.pairwise(bounds)]


def pause_middles(total_samples: int, regions: Sequence[tuple[int, int]]) -> list[float]:
    """The middles (seconds) of the silences of at least ``PAUSE_MS`` around and between speech regions."""
    shortest = PAUSE_MS * SAMPLE_RATE // 1000
    middles = []
    previous_end = 0
    for start, end in [*regions, (total_samples, total_samples)]:
        if start - previous_end >= shortest:
            middles.append((previous_end + start) / 2 / SAMPLE_RATE)
        previous_end = max(previous_end, end)
    return middles


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
) -> JobResult:
    """The job's transcript from its parts' (in order): segments joined and renumbered, speakers named
    across parts (the same voice gets the same name in every part), how it was decoded."""
    segments = [segment for part in parts for segment in part.result["segments"]]
    diarized = any("speaker" in segment for segment in segments)
    speakers = None
    if diarized:
        segments = _name_speakers(parts, num_speakers, min_speakers, max_speakers)
        speakers = speaking_time(
            (segment.get("speaker"), max(float(segment["end"]) - float(segment["start"]), 0.0))
            for segment in segments
        )
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
) -> list[dict[str, Any]]:
    """Every part's segments with one set of speaker names: the parts' voices clustered together, then
    named ``SPEAKER_00``, ... by first appearance in the file."""
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
            relabelled.append(_relabel(segment, link))
    names: dict[str, str] = {}
    for segment in relabelled:
        if segment.get("speaker") is not None:
            names.setdefault(segment["speaker"], speaker_name(len(names)))
    return [_relabel(segment, names) for segment in relabelled]


def _local_speakers(part: FinishedPart) -> set[str]:
    found = set()
    for segment in part.result["segments"]:
        if segment.get("speaker") is not None:
            found.add(segment["speaker"])
        found.update(word["speaker"] for word in segment.get("words") or () if word.get("speaker"))
    return found


def _relabel(segment: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    moved = dict(segment)
    if segment.get("speaker") is not None:
        moved["speaker"] = names.get(segment["speaker"], segment["speaker"])
    if segment.get("words") is not None:
        moved["words"] = [
            {**word, "speaker": names.get(word["speaker"], word["speaker"])} if word.get("speaker") else word
            for word in segment["words"]
        ]
    return moved
