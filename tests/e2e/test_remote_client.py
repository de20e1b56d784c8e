"""`cesar submit` and `cesar remote ...` against a real `cesar serve`, as separate processes."""

from __future__ import annotations

import json
import signal
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import srt
from serve_helpers import AUDIO_DIR, CESAR, CesarProcess, cesar_env, free_port, running_serve, wait_for

from cesar_common.transcription import audio as audio_io

KEY = "remote-test-key-77"


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CesarProcess]:
    tmp = tmp_path_factory.mktemp("remote")
    with running_serve(f"sqlite:///{tmp / 'cesar.db'}", log_path=tmp / "serve.log", workers="1") as process:
        yield process


def cesar(
    *args: str, server: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CESAR, *args],
        env=cesar_env({"CESAR_SERVER": server, **(env or {})}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def distinct_files(directory: Path, prefix: str, count: int) -> list[Path]:
    """``count`` different files of the 7 s speech: each ends with a different length of silence."""
    with wave.open(str(AUDIO_DIR / "speech_en.wav"), "rb") as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    paths = []
    for number in range(count):
        path = directory / f"{prefix}{number:02d}.wav"
        with wave.open(str(path), "wb") as out:
            out.setparams(params)
            out.writeframes(frames + b"\0\0" * 1600 * (number + 1))
        paths.append(path)
    return paths


def jobs_named(serve: CesarProcess, names: set[str]) -> list[dict[str, object]]:
    listed = httpx.get(f"{serve.url}/jobs", params={"limit": 1000}).json()
    return [job for job in listed if job["audio_path"] in names]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_submit_and_wait_writes_srt_and_json(serve: CesarProcess, tmp_path: Path) -> None:
    result = cesar(
        "submit", str(AUDIO_DIR / "speech_en.mp3"), "--wait", "-o", "talk.srt", "-o", "talk.json",
        server=serve.url, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.split()[0]
    subtitles = list(srt.parse((tmp_path / "talk.srt").read_text()))
    assert "lazy" in " ".join(item.content for item in subtitles).lower()
    transcript = json.loads((tmp_path / "talk.json").read_text())
    assert transcript["segments"] and "lazy" in transcript["text"].lower()
    shown = cesar("remote", "show", job_id, "--json", server=serve.url)
    assert json.loads(shown.stdout)["status"] == "completed"
    fetched = cesar("remote", "transcript", job_id, "-f", "vtt", server=serve.url)
    assert fetched.stdout.startswith("WEBVTT")


def test_ten_files_three_at_a_time_with_a_summary(serve: CesarProcess, tmp_path: Path) -> None:
    files = distinct_files(tmp_path, "ten", 10)
    result = cesar(
        "submit", str(tmp_path / "ten*.wav"), "--wait", "--parallel", "3", "--output-dir", "out",
        "-f", "srt", server=serve.url, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for path in files:
        assert "lazy" in (tmp_path / "out" / f"{path.stem}.srt").read_text().lower()
    summary = [line for line in result.stderr.splitlines() if line.startswith("ten")]
    assert len(summary) == 10 and all("completed" in line and "s" in line for line in summary)
    assert len(jobs_named(serve, {path.name for path in files})) == 10


def test_a_batch_killed_midway_runs_again_without_duplicates(serve: CesarProcess, tmp_path: Path) -> None:
    files = distinct_files(tmp_path, "crash", 10)
    names = {path.name for path in files}
    command = [CESAR, "submit", str(tmp_path / "crash*.wav"), "--wait", "--parallel", "3", "--output-dir",
               "out", "-f", "txt"]  # fmt: skip
    client = subprocess.Popen(
        command, env=cesar_env({"CESAR_SERVER": serve.url}), cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_for(lambda: len(jobs_named(serve, names)) >= 4, timeout=120, what="some of the batch's jobs")
    client.send_signal(signal.SIGKILL)
    client.communicate(timeout=30)

    again = cesar(*command[1:], server=serve.url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    jobs = jobs_named(serve, names)
    assert sorted(str(job["audio_path"]) for job in jobs) == sorted(names)  # one job per file
    for path in files:
        assert "lazy" in (tmp_path / "out" / f"{path.stem}.txt").read_text().lower()


def test_a_file_that_is_not_audio_is_one_line_and_exit_1(serve: CesarProcess) -> None:
    result = cesar("submit", str(AUDIO_DIR / "junk.mp3"), "--wait", server=serve.url)
    assert result.returncode == 1
    assert "not an audio or video file" in one_error_line(result) and "(415)" in result.stderr
    assert jobs_named(serve, {"junk.mp3"}) == []


def test_an_unreachable_server_is_one_line_and_exit_3(tmp_path: Path) -> None:
    result = cesar("remote", "list", server=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 3
    assert "cannot reach the Cesar server" in one_error_line(result)


def test_a_wrong_key_is_one_line_and_exit_4(tmp_path: Path) -> None:
    with running_serve(
        f"sqlite:///{tmp_path / 'keyed.db'}", log_path=tmp_path / "serve.log", workers="0",
        env={"CESAR_API_KEY": KEY},
    ) as keyed:  # fmt: skip
        wrong = cesar(
            "submit", str(AUDIO_DIR / "speech_en.wav"), server=keyed.url, env={"CESAR_API_KEY": "nope"}
        )
        assert wrong.returncode == 4
        assert "401" in one_error_line(wrong) and "nope" not in wrong.stderr
        right = cesar("remote", "list", "--json", server=keyed.url, env={"CESAR_API_KEY": KEY})
        assert right.returncode == 0 and json.loads(right.stdout) == []
        health = cesar("remote", "health", server=keyed.url)
        assert health.returncode == 0 and "workers    0 alive" in health.stdout


def test_ctrl_c_leaves_at_once_and_the_job_goes_on(serve: CesarProcess, tmp_path: Path) -> None:
    long = tmp_path / "long.wav"  # four times the 70 s story: still running when Ctrl-C comes
    samples = audio_io.decode_samples(AUDIO_DIR / "speech_en_long.flac")
    with wave.open(str(long), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes((samples.clip(-1, 1) * 32767).astype("<i2").tobytes() * 4)
    client = subprocess.Popen(
        [CESAR, "submit", str(long), "--wait", "-o", str(tmp_path / "long.txt")],
        env=cesar_env({"CESAR_SERVER": serve.url}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a background process inherits an ignored SIGINT: give the child the default, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: jobs_named(serve, {"long.wav"}), timeout=60, what="the job")
    client.send_signal(signal.SIGINT)
    _out, err = client.communicate(timeout=30)
    assert client.returncode == 130 and err.strip().endswith("interrupted"), err
    job = jobs_named(serve, {"long.wav"})[0]
    assert job["status"] in {"queued", "processing", "completed"}  # left running, not cancelled
    httpx.post(f"{serve.url}/jobs/{job['id']}/cancel", timeout=30)  # no later test needs its transcript
