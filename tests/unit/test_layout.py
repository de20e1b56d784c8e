"""`--workers auto` picks the layout from the machine's facts (injected here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cesar.supervisor.layout import (
    FAMILY_BYTES,
    Layout,
    estimate_model_memory,
    machine_facts,
    model_bytes_for,
    model_family,
    model_files_bytes,
    parse_workers,
    plan_layout,
)
from cesar_common.errors import DeviceUnavailableError, InvalidInputError

GIB = 1024**3
TINY = FAMILY_BYTES["tiny"]
LARGE = FAMILY_BYTES["large"]


def plan(**facts: object) -> Layout:
    given: dict[str, object] = {
        "workers": "auto",
        "threads": 0,
        "device": "auto",
        "cpu_count": 2,
        "available_memory": 24 * GIB,
        "model_bytes": TINY,
        "gpu_count": 0,
        "model": "tiny.en",
    }
    given.update(facts)
    return plan_layout(**given)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 2), (3, 3), (16, 16)])
def test_auto_on_cpu_starts_one_single_threaded_worker_per_core(cores: int, expected: int) -> None:
    layout = plan(cpu_count=cores)
    assert (layout.workers, layout.threads, layout.device, layout.compute_type) == (
        expected,
        1,
        "cpu",
        "int8",
    )
    assert len(layout.worker_env) == expected


def test_threads_per_worker_divide_the_cores() -> None:
    assert (plan(cpu_count=8, threads=2).workers, plan(cpu_count=8, threads=2).threads) == (4, 2)
    assert plan(cpu_count=8, threads=3).workers == 2
    assert plan(cpu_count=2, threads=4).workers == 1  # never fewer than one


def test_memory_caps_the_workers_at_70_percent_of_what_is_available() -> None:
    per_worker = estimate_model_memory(LARGE)
    memory = int(3 * per_worker / 0.70) + 1  # room for exactly three
    layout = plan(cpu_count=16, available_memory=memory, model_bytes=LARGE, model="large-v3")
    assert layout.workers == 3
    assert "capped at 3 by memory" in layout.reason
    assert layout.workers * per_worker <= 0.70 * memory


def test_at_least_one_worker_even_when_memory_is_short() -> None:
    assert plan(cpu_count=8, available_memory=100 * 1024**2, model_bytes=LARGE).workers == 1


def test_an_explicit_number_wins_over_cores_and_memory() -> None:
    layout = plan(workers="5", cpu_count=2, available_memory=1 * GIB, model_bytes=LARGE)
    assert layout.workers == 5
    assert "warning" in layout.reason
    # with threads left at 0, explicit workers share the cores
    assert plan(workers="1", cpu_count=4).threads == 4
    assert plan(workers="2", cpu_count=4, threads=1).threads == 1


def test_workers_zero_means_the_api_alone() -> None:
    layout = plan(workers="0")
    assert layout.workers == 0
    assert layout.worker_env == ()
    assert layout.describe() == "no workers (API only)"


def test_cuda_starts_one_worker_per_visible_gpu_pinned_with_cuda_visible_devices() -> None:
    layout = plan(cpu_count=32, gpu_count=4)
    assert (layout.workers, layout.device, layout.compute_type) == (4, "cuda", "float16")
    assert [env["CUDA_VISIBLE_DEVICES"] for env in layout.worker_env] == ["0", "1", "2", "3"]
    assert "one worker per GPU" in layout.reason


def test_cuda_keeps_the_ids_the_user_made_visible() -> None:
    layout = plan(gpu_count=2, gpu_ids=("2", "5"))
    assert [env["CUDA_VISIBLE_DEVICES"] for env in layout.worker_env] == ["2", "5"]


def test_explicit_workers_on_cuda_share_the_gpus_round_robin() -> None:
    layout = plan(workers="3", device="cuda", gpu_count=2)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in layout.worker_env] == ["0", "1", "0"]


def test_device_cpu_ignores_gpus_and_cuda_without_gpu_is_refused() -> None:
    assert plan(device="cpu", gpu_count=2, cpu_count=4).workers == 4
    with pytest.raises(DeviceUnavailableError):
        plan(device="cuda", gpu_count=0)


def test_an_explicit_compute_type_is_kept() -> None:
    assert plan(compute_type="float32").compute_type == "float32"


def test_describe_is_the_line_serve_prints() -> None:
    assert plan(cpu_count=2).describe() == "2 workers x 1 thread, cpu int8, tiny.en"
    assert plan(workers="1", cpu_count=4).describe() == "1 worker x 4 threads, cpu int8, tiny.en"


@pytest.mark.parametrize("bad", ["many", "-1", "1.5", ""])
def test_bad_worker_counts_are_client_errors(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_workers(bad)


def test_model_size_is_measured_from_its_files_or_known_by_name(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "vocabulary.txt").write_bytes(b"x" * 24)
    assert model_files_bytes(tmp_path) == 1024
    assert model_bytes_for("anything", tmp_path) == 1024
    assert model_bytes_for("large-v3", None) == LARGE
    assert model_bytes_for("distil-large-v3.5", tmp_path / "missing") == FAMILY_BYTES["distil-large"]
    assert model_bytes_for("someone/unknown-model", tmp_path / "missing") >= LARGE  # assume big
    assert model_bytes_for("large-v9", None) >= LARGE  # a family's name is not enough: faster-whisper's own


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("tiny.en", "tiny"),
        ("base", "base"),
        ("medium.en", "medium"),
        ("large-v1", "large"),
        ("large", "large"),
        ("large-v3-turbo", "turbo"),
        ("turbo", "turbo"),
        ("distil-small.en", "distil-small"),
        ("distil-medium.en", "distil-medium"),
        ("distil-large-v3.5", "distil-large"),
    ],
)
def test_a_model_name_tells_its_family(name: str, family: str) -> None:
    assert model_family(name) == family


def test_tiny_en_estimate_matches_the_measured_resident_size() -> None:
    # measured: a tiny.en int8 worker peaks at 396 MB RSS after the 70 s fixture
    assert 396_000_000 <= estimate_model_memory(TINY) <= 450_000_000


def test_the_real_machine_facts_are_sane() -> None:
    facts = machine_facts(need_gpus=False)
    assert facts.cpu_count >= 1
    assert facts.available_memory > 0
    assert facts.gpu_count == 0
