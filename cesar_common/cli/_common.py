"""Shared plumbing for CLI commands: one-line errors, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import click

from cesar_common.errors import CesarError, ClientError

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
    help="auto: CUDA when a GPU is visible, else CPU.",
)
compute_type_option = click.option(
    "--compute-type",
    envvar="CESAR_COMPUTE_TYPE",
    show_envvar=True,
    type=click.Choice(COMPUTE_TYPES, case_sensitive=False),
    help="auto: float16 on CUDA, int8 on CPU.",
)


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
