"""`cesar serve` through CliRunner: options, env vars, one-line failures before anything starts."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from cesar.cli import cli
from cesar.supervisor import serve as serve_module
from cesar.supervisor.children import Child
from cesar.supervisor.layout import Layout
from cesar.supervisor.ports import base_url, check_port
from cesar_common.parentwatch import SUPERVISOR_PID_ENV
from cesar_common.settings import Settings, reset_settings_cache
from cesar_common.urlpolicy import is_loopback

OPTIONS = {
    "--host": "CESAR_HOST",
    "--port": "CESAR_PORT",
    "--workers": "CESAR_WORKERS",
    "--threads": "CESAR_THREADS",
    "--db": "CESAR_DATABASE_URL",
    "--model": "CESAR_MODEL",
    "--device": "CESAR_DEVICE",
    "--compute-type": "CESAR_COMPUTE_TYPE",
    "--log-level": "CESAR_LOG_LEVEL",
}


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    reset_settings_cache()  # the CLI reads the environment CliRunner sets
    yield
    reset_settings_cache()


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def no_children(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) any attempt to start a child process."""
    started: list[str] = []

    def start(self: Child) -> None:
        started.append(self.name)
        raise AssertionError("serve started a child")

    monkeypatch.setattr(Child, "start", start)
    return started


def test_help_explains_every_option_and_its_env_var() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option, envvar in OPTIONS.items():
        assert option in result.output
        assert envvar in result.output
    assert "--no-migrate" in result.output
    assert "auto" in result.output and "70%" in result.output


def test_a_port_in_use_gives_one_line_and_starts_nothing(
    busy_port: int, tmp_path: Path, no_children: list[str]
) -> None:
    db = tmp_path / "cesar.db"
    result = CliRunner().invoke(
        cli, ["serve", "--port", str(busy_port), "--db", f"sqlite:///{db}", "--workers", "1"]
    )
    assert result.exit_code != 0
    assert result.stderr.strip() == f"error: port {busy_port} is in use: pass --port"
    assert result.stdout == ""
    assert no_children == []
    assert not db.exists()  # checked before the database is touched


def test_the_port_comes_from_cesar_port_too(busy_port: int, tmp_path: Path, no_children: list[str]) -> None:
    result = CliRunner().invoke(
        cli, ["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}"], env={"CESAR_PORT": str(busy_port)}
    )
    assert result.exit_code != 0
    assert f"port {busy_port} is in use" in result.stderr


@pytest.mark.parametrize("workers", ["many", "-2", "1.5"])
def test_a_bad_worker_count_is_a_usage_error(workers: str, no_children: list[str]) -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", workers])
    assert result.exit_code == 1  # bad input, as every usage error (docs/cli.md)
    assert "auto" in result.stderr


def test_a_bad_setting_from_the_environment_is_one_line(no_children: list[str]) -> None:
    result = CliRunner().invoke(cli, ["serve"], env={"CESAR_LEASE_SECONDS": "-1"})
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "CESAR_LEASE_SECONDS" in result.stderr


def test_an_outdated_schema_with_no_migrate_is_one_line(tmp_path: Path, no_children: list[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = tmp_path / "fresh.db"
    result = CliRunner().invoke(
        cli, ["serve", "--port", str(port), "--db", f"sqlite:///{db}", "--no-migrate"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the database schema is behind")
    assert result.stderr.count("\n") == 1


def test_check_port_names_the_problem(busy_port: int) -> None:
    from cesar_common.errors import ClientError

    with pytest.raises(ClientError, match=f"port {busy_port} is in use: pass --port"):
        check_port("127.0.0.1", busy_port)
    with pytest.raises(ClientError, match="not an address of this machine"):
        check_port("192.0.2.1", 0)  # TEST-NET-1: never local


def test_urls_and_loopback() -> None:
    assert base_url("127.0.0.1", 5000) == "http://127.0.0.1:5000"
    assert base_url("0.0.0.0", 80) == "http://127.0.0.1:80"
    assert base_url("::", 5000) == "http://[::1]:5000"
    assert all(map(is_loopback, ["127.0.0.1", "::1", "localhost", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.0.0.1", "::", "example.com"]))


def test_a_public_host_served_open_is_warned_about() -> None:
    from cesar_api.server import startup_warnings
    from cesar_common.exposure import Exposure

    signed = Settings(host="0.0.0.0", webhook_secret=SecretStr("s"), insecure=True)
    assert startup_warnings(signed, Exposure.KEYED) == []
    assert startup_warnings(signed, Exposure.LOOPBACK) == []
    [warning] = startup_warnings(signed, Exposure.OPEN)  # --insecure
    assert "CESAR_API_KEY" in warning and "--insecure" in warning


def test_settings_reach_the_children_as_env_vars_that_read_back_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(
        port=5123,
        database_url="sqlite:////tmp/x.db",
        api_key=SecretStr("s3cret"),
        models=["tiny.en", "base"],
        allow_private_urls=True,
        lease_seconds=2.5,
        log_level="debug",
    )
    env = serve_module.settings_env(settings)
    for name in list(os.environ):
        if name.startswith("CESAR_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_child_specs_carry_the_layout() -> None:
    layout = Layout(
        workers=2,
        threads=1,
        device="cuda",
        compute_type="float16",
        model="tiny.en",
        worker_env=({"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}),
    )
    specs = serve_module.child_specs(Settings(port=5123), layout, environ={"PATH": "/bin"})
    assert [spec.name for spec in specs] == ["api", "worker-1", "worker-2"]
    api, first, second = specs
    assert api.argv[1:] == ("-m", "cesar_api") and first.argv[1:3] == ("-m", "cesar_worker")
    assert api.env["CESAR_PORT"] == "5123" and api.env["PATH"] == "/bin"
    assert api.env[SUPERVISOR_PID_ENV] == str(os.getpid())
    assert "CUDA_VISIBLE_DEVICES" not in api.env
    assert (first.env["CUDA_VISIBLE_DEVICES"], second.env["CUDA_VISIBLE_DEVICES"]) == ("0", "1")
    assert (first.env["CESAR_THREADS"], first.env["CESAR_DEVICE"], first.env["CESAR_COMPUTE_TYPE"]) == (
        "1",
        "cuda",
        "float16",
    )


def test_the_workers_share_the_automatic_model_memory_budget() -> None:
    from cesar_worker.model_memory import auto_budget_bytes

    layout = Layout(workers=3, threads=1, device="cpu", compute_type="int8", worker_env=({}, {}, {}))
    shared = [
        spec.env.get("CESAR_WORKER_MODEL_MEMORY_MB") for spec in serve_module.child_specs(Settings(), layout)
    ]
    assert shared[1:] == [str(auto_budget_bytes(3) // 2**20)] * 3  # each worker its third of the half
    assert Settings(worker_model_memory_mb=int(shared[1] or 0)).worker_model_memory_mb > 0
    chosen = serve_module.child_specs(Settings(worker_model_memory_mb=900), layout)
    assert {spec.env["CESAR_WORKER_MODEL_MEMORY_MB"] for spec in chosen} == {"900"}


def test_workers_zero_plans_the_api_alone_without_looking_for_a_model() -> None:
    layout = serve_module.plan_serve_layout(Settings(workers="0", model="no-such-model"))
    assert layout.workers == 0
    assert len(serve_module.child_specs(Settings(), layout)) == 1


def test_serve_on_this_machine_plans_one_worker_per_core() -> None:
    layout = serve_module.plan_serve_layout(Settings(device="cpu"))
    assert layout.workers >= 1 and layout.threads == 1
    assert layout.describe().endswith("cpu int8, tiny.en")


def test_workers_are_sized_for_the_largest_model_a_client_may_ask_for(tmp_path: Path) -> None:
    from cesar.supervisor.layout import FAMILY_BYTES
    from cesar.supervisor.serve import largest_allowed_model_bytes

    default_dir = tmp_path / "tiny"
    default_dir.mkdir()
    (default_dir / "model.bin").write_bytes(b"x" * 1000)
    assert largest_allowed_model_bytes(Settings(), str(default_dir)) == 1000  # only the default model
    wide = Settings(models=["base.en", "large-v3"])
    assert largest_allowed_model_bytes(wide, str(default_dir)) == FAMILY_BYTES["large"]
