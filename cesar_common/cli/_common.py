"""Shared plumbing for CLI commands: one-line errors, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import click

from cesar_common.errors import CesarError, ClientError

if TYPE_CHECKING:
    from cesar_common.settings import Settings

EXIT_CLIENT_ERROR = 1  # bad input: file, options, model
EXIT_SERVER_ERROR = 2  # environment: database, device, internal
EXIT_INTERRUPTED = 130

# Choices shared by the commands. They mirror the Literal types in cesar_common.settings (a unit test keeps
# them equal); importing settings here would put pydantic-settings on every command's start-up path.
DEVICE_NAMES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = (
    "auto", "default", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16",
    "bfloat16", "float32",
)  # fmt: skip
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

device_option = click.option(
    "--device",
    envvar="CESAR_DEVICE",
    show_envvar=True,
    type=click.Choice(DEVICE_NAMES, case_sensitive=False),
    help="Where Whisper runs: auto uses CUDA when a GPU is visible, else the CPU. [default: auto]",
)
compute_type_option = click.option(
    "--compute-type",
    envvar="CESAR_COMPUTE_TYPE",
    show_envvar=True,
    type=click.Choice(COMPUTE_TYPES, case_sensitive=False),
    metavar="TYPE",
    help="CTranslate2 compute type: auto (int8 on CPU, float16 on CUDA), int8, int8_float16, "
    "int8_float32, int8_bfloat16, int16, float16, bfloat16, float32 or default (as the "
    "model was converted). [default: auto]",
)
batch_size_option = click.option(
    "--batch-size",
    envvar="CESAR_BATCH_SIZE",
    show_envvar=True,
    type=click.IntRange(min=0),
    help="30 s windows decoded at once (batched pipeline, needs VAD). 0: auto (always on CUDA; "
    "on CPU for files of 30 s or more, sized to free memory); 1: never batch.",
)
db_option = click.option(
    "--db",
    "database_url",
    envvar="CESAR_DATABASE_URL",
    show_envvar=True,
    metavar="URL",
    help="Job database: sqlite:///path/to/cesar.db or postgresql+psycopg://user@host/db. "
    "[default: a SQLite file in ~/.local/share/cesar]",
)
host_option = click.option(
    "--host",
    envvar="CESAR_HOST",
    show_envvar=True,
    metavar="ADDRESS",
    help="Address the API listens on. [default: 127.0.0.1, this machine only; 0.0.0.0 for every "
    "interface, then also set CESAR_API_KEY]",
)
port_option = click.option(
    "--port",
    envvar="CESAR_PORT",
    show_envvar=True,
    type=click.IntRange(0, 65535),
    help="Port the API listens on (0: any free port). [default: 5000]",
)
log_level_option = click.option(
    "--log-level",
    envvar="CESAR_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Log level (debug also logs every API request). [default: info]",
)


def settings_from(**overrides: object) -> Settings:
    """The settings with the given options on top; a bad value (option or variable) as one clear line."""
    from pydantic import ValidationError

    from cesar_common.errors import InvalidInputError
    from cesar_common.settings import get_settings

    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        errors = exc.errors()
        if not errors:
            raise InvalidInputError(f"invalid settings: {exc}") from None
        name = "_".join(str(part) for part in errors[0]["loc"]).upper()
        raise InvalidInputError(f"invalid settings: CESAR_{name}: {errors[0]['msg']}") from None


def fail(message: str, code: int = EXIT_CLIENT_ERROR) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def cli_errors(*, verbose: bool = False) -> Iterator[None]:
    """Turn Cesar errors and Ctrl-C into one line on stderr and an exit code (traceback only if verbose)."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except CesarError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        fail(str(exc), EXIT_CLIENT_ERROR if isinstance(exc, ClientError) else EXIT_SERVER_ERROR)
    except Exception as exc:  # an unexpected bug: still one line unless asked for more
        if verbose:
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (run with --verbose for details)", EXIT_SERVER_ERROR)


def with_cli_errors(verbose_param: str = "verbose") -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator form of :func:`cli_errors`, reading ``--verbose`` from the command's params."""

    def wrap(func: Callable[..., None]) -> Callable[..., None]:
        import functools

        @functools.wraps(func)
        def inner(*args: object, **kwargs: object) -> None:
            with cli_errors(verbose=bool(kwargs.get(verbose_param, False))):
                func(*args, **kwargs)

        return inner

    return wrap
