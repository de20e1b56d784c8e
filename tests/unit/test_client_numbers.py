"""Every number from outside is read by one strict parser (``cesar_common.text.plain_number``): ASCII digits,
bounded length. ``str.isdigit()`` passes ``²`` (``int()`` raises) and ``int()`` raises past 4,300 digits, so
each reader below once turned a hostile value into an exception rather than a refusal."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from webhook_recipe import verify as recipe_verify

from cesar.cli import cli
from cesar.purge import parse_duration
from cesar.supervisor.layout import parse_workers
from cesar_api.access import SERVER_KEY, KeyRing
from cesar_api.event_hub import Position
from cesar_common.errors import ClientError, InvalidInputError, PayloadTooLargeError
from cesar_common.parentwatch import SUPERVISOR_PID_ENV, supervisor_pid
from cesar_common.settings import Settings
from cesar_common.text import MAX_NUMBER_DIGITS, plain_number
from cesar_worker import download
from cesar_worker.webhooks import retry_after_seconds, signature_header, verify_signature
from cesar_worker.worker import remove_orphaned_temp_dirs

#: what no reader may take for a number, and none may raise on
HOSTILE = [
    "9" * 5000,
    "9" * (MAX_NUMBER_DIGITS + 1),
    "\xb2",  # "²": isdigit() says yes, int() raises
    "\u0663",  # "٣": int() reads 3
    "1\xb2",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1_0",
    "0x10",
    "1e9",
    "1.5",
    "",
]
#: those a header can carry (HTTP trims a header's value, and so do the readers of headers)
HOSTILE_HEADERS = [value for value in HOSTILE if value and value == value.strip()]


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_number_refuses_anything_but_a_few_ascii_digits(text: str) -> None:
    assert plain_number(text) is None


def test_plain_number_reads_plain_digits() -> None:
    assert plain_number("0") == 0
    assert plain_number("007") == 7
    largest = "9" * MAX_NUMBER_DIGITS
    assert plain_number(largest) == int(largest) < 2**63  # what both databases store
    assert plain_number("12345", max_digits=4) is None


def _ring(key: str) -> KeyRing:
    """A key ring of the server's own key alone (no database read: its cookies need none)."""
    return KeyRing(None, Settings(api_key=key))  # type: ignore[arg-type]


@pytest.mark.parametrize("expiry", HOSTILE)
def test_a_session_cookie_with_a_hostile_expiry_is_invalid(expiry: str) -> None:
    assert _ring("key").session_caller(f"{expiry}..signature") is None
    assert _ring("key").session_caller(expiry) is None


def test_a_session_cookie_stays_valid_until_it_expires_and_its_signature_counts() -> None:
    token = _ring("key").session_token(SERVER_KEY, now=1_000)
    assert token is not None
    assert _ring("key").session_caller(token, now=1_000) is SERVER_KEY
    assert _ring("other").session_caller(token, now=1_000) is None
    assert _ring("key").session_caller(token, now=time.time()) is None  # long expired
    expiry, _, _signature = token.partition(".")
    assert _ring("key").session_caller(f"{expiry}..\xe9", now=1_000) is None  # non-ASCII: None, no TypeError


@pytest.mark.parametrize(
    "bad", [f"{number}.1" for number in HOSTILE_HEADERS] + ["1.\xb2", "1", "1.", ".5", "1.2.3", "."]
)
def test_a_hostile_last_event_id_is_a_client_error(bad: str) -> None:
    with pytest.raises(ClientError, match="Last-Event-ID is not an id this stream sent"):
        Position.parse(bad)


def test_a_last_event_id_names_a_position() -> None:
    assert Position.parse(None) is None
    assert Position.parse("") is None
    assert Position.parse("  ") is None
    assert Position.parse("2.15") == Position(2, 15)
    assert Position.parse(" 2.15 ") == Position(2, 15)


@pytest.mark.parametrize("value", HOSTILE_HEADERS)
def test_a_hostile_retry_after_is_ignored(value: str) -> None:
    assert retry_after_seconds(value) is None


def test_retry_after_reads_plain_seconds() -> None:
    assert retry_after_seconds(" 120 ") == 120
    assert retry_after_seconds("0") == 0


@pytest.mark.parametrize("verify", [verify_signature, recipe_verify], ids=["helper", "recipe"])
@pytest.mark.parametrize("timestamp", HOSTILE)
def test_a_hostile_signature_timestamp_fails_verification(
    verify: Callable[..., bool], timestamp: str
) -> None:
    assert not verify("secret", f"t={timestamp},v1=00", b"{}")


@pytest.mark.parametrize("verify", [verify_signature, recipe_verify], ids=["helper", "recipe"])
def test_a_non_ascii_signature_fails_verification(verify: Callable[..., bool]) -> None:
    header = signature_header("secret", b"{}")
    assert verify("secret", header, b"{}")
    assert not verify("secret", header.split("v1=")[0] + "v1=\xe9", b"{}")  # False, not a TypeError


@pytest.mark.parametrize("declared", ["9" * 5000, "\xb2", "-1", "1e9"])
def test_a_hostile_content_length_is_not_trusted_and_the_count_still_caps(declared: str) -> None:
    def response(size: int) -> httpx.Response:
        headers = {"content-length": declared.encode("latin-1")}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"x" * size))

    out = io.BytesIO()
    assert download._save(response(10), out, max_bytes=100, host="example") == 10
    with pytest.raises(PayloadTooLargeError):
        download._save(response(200), io.BytesIO(), max_bytes=100, host="example")


def test_temp_dirs_with_hostile_pids_are_left_alone(tmp_path: Path) -> None:
    for pid in ("\xb2", "9" * 5000, "99999999999999", "-1"):
        (tmp_path / f"cesar-job-{pid}-abc"[:200]).mkdir()
    assert remove_orphaned_temp_dirs(tmp_path) == 0
    assert len(list(tmp_path.iterdir())) == 4


def test_hostile_worker_counts_and_supervisor_pids() -> None:
    for bad in ("\xb2", "9" * 5000, "-1", "1_0"):
        with pytest.raises(InvalidInputError, match="--workers must be 'auto' or a number"):
            parse_workers(bad)
        assert supervisor_pid({SUPERVISOR_PID_ENV: bad}) is None
    assert parse_workers(" 2 ") == 2 and parse_workers("auto") is None
    assert supervisor_pid({SUPERVISOR_PID_ENV: "123"}) == 123


def test_a_purge_age_takes_ascii_digits_only() -> None:
    assert parse_duration("2d") == 2 * 86400
    with pytest.raises(InvalidInputError, match="invalid duration"):
        parse_duration("\u0663d")  # "٣d": a regular expression's \d matches it unless told ASCII


def test_a_hostile_workers_option_is_a_usage_error_not_a_traceback() -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", "\xb2"])
    assert result.exit_code == 1 and "is not 'auto' or a number of workers" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
