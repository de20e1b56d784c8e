"""A long conversation through `cesar serve`, cut into parts that two workers diarize apart: one set of
speaker names across the parts, and every transcript format of the merged job (issue 20)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from serve_helpers import Client, running_serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from long_audio import repeat_audio

COPIES = 4


def reference_turns(rttm: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in rttm.read_text().splitlines():
        fields = line.split()
        start, duration = float(fields[3]), float(fields[4])
        turns.append((start, start + duration, fields[7]))
    return turns


def test_speakers_keep_their_names_across_parts(tmp_path: Path, audio_dir: Path) -> None:
    call = audio_dir / "two_speakers.wav"
    audio = tmp_path / "four_calls.wav"
    period = repeat_audio(call, audio, copies=COPIES, gap_seconds=2.0)
    reference = reference_turns(call.with_suffix(".rttm"))
    env = {"CESAR_SPLIT_SECONDS": "40"}
    db_url = f"sqlite:///{tmp_path / 'cesar.db'}"
    with running_serve(db_url, log_path=tmp_path / "serve.log", workers="2", env=env) as serve:
        client = Client(serve.url)
        try:
            job_id = client.upload(audio, diarize="true", word_timestamps="true")
            job = client.wait_status(job_id, {"completed", "error", "cancelled"}, timeout=300)
            assert job["status"] == "completed", job
            assert job["decoding"]["parts"] == 4 and job["decoding"]["workers"] in (1, 2)
            assert [speaker["speaker"] for speaker in job["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
            transcript = json.loads(client.transcript(job_id, "json"))
            assert transcript["parts"] == 4
            srt, rttm = client.transcript(job_id, "srt"), client.transcript(job_id, "rttm")
            assert "SPEAKER_01" in srt and rttm.count("SPEAKER") > 10
        finally:
            client.close()

    # one mapping of our names to the call's real speakers holds in every copy of the call, so across parts
    pairs: Counter[tuple[str, str]] = Counter()
    for segment in transcript["segments"]:
        for word in segment["words"]:
            middle = (word["start"] + word["end"]) / 2 % period
            talking = {name for start, end, name in reference if start <= middle <= end}
            if len(talking) == 1:
                pairs[(word["speaker"], talking.pop())] += 1
    names = sorted({ours for ours, _ in pairs})
    truths = sorted({theirs for _, theirs in pairs})
    best = max(
        pairs[(names[0], truths[0])] + pairs[(names[1], truths[1])],
        pairs[(names[0], truths[1])] + pairs[(names[1], truths[0])],
    )
    print(f"words on the right speaker across {COPIES} copies: {best / sum(pairs.values()):.3f}")
    assert best / sum(pairs.values()) >= 0.85
