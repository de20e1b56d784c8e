"""`cesar watch` against a running `cesar serve` (issue 32's must-show tests): files dropped in nested
folders become subtitles beside them, each file one job, through a kill -9 and restart of the watcher, a
second watcher on the same folder, a file changed or deleted while its job runs, and the polling mode.

One `cesar serve` (two workers, the bundled tiny.en, VAD on, SQLite) serves every test. Most media files
are tiny WAVs of digital silence (0.3 to 0.6 s, 16 kHz mono), each a few samples longer than the last, so
that every file in the module has its own bytes (the watcher's Idempotency-Key is the content's hash: two
files with the same bytes share one job) and each job costs a worker next to nothing (VAD finds no speech).
Real speech (tests/fixtures/audio/speech_en.*) goes where the transcript's content matters. The names of
the files differ from test to test, so each test counts its own jobs on the server by their file names
(a job's ``audio_path`` is the uploaded file's name).

Every wait polls with a deadline; the deadlines are far beyond what the steps take.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import secrets
import signal
import subprocess
import time
import wave
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbtools import migrate
from serve_helpers import AUDIO_DIR, CESAR, cesar_env, running_serve, wait_for

SETTLE = 0.5  # seconds a file must stay unchanged (`--settle`)
CHUNK_PAUSE = 0.2  # between the chunks of a file written slowly: longer than a watcher's loop, < SETTLE
SPEECH_WAV = AUDIO_DIR / "speech_en.wav"  # 7.2 s, 16 kHz mono PCM
SPEECH_OGG = AUDIO_DIR / "speech_en.ogg"  # the same speech, Opus
SPEECH_WORDS = ("lazy", "transcription", "fast", "reliable")  # what tiny.en reliably hears in it
FINAL = frozenset({"completed", "error", "cancelled"})
WAIT = 180.0  # the deadline of every wait: a safety net, not a measure


# --- the server ---------------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    key: str  # the server's own key (an admin: GET /jobs lists everyone's jobs)
    http: httpx.Client

    def jobs(self) -> list[dict[str, Any]]:
        """Every job on the server, all pages."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            response = self.http.get("/jobs", params=params)
            assert response.status_code == 200, response.text
            found += response.json()
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                return found

    def jobs_named(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The jobs of files with these names, oldest first."""
        wanted = set(names)
        return sorted((j for j in self.jobs() if j["audio_path"] in wanted), key=lambda j: j["created_at"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("watch-serve")
    db_url = f"sqlite:///{directory / 'cesar.db'}"
    migrate(db_url)
    key = secrets.token_urlsafe(32)
    env = {"CESAR_API_KEY": key}
    with (
        running_serve(db_url, log_path=directory / "serve.log", workers="2", env=env) as serve,
        httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
    ):
        yield Server(serve.url, key, http)


# --- watchers -----------------------------------------------------------------------------------------
@dataclass
class Watch:
    """A `cesar watch` running in the background (its own process group), stdout and stderr in files."""

    process: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    def lines(self) -> list[str]:
        return self.out_path.read_text(errors="replace").splitlines()

    def log(self) -> str:
        out = self.out_path.read_text(errors="replace")[-3000:]
        err = self.err_path.read_text(errors="replace")[-3000:]
        return f"stdout:\n{out}\nstderr:\n{err}"

    def check_alive(self) -> None:
        code = self.process.poll()
        assert code is None, f"the watcher exited with {code}:\n{self.log()}"

    def kill(self) -> None:
        """kill -9, the whole process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Ctrl-C, then kill -9 if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def watch_command(server: Server, folder: Path, *args: str) -> list[str]:
    return [
        CESAR,
        "watch",
        str(folder),
        "--server",
        server.url,
        "--api-key",
        server.key,
        "--settle",
        str(SETTLE),
        *args,
    ]


def watch_env(state_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """No CESAR_* of the developer's, the default state file under ``state_home``, stdout unbuffered (a
    kill -9 loses no line), file-system events unless ``extra`` asks for polling."""
    env = cesar_env({"XDG_STATE_HOME": str(state_home), "PYTHONUNBUFFERED": "1"}, fast=False)
    env.pop("WATCHFILES_FORCE_POLLING", None)
    return {**env, **(extra or {})}


Starter = Callable[..., Watch]


@pytest.fixture
def watchers(server: Server, tmp_path: Path) -> Iterator[Starter]:
    """Starts `cesar watch` processes; any still running at the end is killed."""
    started: list[Watch] = []

    def start(folder: Path, *args: str, env: Mapping[str, str] | None = None) -> Watch:
        number = len(started)
        out_path, err_path = tmp_path / f"watch-{number}.out", tmp_path / f"watch-{number}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                watch_command(server, folder, *args),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=watch_env(tmp_path / "state", env),
                start_new_session=True,
            )
        watch = Watch(process, out_path, err_path)
        started.append(watch)
        return watch

    yield start
    for watch in started:
        watch.kill()


def watch_once(
    server: Server, folder: Path, state_home: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        watch_command(server, folder, "--once", *args),
        env=watch_env(state_home, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


# --- media files --------------------------------------------------------------------------------------
_lengths = itertools.count()


def silence() -> bytes:
    """A WAV of digital silence, 16 kHz mono, 0.3 s and a few samples longer than the previous one: every
    call in this module gives different bytes."""
    samples = 4800 + 7 * next(_lengths)
    return wav(b"\0\0" * samples)


def wav(frames: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(frames)
    return buffer.getvalue()


def long_speech(repeats: int) -> bytes:
    """speech_en.wav said ``repeats`` times (7.2 s each): a job that runs for seconds."""
    with wave.open(str(SPEECH_WAV), "rb") as source:
        assert (source.getnchannels(), source.getsampwidth(), source.getframerate()) == (1, 2, 16000)
        frames = source.readframes(source.getnframes())
    return wav(frames * repeats)


def speech() -> bytes:
    """speech_en.wav (7.2 s) and a few samples of silence more than the previous call's: its words, in
    bytes of its own (the same bytes under another name would share that file's job)."""
    with wave.open(str(SPEECH_WAV), "rb") as source:
        frames = source.readframes(source.getnframes())
    return wav(frames + b"\0\0" * (1 + next(_lengths)))


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_slowly(path: Path, data: bytes, chunks: int = 8) -> None:
    """``data`` in ``chunks`` writes, CHUNK_PAUSE apart (1.6 s in all): the file grows while the watchers
    start, scan and take the files written at once, so they see it unfinished, and unchanged for longer
    than a turn of their loop (a settle time shorter than CHUNK_PAUSE would take it unfinished)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    step = -(-len(data) // chunks)
    with path.open("wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(CHUNK_PAUSE)


def write_partial(path: Path, data: bytes) -> None:
    """A download: written slowly as ``<name>.part``, left whole under that name for longer than the
    settle time (a watcher that took partial downloads would take it then), then renamed."""
    partial = path.with_name(path.name + ".part")
    write_slowly(partial, data)
    time.sleep(2 * SETTLE)
    partial.rename(path)


def subtitle(relative: str, language: str = "en", fmt: str = "srt") -> str:
    """``Show/Season 1/Episode 01.wav`` -> ``Show/Season 1/Episode 01.en.srt``."""
    path = Path(relative)
    return path.with_name(f"{path.stem}.{language}.{fmt}").as_posix()


def files_named(root: Path, suffix: str) -> set[str]:
    """Every file under ``root`` (hidden ones too) whose name ends with ``suffix``, relative."""
    return {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name.endswith(suffix)
    }


def cue_ends(srt: str) -> list[float]:
    return [
        int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
        for h, m, s, ms in re.findall(r"--> (\d+):(\d+):(\d+),(\d+)", srt)
    ]


# --- what the watchers said and what the server has -----------------------------------------------------
def verdicts(stdout: str) -> list[str]:
    """The ``done`` and ``failed`` lines of a watcher's stdout."""
    return [line for line in stdout.splitlines() if line.startswith(("done ", "failed "))]


def done_in(lines: Iterable[str], expected: Mapping[str, str]) -> set[str]:
    """No ``failed`` line; every ``done <path> -> <outputs>`` line is about one of ``expected``'s files and
    names its output. Returns the files the ``done`` lines name."""
    done: set[str] = set()
    for line in lines:
        assert not line.startswith("failed "), line
        if line.startswith("done "):
            path, arrow, shown = line.removeprefix("done ").partition(" -> ")
            assert arrow and path in expected, f"a done line about an unexpected file: {line!r}"
            assert Path(expected[path]).name in shown, f"{line!r}: not {expected[path]}"
            done.add(path)
    return done


def check_lines(watches: Iterable[Watch], expected: Mapping[str, str]) -> set[str]:
    """:func:`done_in` for each watcher's stdout (its log in the message when one fails)."""
    done: set[str] = set()
    for watch in watches:
        try:
            done |= done_in(verdicts("\n".join(watch.lines())), expected)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{watch.log()}") from exc
    return done


def check_jobs(server: Server, relatives: Iterable[str], *, not_submitted: Iterable[str] = ()) -> None:
    """One job per file (counted by name: several files may share a name in different folders), every one
    completed; none for the names in ``not_submitted``."""
    wanted = Counter(Path(relative).name for relative in relatives)
    jobs = server.jobs_named(set(wanted) | set(not_submitted))
    found = Counter(j["audio_path"] for j in jobs)
    extra = {name: count - wanted[name] for name, count in found.items() if count > wanted[name]}
    missing = {name: wanted[name] - found[name] for name in wanted if found[name] < wanted[name]}
    assert not extra and not missing, (
        f"{len(jobs)} jobs for {wanted.total()} files; more jobs than files: {extra}; fewer: {missing}"
    )
    statuses = Counter(j["status"] for j in jobs)
    assert statuses == {"completed": wanted.total()}, statuses


def wait_final(server: Server, names: Iterable[str], watches: Iterable[Watch] = ()) -> None:
    """Until no job of these names is queued or running."""
    wanted = set(names)

    def ended() -> bool:
        for watch in watches:
            watch.check_alive()
        return all(j["status"] in FINAL for j in server.jobs_named(wanted))

    wait_for(ended, timeout=WAIT, interval=0.2, what="the jobs to end")


# --- the tests ------------------------------------------------------------------------------------------
def library() -> dict[str, bytes]:
    """200 media files with media-server names in nested folders, each its own bytes; two are speech."""
    files: dict[str, bytes] = {}
    for show in "ABCD":
        for season in (1, 2):
            for episode in range(1, 11):
                files[f"Shows/Show {show}/Season {season}/Episode {episode:02d}.wav"] = silence()
    for number in range(1, 60):
        title = f"Movie {number:02d} ({1960 + number})"
        files[f"Movies/{title}/{title}.wav"] = silence()
    files["Movies/Talk (2019)/Talk (2019).wav"] = SPEECH_WAV.read_bytes()
    for day in range(1, 21):
        for call in range(1, 4):
            files[f"Recordings/2024-05-{day:02d}/call {call}.wav"] = silence()
    del files["Recordings/2024-05-20/call 3.wav"]
    files["Podcasts/Quick Fox.ogg"] = SPEECH_OGG.read_bytes()
    assert len(files) == 200
    return files


#: files no watcher may take (hidden, partial downloads, not media); their names appear nowhere else
IGNORED = (
    "Shows/Show A/Season 1/.Episode 99.wav",
    "Shows/.trash/Episode 98.wav",
    "Movies/Next (2024).mkv.crdownload",
    "Movies/Other (2023).mkv.!qB",
    "Movies/Third (2022).mp4.part",
    "Recordings/upload.wav.tmp",
    "Recordings/notes.txt",
)


def test_two_hundred_files_with_a_kill_a_restart_and_a_second_watcher_make_200_jobs_and_200_subtitles(
    server: Server, watchers: Starter, tmp_path: Path
) -> None:
    """200 files dropped at once in nested folders while two watchers follow the folder (events): most
    written at once, 15 slowly in chunks, 15 as ``<name>.part`` renamed at the end. When half the subtitles
    exist the first watcher is killed (-9) and started again, the second one running on.

    Then: exactly the 200 subtitles, ``<stem>.en.srt`` beside each file, and no other ``.srt``; exactly one
    job per file on the server, all completed (no duplicate from the restart, the second watcher, a file
    caught half-written or a ``.part``); none for hidden files, partial downloads or non-media; no watcher
    reported a failure, and their ``done`` lines name the right outputs; the speech files' subtitles have
    their words.
    """
    root = tmp_path / "library"
    root.mkdir()
    files = library()
    expected = {relative: subtitle(relative) for relative in files}
    ordered = sorted(files)
    slow = ordered[5::13]
    partial = ordered[11::13]
    burst = [relative for relative in ordered if relative not in slow and relative not in partial]
    assert (len(slow), len(partial)) == (15, 15)

    def written() -> int:
        return sum((root / output).exists() for output in expected.values())

    first = watchers(root)
    second = watchers(root, "--state", str(tmp_path / "second-watcher.json"))  # as if on another host
    with ThreadPoolExecutor(max_workers=len(slow) + len(partial)) as pool:
        writing = [pool.submit(write_slowly, root / relative, files[relative]) for relative in slow]
        writing += [pool.submit(write_partial, root / relative, files[relative]) for relative in partial]
        for relative in burst:
            write(root / relative, files[relative])
        for relative in IGNORED:
            write(root / relative, silence())

        def half_written() -> bool:
            first.check_alive()
            second.check_alive()
            return written() >= len(files) // 2

        wait_for(half_written, timeout=WAIT, interval=0.02, what="half the subtitles")
        first.kill()
        at_kill = written()
        restarted = watchers(root)  # the first one's command again, its state file too
        for future in writing:
            future.result()
    assert at_kill < len(files), "every subtitle was written before the kill: no test of the restart"

    def all_written() -> bool:
        restarted.check_alive()
        second.check_alive()
        return written() == len(files)

    wait_for(all_written, timeout=WAIT, interval=0.1, what="all 200 subtitles")
    names = {Path(relative).name for relative in [*files, *IGNORED]}
    wait_final(server, names, [restarted, second])
    restarted.stop()
    second.stop()

    assert files_named(root, ".srt") == set(expected.values())
    check_jobs(server, files, not_submitted=[Path(relative).name for relative in IGNORED])
    assert not server.jobs_named(Path(relative).name + ".part" for relative in partial)
    check_lines([first, restarted, second], expected)
    for relative in ("Movies/Talk (2019)/Talk (2019).wav", "Podcasts/Quick Fox.ogg"):
        text = (root / expected[relative]).read_text().lower()
        assert any(word in text for word in SPEECH_WORDS), (relative, text)


def test_a_file_changed_during_its_job_is_redone_and_one_deleted_has_its_job_cancelled(
    server: Server, watchers: Starter, tmp_path: Path
) -> None:
    """Two long files (speech_en said 30 and 31 times: jobs of several seconds) are being transcribed when
    one is rewritten with speech_en.wav's 7.2 s (and a few samples) and the other deleted.

    The rewritten one: its first job ends cancelled, a second job (the new content) completes, and its
    subtitle is the new content's (speech_en's words, no cue past 10 s). The deleted one: its job ends
    cancelled, no subtitle. No failure is reported.
    """
    root = tmp_path / "talks"
    changed, deleted = root / "Talks" / "Interview.wav", root / "Talks" / "Lecture.wav"
    write(changed, long_speech(30))
    write(deleted, long_speech(31))
    watch = watchers(root)

    def running() -> list[dict[str, Any]] | None:
        watch.check_alive()
        jobs = server.jobs_named([changed.name, deleted.name])
        return jobs if [j["status"] for j in jobs] == ["processing", "processing"] else None

    before = {
        j["audio_path"]: j for j in wait_for(running, timeout=WAIT, interval=0.05, what="both jobs to run")
    }
    changed.write_bytes(speech())
    deleted.unlink()

    output = root / subtitle("Talks/Interview.wav")

    def redone() -> bool:
        watch.check_alive()
        return output.exists()

    wait_for(redone, timeout=WAIT, interval=0.1, what="the changed file's subtitle")
    wait_final(server, [changed.name, deleted.name], [watch])
    watch.stop()

    interview = server.jobs_named([changed.name])
    assert [j["status"] for j in interview] == ["cancelled", "completed"], interview
    assert interview[0]["id"] == before[changed.name]["id"]
    assert interview[1]["duration"] < 10, interview[1]
    lecture = server.jobs_named([deleted.name])
    assert [(j["id"], j["status"]) for j in lecture] == [(before[deleted.name]["id"], "cancelled")]

    text = output.read_text()
    assert any(word in text.lower() for word in SPEECH_WORDS), text
    assert cue_ends(text) and max(cue_ends(text)) < 10, text  # the 7.2 s file's, not the 216 s one's
    assert files_named(root, ".srt") == {"Talks/Interview.en.srt"}
    check_lines([watch], {"Talks/Interview.wav": "Talks/Interview.en.srt"})


def test_polling_once_and_dry_run(server: Server, watchers: Starter, tmp_path: Path) -> None:
    """A folder where file-system events are off (``WATCHFILES_FORCE_POLLING``) and ``--poll 0.5``:

    - ``--once --dry-run`` on its 14 files: exit 0, each file named in its output, no job, no subtitle;
    - a polling watcher while 6 more files arrive (2 slowly, 2 as ``.part`` renamed, 2 at once): the 20
      subtitles with their names, one completed job per file, no failure;
    - ``--once`` after 3 more arrive, and a copy of one of the first under another name: exit 0, their 4
      subtitles written, 3 jobs more (the copy shares its original's job), nothing submitted again;
    - ``--once --retries 0`` with a file that is not audio: exit 5 and a ``failed`` line for it.
    """
    root = tmp_path / "share"
    state = tmp_path / "state"
    polling = {"WATCHFILES_FORCE_POLLING": "true"}
    first = {f"Feeds/Feed {feed}/Polled {n:02d}.wav": silence() for feed in (1, 2) for n in range(1, 8)}
    later = {f"Feeds/Feed 3/Polled {n:02d}.wav": silence() for n in range(1, 7)}
    late = {f"Late/Late {n}.wav": silence() for n in range(1, 4)}
    copy = "Late/Copy of Polled 01.wav"
    names = {Path(relative).name for relative in [*first, *later, *late]}
    for relative, data in first.items():
        write(root / relative, data)

    dry = watch_once(server, root, state, "--dry-run", "--poll", "0.5", env=polling)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert all(relative in dry.stdout for relative in first), dry.stdout
    assert not server.jobs_named(names)
    assert not files_named(root, ".srt")

    watch = watchers(root, "--poll", "0.5", env=polling)
    slow, partial, burst = list(later)[:2], list(later)[2:4], list(later)[4:]
    with ThreadPoolExecutor(max_workers=4) as pool:
        writing = [pool.submit(write_slowly, root / relative, later[relative]) for relative in slow]
        writing += [pool.submit(write_partial, root / relative, later[relative]) for relative in partial]
        for relative in burst:
            write(root / relative, later[relative])
        for future in writing:
            future.result()
    polled = {**first, **later}
    expected = {relative: subtitle(relative) for relative in polled}

    def all_written() -> bool:
        watch.check_alive()
        return all((root / output).exists() for output in expected.values())

    wait_for(all_written, timeout=WAIT, interval=0.1, what="the 20 subtitles")
    wait_final(server, names, [watch])
    watch.stop()
    assert files_named(root, ".srt") == set(expected.values())
    check_jobs(server, polled)
    assert check_lines([watch], expected) == set(polled)  # one watcher, never stopped: it wrote them all

    for relative, data in late.items():
        write(root / relative, data)
    write(root / copy, first["Feeds/Feed 1/Polled 01.wav"])
    once = watch_once(server, root, state, "--poll", "0.5", env=polling)
    assert once.returncode == 0, once.stdout + once.stderr
    expected |= {relative: subtitle(relative) for relative in [*late, copy]}
    assert files_named(root, ".srt") == set(expected.values())
    check_jobs(server, {**polled, **late}, not_submitted=[Path(copy).name])
    assert done_in(verdicts(once.stdout), expected) == {*late, copy}, once.stdout

    write(root / "Broken.mp3", (AUDIO_DIR / "not_audio.mp3").read_bytes())
    broken = watch_once(server, root, state, "--poll", "0.5", "--retries", "0", env=polling)
    assert broken.returncode == 5, broken.stdout + broken.stderr
    said = verdicts(broken.stdout)
    assert len(said) == 1 and said[0].startswith("failed Broken.mp3: "), broken.stdout
    assert files_named(root, ".srt") == set(expected.values())
    check_jobs(server, {**polled, **late}, not_submitted=[Path(copy).name])  # nothing done again
