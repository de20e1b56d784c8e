"""`cesar speakers` as a user runs it (the real `cesar` binary in subprocesses): the voice library of a local
database, whose voices `cesar transcribe --diarize` then names, and of a server (a real API and a real
worker: a sample read there, a diarized job named, `cesar submit`'s naming options)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from api_helpers import AUDIO_DIR, running_api
from click.testing import CliRunner
from dbtools import migrate
from test_voice_library import SHEILA, diarized_job, whisper_worker

from cesar.cli import cli
from cesar_common.db.store import JobStore
from cesar_common.diarization.library import MATCH_DISTANCE, from_bytes

CESAR = str(Path(sys.executable).with_name("cesar"))
SAMPLE = AUDIO_DIR / "speech_en.flac"  # one voice, 7 s
STORY = AUDIO_DIR / "speech_en.wav"  # the same voice and words
UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/cesar"


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    return {**env, "CESAR_OFFLINE": "true", "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


def cesar(*args: str | Path) -> Ran:
    """The real binary, as a user runs it."""
    done = subprocess.run([CESAR, *map(str, args)], capture_output=True, text=True, env=_env(), timeout=180)
    return Ran(done.returncode, done.stdout, done.stderr)


def invoke(*args: str | Path) -> Ran:
    """The same command line in this process (no interpreter to start: for the many small commands)."""
    done = CliRunner().invoke(cli, list(map(str, args)), env={"COLUMNS": "160"}, catch_exceptions=False)
    return Ran(done.exit_code, done.stdout, done.stderr)


def ok(*args: str | Path, run: Any = invoke) -> str:
    done = run(*args)
    assert done.code == 0, done.stderr
    return done.stdout  # type: ignore[no-any-return]


def refused(code: int, *args: str | Path, run: Any = invoke) -> str:
    """The one error line a refused command prints, having checked its exit code."""
    done = run(*args)
    lines = done.stderr.strip().splitlines()
    assert done.code == code, (done.code, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]  # type: ignore[no-any-return]


def speakers_of(transcript: str) -> set[str]:
    return {segment["speaker"] for segment in json.loads(transcript)["segments"]}


def people(*where: str) -> dict[str, dict[str, Any]]:
    listed = json.loads(ok("speakers", "list", "--json", *where))["speakers"]
    return {person["name"]: person for person in listed}


# --- the local database ---------------------------------------------------------------------------------
def test_a_local_library_names_the_voices_of_cesar_transcribe(tmp_path: Path) -> None:
    path = tmp_path / "cesar.db"
    db = ("--db", f"sqlite:///{path}")

    # reading a library that does not exist makes no database, for `list` as for `transcribe`
    assert ok("speakers", "list", *db, run=cesar) == "NAME\tID\tPRINTS\tSPEECH\tNOT READY\n"
    assert not path.exists()

    added = ok("speakers", "add", "Narrator", SAMPLE, *db, run=cesar)
    assert added.startswith("added Narrator (") and "s of speech (speech_en.flac)" in added
    (narrator,) = people(*db).values()
    (sample,) = narrator["samples"]
    assert sample["status"] == "ready" and 4 < sample["seconds"] <= 7.2 and sample["source"] == "sample"

    # what cannot make a print is one line and exit 1, and leaves the library as it was
    line = refused(1, "speakers", "add", "Quiet", AUDIO_DIR / "silence.wav", *db)
    assert "silence.wav: the sample holds 0.0 s of speech" in line
    assert "not an audio or video file" in refused(
        1, "speakers", "add", "Junk", AUDIO_DIR / "not_audio.mp3", *db
    )
    assert "labels of unknown voices" in refused(1, "speakers", "add", "SPEAKER_03", SAMPLE, *db)
    assert "nobody named 'Nobody'" in refused(1, "speakers", "rename", "Nobody", "X", *db)
    assert "--job ID and --label" in refused(1, "speakers", "add", "Ann", "--job", "x", *db)
    assert "an audio sample (FILE) or" in refused(1, "speakers", "add", "Ann", *db)
    assert "give one of them" in refused(1, "speakers", "list", *db, "--server", "http://127.0.0.1:9")
    assert list(people(*db)) == ["Narrator"]

    # `cesar transcribe --diarize` names the enrolled voice, unless told to name nobody or others (the
    # database then not even opened); one it cannot read leaves the labels, and says why
    named = cesar("transcribe", "--diarize", STORY, "-f", "json", *db)
    assert named.code == 0, named.stderr
    assert speakers_of(named.stdout) == {"Narrator"}
    said = next(line for line in named.stderr.splitlines() if line.startswith("voice library: "))
    assert "SPEAKER_00 is Narrator (distance " in said
    assert float(said.rsplit(" ", 1)[1].rstrip(")")) <= MATCH_DISTANCE
    others = ("--known-speakers", "Someone, Else")
    assert speakers_of(ok("transcribe", "--diarize", STORY, "-f", "json", *others, *db)) == {"SPEAKER_00"}
    off = ok("transcribe", "--diarize", STORY, "-f", "json", "--no-name-speakers", "--db", UNREACHABLE_DB)
    assert speakers_of(off) == {"SPEAKER_00"}
    unread = invoke("transcribe", "--diarize", STORY, "-f", "json", "--db", UNREACHABLE_DB)
    assert unread.code == 0, unread.stderr
    assert speakers_of(unread.stdout) == {"SPEAKER_00"}
    assert "voice library not read (cannot reach the job database" in unread.stderr

    # voices of a diarized job: one more print of a person, or a new person
    store = JobStore.from_url(f"sqlite:///{path}")
    try:
        ((_, _, data),) = store.voice_library_rows("")
        job = diarized_job(store, {"SPEAKER_00": list(from_bytes(data)), "SPEAKER_01": SHEILA})
    finally:
        store.close()
    more = ok("speakers", "add", "narrator", "--job", job.id, "--label", "SPEAKER_00", *db)
    assert f"(SPEAKER_00 of job {job.id}); 2 voice prints in all" in more
    sheila = ok("speakers", "add", "Sheila", "--job", job.id, "--label", "SPEAKER_01", *db)
    assert sheila.startswith("added Sheila (")
    assert "has no voice 'SPEAKER_07'" in refused(
        1, "speakers", "add", "Ann", "--job", job.id, "--label", "SPEAKER_07", *db
    )

    # rename (a name taken is refused), show, remove with every print
    line = refused(1, "speakers", "rename", "Narrator", "SHEILA", *db)
    assert "has a person named 'Sheila' already" in line
    renamed = ok("speakers", "rename", "NARRATOR", "Nora Reads", *db)
    assert renamed == f"renamed Narrator to Nora Reads ({narrator['id']})\n"
    shown = ok("speakers", "show", narrator["id"], *db)
    assert "Nora Reads" in shown and "2 ready" in shown and f"SPEAKER_00 of job {job.id}" in shown
    removed = ok("speakers", "remove", "nora reads", *db, run=cesar)
    assert removed == f"removed Nora Reads ({narrator['id']}) and 2 voice prints of theirs\n"
    assert list(people(*db)) == ["Sheila"]


# --- a server -------------------------------------------------------------------------------------------
def test_a_servers_library_through_its_api_and_worker(tmp_path: Path) -> None:
    # the retries before giving up on a server that does not answer take seconds: meanwhile, the rest runs
    unreachable = subprocess.Popen(
        [CESAR, "speakers", "list", "--server", "http://127.0.0.1:9"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"sqlite:///{tmp_path / 'server.db'}"
    migrate(url)
    with running_api(url, model="tiny.en", models="tiny.en") as api:
        server = ("--server", api.url)
        # `cesar submit` sends the naming options (checked before a worker could take the job)
        sent = ok("submit", STORY, "--diarize", "--no-name-speakers", "--known-speakers", "Ann, Bo", *server)
        queued = httpx.get(f"{api.url}/jobs/{sent.split()[0]}").json()
        assert queued["options"]["name_speakers"] is False
        assert queued["options"]["known_speakers"] == ["Ann", "Bo"]
        assert httpx.post(f"{api.url}/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"

        with whisper_worker(url):
            added = ok("speakers", "add", "Narrator", SAMPLE, *server, run=cesar)  # waits for the worker
            assert added.startswith("added Narrator (") and "s of speech (speech_en.flac)" in added
            narrator = people(*server)["Narrator"]
            assert [sample["status"] for sample in narrator["samples"]] == ["ready"]

            # a sample its worker cannot read: the reason in one line, exit 5 (as a job that failed), and
            # nothing left of it: not the print, not a person made for it
            line = refused(5, "speakers", "add", "Narrator", AUDIO_DIR / "silence.wav", *server, run=cesar)
            assert "silence.wav: the sample holds 0.0 s of speech" in line
            assert "0.0 s of speech" in refused(
                5, "speakers", "add", "Quiet", AUDIO_DIR / "silence.wav", *server
            )
            assert list(people(*server)) == ["Narrator"]
            assert len(people(*server)["Narrator"]["samples"]) == 1
            later = ok("speakers", "add", "Later", AUDIO_DIR / "silence.wav", "--no-wait", *server)
            assert "silence.wav sent; a worker will read it" in later

            # a diarized job names the voice; a voice of it makes a person
            out = tmp_path / "story.json"
            job_id = ok(
                "submit", STORY, "--diarize", "--known-speakers", "narrator,Ann", "--wait", "-o", out,
                *server, run=cesar,
            ).split()[0]  # fmt: skip
            assert speakers_of(out.read_text()) == {"Narrator"}
            (speaker,) = httpx.get(f"{api.url}/jobs/{job_id}").json()["speakers"]
            assert speaker["speaker_id"] == narrator["id"] and speaker["label"] == "SPEAKER_00"
            reader = ok("speakers", "add", "Reader", "--job", job_id, "--label", "SPEAKER_00", *server)
            assert reader.startswith("added Reader (") and f"(SPEAKER_00 of job {job_id})" in reader

        # rename, show and remove need no worker
        assert ok("speakers", "rename", "reader", "Reader Two", *server).startswith("renamed Reader to")
        assert "Reader Two" in ok("speakers", "show", "READER TWO", *server)
        removed = ok("speakers", "remove", "Narrator", "--json", *server)
        assert json.loads(removed) == {"id": narrator["id"], "name": "Narrator", "deleted": True}
        assert "nobody named 'Narrator'" in refused(1, "speakers", "remove", "Narrator", *server, run=cesar)
        assert sorted(people(*server)) == ["Later", "Reader Two"]

    _out, err = unreachable.communicate(timeout=60)
    assert unreachable.returncode == 3 and "cannot reach the Cesar server" in err, err
