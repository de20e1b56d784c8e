"""Batch size 0's rule (device, duration and memory injected), explicit sizes, cutting batched windows
into sentences, the WER normaliser and the `--batch-size` option."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
from wer import normalise, reference_from_readme, word_error_rate

from cesar_common.transcription import batching
from cesar_common.transcription.batching import (
    CPU_BATCH,
    CUDA_BATCH,
    auto_batch_size,
    choose_batch_size,
    fit_to_memory,
    window_bytes,
)
from cesar_common.transcription.loading import LoadedModel
from cesar_common.transcription.result import TranscriptionResult
from cesar_common.transcription.sentences import MAX_SECONDS, piece_text, split_words
from cesar_common.transcription.whisper import DecodeOptions, plan_batch_size

MIB = 1024 * 1024
GIB = 1024 * MIB
TINY = 75 * MIB  # tiny.en's files
LARGE = 3 * GIB  # large-v3 in float16


def auto(device: str, *, model: int = TINY, free: int | None = 16 * GIB) -> int:
    return auto_batch_size(device=device, model_bytes=model, free_bytes=free)


@pytest.mark.parametrize(("device", "expected"), [("cuda", CUDA_BATCH), ("cpu", CPU_BATCH)])
def test_auto_batches_every_file_by_device(device: str, expected: int) -> None:
    # also files shorter than one window: batched decoding reads the same under every CPU kernel set
    assert auto(device) == expected


def test_small_memory_shrinks_the_batch() -> None:
    # large-v3 fp16: about 384 MiB a window, so 16 windows want 6 GiB, and get half the free memory
    per_window = window_bytes(LARGE)
    assert per_window == 384 * MIB
    assert auto("cuda", model=LARGE, free=80 * GIB) == 16
    assert auto("cuda", model=LARGE, free=8 * GIB) == 8
    assert auto("cuda", model=LARGE, free=3 * GIB) == 4  # 4 x 384 MiB = half of 3 GiB
    assert auto("cuda", model=LARGE, free=2 * GIB) == 2
    assert auto("cuda", model=LARGE, free=GIB) == 1  # not even two windows: sequential
    assert auto("cpu", model=LARGE, free=4 * GIB) == CPU_BATCH == 4
    assert auto("cpu", model=LARGE, free=2 * GIB) == 2
    assert auto("cpu", model=TINY, free=GIB) == 4  # tiny's windows are small (64 MiB floor)
    assert auto("cpu", model=TINY, free=256 * MIB) == 2


def test_unknown_memory_keeps_the_device_default() -> None:
    assert auto("cuda", model=LARGE, free=None) == CUDA_BATCH
    assert auto("cpu", model=LARGE, free=None) == CPU_BATCH
    assert fit_to_memory(8, 100 * MIB, None) == 8


def test_an_explicit_size_is_not_capped_by_memory() -> None:
    size = choose_batch_size(32, device="cuda", vad=True, model_bytes=LARGE, free_bytes=GIB)
    assert size == 32


def test_window_estimate_has_a_floor() -> None:
    assert window_bytes(0) == window_bytes(TINY) == 64 * MIB
    assert window_bytes(8 * GIB) == GIB


@pytest.mark.parametrize(
    ("requested", "device", "vad", "expected"),
    [
        (1, "cuda", True, 1),  # 1: never batch
        (4, "cpu", True, 4),  # an explicit size wins
        (32, "cpu", True, 32),
        (8, "cuda", False, 1),  # without VAD the pipeline cannot cut the audio
        (0, "cuda", False, 1),
        (0, "cpu", True, CPU_BATCH),
    ],
)
def test_choose_batch_size(requested: int, device: str, vad: bool, expected: int) -> None:
    chosen = choose_batch_size(requested, device=device, vad=vad, model_bytes=LARGE, free_bytes=None)
    assert chosen == expected


def _model(device: str, **fields: Any) -> LoadedModel:
    return LoadedModel(
        name="tiny.en", path="/m", device=device, compute_type="int8", threads=0, whisper=None, **fields
    )  # type: ignore[arg-type]


def test_plan_reads_memory_only_for_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []

    def ram() -> int:
        reads.append("ram")
        return 100 * MIB  # room for one 64 MiB window in half of it: sequential

    monkeypatch.setattr(batching, "free_ram", ram)
    model = _model("cpu", model_bytes=TINY)
    assert plan_batch_size(model, DecodeOptions(batch_size=8)) == 8
    assert plan_batch_size(model, DecodeOptions(vad=False)) == 1
    assert reads == []
    assert plan_batch_size(model, DecodeOptions()) == 1
    assert reads == ["ram"]


def test_gpu_memory_is_read_once_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    def gpu() -> int:
        reads.append(1)
        # later reads would see CTranslate2's cache as taken: they must not happen
        return 8 * GIB if len(reads) == 1 else 100 * MIB

    monkeypatch.setattr(batching, "free_gpu_memory", gpu)
    model = _model("cuda", model_bytes=LARGE)
    assert [plan_batch_size(model, DecodeOptions()) for _ in range(3)] == [8, 8, 8]
    assert len(reads) == 1 and model.gpu_free_bytes == 8 * GIB


def test_gpu_memory_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert "--query-gpu=memory.free" in args
        return subprocess.CompletedProcess(args, 0, stdout="70000\n1200\n", stderr="")

    monkeypatch.setattr(batching.shutil, "which", lambda _name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(batching.subprocess, "run", run)
    assert batching.free_gpu_memory() == 1200 * MIB  # the least free GPU stands for ours

    def broken(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise subprocess.CalledProcessError(9, args)

    monkeypatch.setattr(batching.subprocess, "run", broken)
    assert batching.free_gpu_memory() == 0
    monkeypatch.setattr(batching.shutil, "which", lambda _name: None)
    assert batching.free_gpu_memory() == 0
    # unknown GPU memory: the device's default size
    assert plan_batch_size(_model("cuda", model_bytes=LARGE), DecodeOptions()) == CUDA_BATCH


def test_result_reports_mode_and_batch_size() -> None:
    result = TranscriptionResult(
        text="", language="en", language_probability=1.0, duration=1.0, segments=(),
        model="tiny.en", device="cpu", compute_type="int8", mode="batched", batch_size=8,
    )  # fmt: skip
    data = result.to_dict()
    assert (data["mode"], data["batch_size"]) == ("batched", 8)
    stored = TranscriptionResult.from_stored(
        text="", language="en", language_probability=1.0, duration=1.0, segments=[]
    )
    assert (stored.mode, stored.batch_size) == ("sequential", 1) and "mode" not in stored.to_dict()


# --- batched windows cut into sentences ------------------------------------------------------------
@dataclass(frozen=True)
class W:
    word: str
    start: float
    end: float


def _spoken(text: str, *, every: float = 0.5, pauses: dict[int, float] | None = None) -> list[W]:
    """Words one after another, ``every`` seconds each, with extra pauses before some (by index)."""
    words, clock = [], 0.0
    for index, token in enumerate(text.split()):
        clock += (pauses or {}).get(index, 0.0)
        words.append(W(f" {token}", clock, clock + every))
        clock += every
    return words


def _texts(pieces: list[list[W]]) -> list[str]:
    return [piece_text(piece) for piece in pieces]


def test_windows_are_cut_after_sentences() -> None:
    words = _spoken('Chapter one. Is it? "Yes!" he said. And then')
    assert _texts(split_words(words)) == ["Chapter one.", "Is it?", '"Yes!"', "he said.", "And then"]
    assert split_words([]) == []


def test_long_sentences_are_cut_after_a_clause_or_at_the_longest_pause() -> None:
    # 30 words of 0.5 s: past MAX_SECONDS (10 s) at the 21st word
    clause = " ".join(f"w{i}," if i == 14 else f"w{i}" for i in range(30))
    pieces = split_words(_spoken(clause))
    assert [len(piece) for piece in pieces] == [15, 15] and _texts(pieces)[0].endswith("w14,")

    pieces = split_words(_spoken(" ".join(f"w{i}" for i in range(30)), pauses={9: 1.0}))
    assert [len(piece) for piece in pieces] == [9, 20, 1]
    assert pieces[0][-1].word == " w8" and pieces[1][0].word == " w9"  # cut where the speaker paused
    assert all(piece[-1].end - piece[0].start <= MAX_SECONDS + 0.5 for piece in pieces)


def test_without_pauses_or_punctuation_pieces_stay_near_the_limit() -> None:
    pieces = split_words(_spoken(" ".join(f"w{i}" for i in range(60))))
    assert sum(len(piece) for piece in pieces) == 60
    durations = [piece[-1].end - piece[0].start for piece in pieces]
    assert all(d <= MAX_SECONDS + 0.5 for d in durations) and all(d >= 5 for d in durations[:-1])


# --- the accuracy test's normaliser -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Chapter One. The END!", "chapter one the end"),
        ("Chapter 1, chapter 3", "chapter one chapter three"),
        ("the miller\u2019s ledgers; the millers' ledgers", "the millers ledgers the millers ledgers"),
        ("twenty-one and 21", "twenty one and twenty one"),
        ("  spaced\tout\n", "spaced out"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_word_error_rate() -> None:
    assert word_error_rate("Chapter one. The end.", "chapter 1 the end") == 0.0
    assert word_error_rate("one two three four", "one 2 tree") == 0.5  # a substitution, a deletion
    assert word_error_rate("one two", "") == 1.0
    with pytest.raises(ValueError, match="no words"):
        word_error_rate("...", "text")


def test_reference_from_readme() -> None:
    readme = (
        'Spoken text of short: "Hello there."\n'
        'Spoken text of story (said twice, back to back): "Chapter one.\nThe end."\n'
    )
    assert reference_from_readme(readme, "short") == "Hello there."
    assert reference_from_readme(readme, "story") == "Chapter one. The end. Chapter one. The end."
    with pytest.raises(KeyError):
        reference_from_readme(readme, "missing")


# --- the CLI option ---------------------------------------------------------------------------------
@pytest.fixture
def run_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import cesar.transcribe_file

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        cesar.transcribe_file, "run_transcribe", lambda path, job, **kwargs: calls.append(kwargs)
    )
    monkeypatch.delenv("CESAR_BATCH_SIZE", raising=False)
    return calls


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    from click.testing import CliRunner

    from cesar.cli import cli

    return CliRunner().invoke(cli, ["transcribe", "talk.mp3", *args], env=env, catch_exceptions=False)


def test_batch_size_option(run_calls: list[dict[str, Any]]) -> None:
    assert _invoke().exit_code == 0
    assert _invoke("--batch-size", "4").exit_code == 0
    assert _invoke(env={"CESAR_BATCH_SIZE": "1"}).exit_code == 0
    assert [call["batch_size"] for call in run_calls] == [None, 4, 1]  # None: the settings' (0, auto)
    refused = _invoke("--batch-size", "-1")
    assert refused.exit_code == 1 and "--batch-size" in refused.stderr  # a usage error is bad input
    assert "CESAR_BATCH_SIZE" in _invoke("--help").stdout


def test_worker_batch_size_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from cesar.cli import cli
    from cesar_worker import worker as worker_module

    sizes: list[int] = []
    monkeypatch.setattr(
        worker_module, "run_worker", lambda settings, **_: sizes.append(settings.batch_size) or 0
    )
    monkeypatch.delenv("CESAR_BATCH_SIZE", raising=False)
    db = ["--db", f"sqlite:///{tmp_path / 'x.db'}", "--once"]
    runner = CliRunner()
    assert runner.invoke(cli, ["worker", *db]).exit_code == 0
    assert runner.invoke(cli, ["worker", *db, "--batch-size", "16"]).exit_code == 0
    assert runner.invoke(cli, ["worker", *db], env={"CESAR_BATCH_SIZE": "1"}).exit_code == 0
    assert sizes == [0, 16, 1]
    assert runner.invoke(cli, ["worker", *db, "--batch-size", "-2"]).exit_code == 1
