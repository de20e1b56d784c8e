"""How a Cesar process ends on an error: one line on stderr and an exit code, never a traceback by default.

Shared by the ``cesar`` command line and by the processes ``cesar serve`` starts by module name
(``python -m cesar_api``, ``python -m cesar_worker``), which run without the command line.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from cesar_common.errors import CesarError, ClientError

__all__ = [
    "EXIT_CLIENT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SERVER_ERROR",
    "fail",
    "one_line_errors",
    "refuse_arguments",
]

EXIT_OK = 0
EXIT_CLIENT_ERROR = 1  # bad input: file, options (Click's usage errors too: see cesar.cli), model
EXIT_SERVER_ERROR = 2  # environment: database, device, internal
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_CLIENT_ERROR) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def refuse_arguments(module: str, command: str) -> None:
    """``python -m <module>`` runs as ``cesar serve`` starts it, from ``CESAR_*`` variables alone."""
    if len(sys.argv) > 1:
        fail(f"python -m {module} takes no arguments: it reads CESAR_* variables (see `{command} --help`)")


def exit_code_for(exc: CesarError) -> int:
    """An error's own ``exit_code`` (the client commands' errors carry one), else by its kind."""
    own = getattr(exc, "exit_code", None)
    if isinstance(own, int):
        return own
    return EXIT_CLIENT_ERROR if isinstance(exc, ClientError) else EXIT_SERVER_ERROR


@contextmanager
def one_line_errors(*, verbose: bool = False) -> Iterator[None]:
    """Turn Cesar errors and Ctrl-C into one line on stderr and an exit code (a traceback only if verbose)."""
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    except CesarError as exc:
        if verbose:
            traceback.print_exc()
        fail(exc.describe(), exit_code_for(exc))
    except Exception as exc:  # an unexpected bug: still one line unless asked for more
        if verbose:
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (run with --verbose for details)", EXIT_SERVER_ERROR)
