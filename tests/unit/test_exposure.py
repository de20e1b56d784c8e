"""A server with no key refuses to listen beyond loopback unless told --insecure (issue 31)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from cesar.cli import cli
from cesar.supervisor.children import Child
from cesar_common.db.store import JobStore
from cesar_common.errors import ClientError
from cesar_common.exposure import Exposure, check_exposure, keys_in_use
from cesar_common.settings import Settings, reset_settings_cache

LOOPBACK = ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]
BEYOND = ["0.0.0.0", "::", "192.168.1.20", "cesar.example"]


def decide(host: str, *, env_key: bool = False, db_key: bool = False, insecure: bool = False) -> Exposure:
    settings = Settings(host=host, api_key=SecretStr("k") if env_key else None, insecure=insecure)
    return check_exposure(settings, lambda: db_key)


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_serves_with_or_without_a_key(host: str, insecure: bool) -> None:
    assert decide(host, insecure=insecure) is Exposure.LOOPBACK
    assert decide(host, env_key=True, insecure=insecure) is Exposure.KEYED


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("host", BEYOND)
def test_beyond_loopback_a_key_in_the_environment_or_the_database_serves(host: str, insecure: bool) -> None:
    assert decide(host, env_key=True, insecure=insecure) is Exposure.KEYED
    assert decide(host, db_key=True, insecure=insecure) is Exposure.KEYED


@pytest.mark.parametrize("host", BEYOND)
def test_beyond_loopback_no_key_refuses_in_one_line_unless_insecure(host: str) -> None:
    with pytest.raises(ClientError) as refused:
        decide(host)
    message = refused.value.describe()
    assert "\n" not in message and host in message
    assert "CESAR_API_KEY" in message and "cesar keys create NAME --admin" in message
    assert "--insecure" in message and "CESAR_INSECURE=true" in message
    assert decide(host, insecure=True) is Exposure.OPEN


def test_the_database_is_asked_only_when_the_settings_do_not_decide() -> None:
    def ask() -> bool:
        raise AssertionError("the database was asked")

    assert check_exposure(Settings(host="0.0.0.0", api_key=SecretStr("k")), ask) is Exposure.KEYED
    assert check_exposure(Settings(host="127.0.0.1"), ask) is Exposure.LOOPBACK


def test_a_key_once_made_keeps_the_server_closed(sqlite_url: str) -> None:
    store = JobStore.from_url(sqlite_url)
    try:
        assert not keys_in_use(store)
        store.create_key("alice")
        assert keys_in_use(store)
        store.revoke_key("alice", cancel_jobs=False)
        assert keys_in_use(store)  # revoking the last key locks the server: it does not open it
    finally:
        store.close()


@pytest.fixture
def no_children(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    started: list[str] = []

    def start(self: Child) -> None:
        started.append(self.name)
        raise AssertionError("serve started a child")

    monkeypatch.setattr(Child, "start", start)
    return started


@pytest.fixture
def port() -> Iterator[int]:
    reset_settings_cache()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = int(sock.getsockname()[1])
    yield free
    reset_settings_cache()


def test_serve_on_every_interface_without_a_key_is_one_line_and_starts_nothing(
    sqlite_url: str, port: int, no_children: list[str]
) -> None:
    argv = ["serve", "--host", "0.0.0.0", "--port", str(port), "--db", sqlite_url, "--workers", "0"]
    result = CliRunner().invoke(cli, argv, env={"CESAR_API_KEY": None, "CESAR_INSECURE": None})
    assert result.exit_code == 1
    *logged, refusal = result.stderr.splitlines()  # after serve's log line of the database's revision
    assert refusal.startswith("error: refusing to listen on 0.0.0.0 with no API key")
    assert all(" INFO " in line for line in logged), logged  # no traceback
    assert result.stdout == "" and no_children == []
