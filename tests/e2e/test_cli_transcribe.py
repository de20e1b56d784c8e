"""`cesar transcribe` end to end: the real `cesar` binary in subprocesses for the main paths, Click's
CliRunner (in process, same real model) for the many refusals. Nothing here is faked but the clock."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import srt
import webvtt
from click.testing import CliRunner, Result

import cesar.transcribe_file
from cesar.cli import cli
from cesar_common.transcription.loading import LoadedModel, load_model

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
SPEECH = AUDIO / "speech_en.wav"


def _cesar_binary() -> str:
    beside_python = Path(sys.executable).parent / "cesar"
    found = str(beside_python) if beside_python.exists() else shutil.which("cesar")
    assert found, "the `cesar` console script is not installed (run `make install`)"
    return found


CESAR = _cesar_binary()


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    env["COLUMNS"] = "160"  # rich's width when stderr is not a terminal
    return env


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CESAR, "transcribe", *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=120,
    )


def _one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- the real binary -------------------------------------------------------------------------------
def test_stdout_mode_pipes_into_grep(tmp_path: Path) -> None:
    stderr_file = tmp_path / "stderr.txt"
    pipeline = f"'{CESAR}' transcribe '{AUDIO / 'speech_en.mp3'}' 2>'{stderr_file}' | grep -o -i lazy"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert done.returncode == 0, stderr_file.read_text()
    assert done.stdout.strip().lower() == "lazy"
    stderr = stderr_file.read_text()
    # progress (audio seconds done of total) and the summary go to stderr, never into the pipe
    assert "7.2/7.2 s audio" in stderr
    assert "7.2 s of audio in" in stderr and "x real time" in stderr
    assert "model tiny.en" in stderr and "cpu int8" in stderr


def test_quiet_json_on_stdout() -> None:
    done = _run(AUDIO / "speech_en.webm", "-q", "--format", "json", "--word-timestamps", "--beam-size", "1")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    data = json.loads(done.stdout)
    assert "lazy" in data["text"].lower() and data["language"] == "en"
    assert data["duration"] == pytest.approx(7.16, abs=0.1)
    assert all(segment["words"] for segment in data["segments"])


def test_output_file_format_from_extension(tmp_path: Path) -> None:
    out = tmp_path / "talk.vtt"
    done = _run(AUDIO / "speech_en_stereo44k.wav", "-o", out, "--beam-size", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    captions = webvtt.read(str(out)).captions
    assert captions and "lazy" in " ".join(c.text for c in captions).lower()
    assert f"wrote {out} (vtt)" in done.stderr
    assert out.stat().st_mode & 0o044  # readable by others like any new file, not a 0600 temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.vtt"]


# Runs a command with SIGINT at its default, as a terminal's shell starts it: a `make test` run in the
# background ignores SIGINT, and so would the command (exec keeps an ignored signal ignored).
SIGINT_AS_IN_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


ANSI_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, cursor moves and line clears


class Collected:
    """Everything a child writes to one of its pipes, read by a thread; waiters are told of each piece."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._data = b""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe.fileno(),), daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        while piece := os.read(fd, 4096):
            with self._changed:
                self._data += piece
                self._changed.notify_all()

    def wait_for(self, marker: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: marker.encode() in self._data, timeout)

    @property
    def text(self) -> str:
        self._thread.join(timeout=60)  # the pipe closes when the child exits
        return self._data.decode(errors="replace")


def test_ctrl_c_exits_130_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "story.txt"
    command = [CESAR, "transcribe", str(AUDIO / "speech_en_long.flac"), "-o", str(out)]
    with subprocess.Popen(
        [sys.executable, "-c", SIGINT_AS_IN_A_TERMINAL, *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**_env(), "TTY_COMPATIBLE": "1"},  # rich draws the progress bar as on a terminal, at once
    ) as process:
        assert process.stderr is not None
        stderr = Collected(process.stderr)
        try:
            # the bar appears once the model is loaded and the audio decoded: 70 s are then transcribed
            assert stderr.wait_for(" s audio", timeout=240), stderr.text
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        shown = ANSI_CONTROL.sub("", stderr.text)
    assert process.returncode == 130, shown
    assert shown.strip().splitlines()[-1] == "interrupted", shown
    assert "Traceback" not in shown
    assert list(tmp_path.iterdir()) == []


def test_missing_file_from_the_real_binary(tmp_path: Path) -> None:
    done = _run(tmp_path / "nope.mp3")
    assert done.returncode == 1
    _one_line_error(done.stderr, "input file not found", "nope.mp3")


# --- in process, with the real model loaded once ---------------------------------------------------
@pytest.fixture(scope="session")
def cli_model() -> LoadedModel:
    return load_model("tiny.en", device="cpu", compute_type="int8")


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch, cli_model: LoadedModel) -> Iterator[list[str]]:
    """Reuse the session's tiny.en; anything else goes through the real loader. Records every load."""
    calls: list[str] = []

    def load(name: str, **kwargs: object) -> LoadedModel:
        calls.append(name)
        if name == "tiny.en" and (kwargs.get("device"), kwargs.get("compute_type")) in SAME_AS_SESSION:
            return cli_model
        return load_model(name, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cesar.transcribe_file, "load_model", load)
    for name in ("CESAR_MODEL", "CESAR_DEVICE", "CESAR_COMPUTE_TYPE", "CESAR_THREADS"):
        monkeypatch.delenv(name, raising=False)
    yield calls


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["transcribe", *map(str, args)], catch_exceptions=False)


QUICK = ("--end-time", "3.5", "--beam-size", "1")  # the first sentence, greedy: under a second
SAME_AS_SESSION = {(device, compute) for device in ("auto", "cpu") for compute in ("auto", "int8")}


@pytest.fixture
def sigint_as_in_a_terminal() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in an interactive Python: a background `make test` ignores it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c() -> None:
    """Ctrl-C, delivered now: the command's own handler must have taken over from KeyboardInterrupt."""
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    signal.raise_signal(signal.SIGINT)


@pytest.mark.usefixtures("sigint_as_in_a_terminal")
@pytest.mark.parametrize("moment", ["within-the-last-batch", "once-the-engine-is-done"])
def test_ctrl_c_before_the_output_is_written_is_never_lost(
    tmp_path: Path, loads: list[str], monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    real = cesar.transcribe_file.transcribe
    reports: list[float] = []
    sent_after: list[int] = []  # how many reports came before Ctrl-C

    def transcribe(*args: Any, on_progress: Any, **kwargs: Any) -> Any:
        def progress(done: float, total: float) -> None:
            on_progress(done, total)
            reports.append(done)
            # speech_en.wav is one window, so one batch: progress moves within it once it is encoded
            if moment == "within-the-last-batch" and 0 < done < total and not sent_after:
                sent_after.append(len(reports))
                ctrl_c()

        result = real(*args, on_progress=progress, **kwargs)
        if moment == "once-the-engine-is-done":
            ctrl_c()  # after the engine's last look at its stop event
        return result

    monkeypatch.setattr(cesar.transcribe_file, "transcribe", transcribe)
    result = invoke(SPEECH, "-o", tmp_path / "out.txt", "--beam-size", "1")
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    if moment == "within-the-last-batch":  # the batch went no further: no more progress, not one segment
        assert sent_after == [len(reports)]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back


def test_an_ignored_sigint_stays_ignored(
    tmp_path: Path, loads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # what a shell does to a command it starts in the background: Ctrl-C at the terminal is not for it
    real = cesar.transcribe_file.transcribe
    during: list[object] = []

    def transcribe(*args: Any, **kwargs: Any) -> Any:
        during.append(signal.getsignal(signal.SIGINT))
        return real(*args, **kwargs)

    monkeypatch.setattr(cesar.transcribe_file, "transcribe", transcribe)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = invoke(SPEECH, "-o", tmp_path / "out.txt", *QUICK)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 0, result.output
    assert during == [signal.SIG_IGN]


@pytest.mark.parametrize(
    ("fmt", "name", "extra"),
    [
        ("txt", "out", []),  # no extension: txt
        ("srt", "out.txt", ["--format", "srt"]),  # --format wins over the extension
        ("vtt", "out.vtt", []),
        ("json", "out.json", ["--start-time", "0.5"]),
        ("tsv", "out.TSV", []),
    ],
)
def test_each_output_format(tmp_path: Path, loads: list[str], fmt: str, name: str, extra: list[str]) -> None:
    out = tmp_path / name
    result = invoke(SPEECH, "-o", out, *QUICK, *extra)
    assert result.exit_code == 0, result.stderr
    assert f"wrote {out} ({fmt})" in result.stderr
    text = out.read_text(encoding="utf-8")
    if fmt == "txt":
        body = text
    elif fmt == "srt":
        cues = list(srt.parse(text))
        assert cues and all(c.start < c.end <= srt.timedelta(seconds=3.5) for c in cues)
        body = " ".join(c.content for c in cues)
    elif fmt == "vtt":
        cues = webvtt.from_string(text).captions
        assert cues and cues[0].start.startswith("00:00:0")
        body = " ".join(c.text for c in cues)
    elif fmt == "json":
        data = json.loads(text)
        assert data["duration"] == pytest.approx(3.0) and data["model"] == "tiny.en"
        assert all(0.5 <= s["start"] < s["end"] <= 3.5 for s in data["segments"])
        body = data["text"]
    else:
        header, *rows = text.splitlines()
        assert header == "start\tend\ttext"
        assert rows and all(int(r.split("\t")[0]) < int(r.split("\t")[1]) <= 3500 for r in rows)
        body = " ".join(r.split("\t")[2] for r in rows)
    assert "lazy" in body.lower() and "reliable" not in body.lower()
    assert loads == ["tiny.en"]


def test_diarize_names_the_speakers_of_a_call(tmp_path: Path, loads: list[str]) -> None:
    out = tmp_path / "call.json"
    # --no-name-speakers: the labels, whatever voice library this machine's default database holds
    result = invoke(
        AUDIO / "two_speakers.wav", "--diarize", "--no-name-speakers", "--num-speakers", "2", "-o", out
    )
    assert result.exit_code == 0, result.stderr
    assert "2 speakers" in result.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [speaker["speaker"] for speaker in data["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    assert all(speaker["duration"] > 3 for speaker in data["speakers"])
    assert {segment["speaker"] for segment in data["segments"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert all("words" not in segment for segment in data["segments"])  # only when asked for
    turns = invoke(
        AUDIO / "two_speakers.wav", "--diarize", "--no-name-speakers", "-f", "rttm", "-q", "--word-timestamps"
    )
    lines = turns.stdout.splitlines()
    assert lines and all(line.startswith("SPEAKER audio 1 ") for line in lines)
    assert {line.split()[7] for line in lines} == {"SPEAKER_00", "SPEAKER_01"}


def test_one_voice_is_one_speaker(loads: list[str]) -> None:
    result = invoke(SPEECH, "--diarize", "--no-name-speakers", "-q")
    assert result.exit_code == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith("SPEAKER_00: ") and not any("SPEAKER_" in line for line in rest)


def test_silence_prints_nothing(loads: list[str]) -> None:
    result = invoke(AUDIO / "silence.wav", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_truncated_file_does_not_crash(loads: list[str]) -> None:
    result = invoke(AUDIO / "truncated.mp3", "--beam-size", "1", "--format", "json", "-q")
    assert result.exit_code == 0, result.stderr
    transcript = json.loads(result.stdout)
    assert 0.2 < transcript["duration"] < 1.0
    assert transcript["text"] == "" and transcript["segments"] == []  # too little speech for a word


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["{tmp}/missing.wav"], ["input file not found"]),
        (["{tmp}"], ["is a directory"]),
        ([AUDIO / "empty.wav"], ["empty.wav is empty"]),
        ([AUDIO / "junk.mp3"], ["junk.mp3 is not an audio or video file", "wav, flac, mp3"]),
        ([AUDIO / "not_audio.mp3"], ["not_audio.mp3 is not an audio or video file"]),
        ([SPEECH, "--start-time", "5", "--end-time", "2"], ["start time (5 s) must be before end time"]),
        ([SPEECH, "--start-time", "60"], ["past the end of the audio (7.2 s)"]),
        ([SPEECH, "--model", "tiny-english"], ["unknown model 'tiny-english'", "tiny.en", "large-v3"]),
        ([SPEECH, "--model", "{tmp}"], ["not a CTranslate2 Whisper model directory"]),
        ([SPEECH, "--device", "cuda"], ["no CUDA GPU", "--device cpu"]),
        ([SPEECH, "--compute-type", "float16", "--device", "cpu"], ["'float16' is not supported on cpu"]),
        ([SPEECH, "--language", "xx"], ["unknown language code 'xx'"]),
        ([SPEECH, "--language", "de"], ["only transcribes English"]),
    ],
    ids=[
        "missing",
        "directory",
        "empty",
        "junk",
        "not-audio",
        "conflicting-times",
        "start-past-end",
        "unknown-model",
        "not-a-model-dir",
        "no-cuda",
        "compute-type",
        "unknown-language",
        "english-only-model",
    ],
)
def test_refusals_are_one_line(
    tmp_path: Path, loads: list[str], args: list[str | Path], fragments: list[str]
) -> None:
    if "--device" in args and "cuda" in args and _has_gpu():
        pytest.skip("this machine has a GPU")
    result = invoke(*(str(a).format(tmp=tmp_path) for a in args))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    _one_line_error(result.stderr, *fragments)


def _has_gpu() -> bool:
    import ctranslate2

    return ctranslate2.get_cuda_device_count() > 0


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        ("{tmp}/no/such/dir/out.txt", "does not exist"),
        ("{tmp}", "is a directory"),
        ("{file}/out.txt", "is a file, not a directory"),
        ("{audio}", "is the input file"),
    ],
    ids=["missing-dir", "output-is-dir", "parent-is-file", "overwrites-input"],
)
def test_unwritable_output_is_refused_before_transcribing(
    tmp_path: Path, loads: list[str], output: str, fragment: str
) -> None:
    audio = tmp_path / "speech.wav"
    shutil.copy(SPEECH, audio)
    (tmp_path / "afile").write_text("x")
    target = output.format(tmp=tmp_path, file=tmp_path / "afile", audio=audio)
    result = invoke(audio, "-o", target)
    assert result.exit_code == 1
    _one_line_error(result.stderr, fragment)
    assert loads == []  # refused before the model was even loaded


def test_read_only_output_is_refused(tmp_path: Path, loads: list[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    out = tmp_path / "locked.txt"
    out.write_text("keep")
    out.chmod(0o444)
    result = invoke(SPEECH, "-o", out)
    assert result.exit_code == 1
    _one_line_error(result.stderr, "read-only")
    assert loads == []


def test_a_failure_keeps_the_old_output_and_leaves_no_temp_file(tmp_path: Path, loads: list[str]) -> None:
    out = tmp_path / "out.txt"
    out.write_text("the previous transcript\n")
    result = invoke(SPEECH, "-o", out, "--model", "nope")
    assert result.exit_code == 1
    assert out.read_text() == "the previous transcript\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_model_comes_from_cesar_model(monkeypatch: pytest.MonkeyPatch, loads: list[str]) -> None:
    monkeypatch.setenv("CESAR_MODEL", "no-such-model")
    result = invoke(SPEECH)
    assert result.exit_code == 1
    _one_line_error(result.stderr, "unknown model 'no-such-model'")
    assert loads == ["no-such-model"]


def test_verbose_shows_the_traceback(loads: list[str]) -> None:
    result = invoke(AUDIO / "junk.mp3", "-v")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "InvalidDataError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_an_output_extension_that_names_no_format_is_refused(tmp_path: Path, loads: list[str]) -> None:
    result = invoke(SPEECH, "-o", tmp_path / "out.docx")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: cannot tell the format from 'out.docx': name the output .txt, .srt, .vtt, .json, .tsv or "
        ".rttm, or pass --format"
    ]
    assert list(tmp_path.iterdir()) == [] and loads == []
    assert invoke(SPEECH, "-o", tmp_path / "out.docx", "--format", "txt").exit_code == 0


def test_a_start_past_the_end_is_one_line(loads: list[str]) -> None:
    result = invoke(SPEECH, "--start-time", "100")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: start time (100 s) is past the end of the audio (7.2 s)"], (
        result.stderr
    )


def test_every_option_reads_the_variable_its_help_names(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(
        cesar.transcribe_file, "run_transcribe", lambda path, job, **kwargs: calls.append((job, kwargs))
    )
    env = {"CESAR_LANGUAGE": "fr", "CESAR_QUIET": "1", "CESAR_FORMAT": "srt", "CESAR_TASK": "translate"}
    result = CliRunner().invoke(cli, ["transcribe", str(SPEECH)], env=env)
    assert result.exit_code == 0, result.output
    [(job, kwargs)] = calls
    assert (job.language, job.task, kwargs["quiet"], kwargs["fmt"]) == ("fr", "translate", True, "srt")
    for command in ("transcribe", "serve", "worker", "api"):
        shown = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).stdout
        names = re.findall(r"env var: (CESAR_[A-Z_]+)", shown)
        assert names and all(name.startswith("CESAR_") for name in names)


def test_usage_errors_from_click(loads: list[str]) -> None:
    result = invoke(SPEECH, "--format", "docx")
    assert result.exit_code == 1 and "docx" in result.stderr  # bad input (docs/cli.md), not Click's 2
    result = invoke(SPEECH, "--start-time", "-1")
    assert result.exit_code == 1
    assert loads == []


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(cli, ["transcribe", "--help"])
    assert result.exit_code == 0
    options = ["--output", "--format", "--model", "CESAR_MODEL", "--device", "--compute-type", "--language"]
    options += ["--task", "--no-vad", "--word-timestamps", "--start-time", "--end-time", "--threads", "-q"]
    options += ["--diarize", "--num-speakers", "--min-speakers", "--max-speakers"]
    assert [option for option in options if option not in result.stdout] == []
