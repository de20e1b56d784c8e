"""Options several commands share, each defined once, and the job options, generated from their declaration.

Every option reads the ``CESAR_`` variable of its name (``--log-level``: ``CESAR_LOG_LEVEL``): each command
sets ``auto_envvar_prefix`` to ``CESAR`` (:data:`COMMAND_SETTINGS`), and :func:`option` shows the variable in
``--help``. The choice lists come from :mod:`cesar_common.choices`, the job options (language, task, ...)
from :mod:`cesar_common.job_options`: nothing here repeats them.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import click

from cesar_common.choices import COMPUTE_TYPES, DEVICES, LOG_LEVELS
from cesar_common.job_options import (
    OptionSpec,
    TranscribeOptions,
    check_options,
    cli_flag,
    default_text,
    option_specs,
    options_from,
    parse_options,
)

__all__ = [
    "COMMAND_SETTINGS",
    "batch_size_option",
    "compute_type_option",
    "db_option",
    "device_option",
    "host_option",
    "insecure_option",
    "job_options",
    "job_options_from",
    "log_level_option",
    "option",
    "port_option",
    "verbose_option",
]

#: ``context_settings`` of every command: options read ``CESAR_<NAME>`` (not ``CESAR_<COMMAND>_<NAME>``)
COMMAND_SETTINGS: dict[str, Any] = {"auto_envvar_prefix": "CESAR"}

F = TypeVar("F", bound=Callable[..., Any])


def option(*param_decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` that shows its environment variable in ``--help``."""
    attrs.setdefault("show_envvar", True)
    return click.option(*param_decls, **attrs)


device_option = option(
    "--device",
    type=click.Choice(DEVICES, case_sensitive=False),
    help="Where Whisper runs: auto uses CUDA when a GPU is visible, else the CPU. [default: auto]",
)
compute_type_option = option(
    "--compute-type",
    type=click.Choice(COMPUTE_TYPES, case_sensitive=False),
    metavar="TYPE",
    help="CTranslate2 compute type: auto (int8 on CPU, float16 on CUDA), int8, int8_float16, "
    "int8_float32, int8_bfloat16, int16, float16, bfloat16, float32 or default (as the "
    "model was converted). [default: auto]",
)
batch_size_option = option(
    "--batch-size",
    type=click.IntRange(min=0),
    help="30 s windows decoded at once (batched pipeline, needs VAD). 0: auto (16 on CUDA, 4 on CPU, "
    "fewer when memory is short); 1: never batch (sequential decoding).",
)
db_option = option(
    "--db",
    "database_url",
    metavar="URL",
    help="Job database: sqlite:///path/to/cesar.db or postgresql+psycopg://user@host/db. "
    "[default: a SQLite file in ~/.local/share/cesar]",
)
host_option = option(
    "--host",
    metavar="ADDRESS",
    help="Address the API listens on. [default: 127.0.0.1, this machine only; 0.0.0.0 for every "
    "interface, then also set CESAR_API_KEY or create a key: see --insecure]",
)
insecure_option = option(
    "--insecure",
    is_flag=True,
    default=False,
    help="Serve with no key at all (no CESAR_API_KEY, no active key in the database) on an address "
    "beyond loopback, open to anyone who reaches it; without it such a server refuses to start.",
)
port_option = option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port the API listens on (0: any free port). [default: 5000]",
)


def log_level_option(debug_adds: str) -> Callable[[F], F]:
    """``--log-level``; ``debug_adds`` says what debug shows beside info in this command."""
    return option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        help=f"Log level (debug also logs {debug_adds}). [default: info]",
    )


def verbose_option(help_text: str) -> Callable[[F], F]:
    return option("-v", "--verbose", is_flag=True, default=False, help=help_text)


# --- job options -------------------------------------------------------------------------------------
def job_options(func: F) -> F:
    """Add an option for each job option but the model (each command words its own ``--model``)."""
    for spec in reversed(option_specs()):
        if spec.name != "model":
            func = _job_option(spec)(func)
    return func


def job_options_from(params: Mapping[str, Any], *, model: str) -> TranscribeOptions:
    """The job options a command's parameters (from :func:`job_options`) ask for; an InvalidInputError
    naming the flag of a decoding option that is refused, or the flags of options that contradict each
    other (:func:`~cesar_common.job_options.check_options`)."""
    return check_options(options_from(parse_options(params, flags=True), model=model), flags=True)


def _job_option(spec: OptionSpec) -> Callable[[F], F]:
    flag = cli_flag(spec.name)
    help_text = spec.doc.description.replace("`", "")
    if spec.annotation is bool:
        if spec.default:  # on unless turned off: --vad/--no-vad
            return option(
                f"{flag}/--no-{spec.name.replace('_', '-')}", spec.name, default=True, help=help_text
            )
        return option(*spec.doc.flags, flag, spec.name, is_flag=True, default=False, help=help_text)
    if spec.decoding:  # read as text, then by the one check of every door (job_options_from)
        return option(
            flag,
            spec.name,
            metavar=_metavar(spec),
            default=None,
            help=f"{help_text} [default: {default_text(spec)}]",
        )
    if typing.get_origin(spec.annotation) is Literal:
        choices = click.Choice(typing.get_args(spec.annotation), case_sensitive=False)
        return option(
            *spec.doc.flags,
            flag,
            spec.name,
            type=choices,
            default=spec.default,
            show_default=True,
            help=help_text,
        )
    if spec.annotation == int | None:
        low, high = spec.doc.ge, spec.doc.le
        numbers = click.IntRange(None if low is None else int(low), None if high is None else int(high))
        return option(*spec.doc.flags, flag, spec.name, type=numbers, metavar="N", help=help_text)
    return option(*spec.doc.flags, flag, spec.name, metavar="TEXT", default=spec.default, help=help_text)


def _metavar(spec: OptionSpec) -> str:
    if typing.get_origin(spec.annotation) is tuple:
        return "N,N,..."
    if spec.annotation in (int, int | None):
        return "N"
    return "TEXT" if spec.annotation in (str, str | None) else "NUMBER"
