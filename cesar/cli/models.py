"""`cesar models`: the models this machine has, and adding them without internet."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from cesar.cli.options import COMMAND_SETTINGS, option, verbose_option
from cesar_common.exits import one_line_errors

__all__ = ["models"]

models_dir_option = option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The models directory. [default: ~/.local/share/cesar/models]",
)


@click.group(context_settings=COMMAND_SETTINGS)
def models() -> None:
    """The models on this machine: list, pull from the Hub, import from a directory or archive, remove."""


@models.command("list", context_settings=COMMAND_SETTINGS)
@models_dir_option
@option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@verbose_option("Show a traceback on failure.")
def list_command(models_dir: Path | None, as_json: bool, verbose: bool) -> None:
    """The allowed models (CESAR_MODEL, CESAR_MODELS) and those in the models directory: which are on
    this machine, where, and their size. What imports or pulls that did not finish left behind is removed,
    and said (on stderr)."""
    with one_line_errors(verbose=verbose):
        from cesar.model_admin import list_entries, removed_lines, table

        entries, removed = list_entries(models_dir)
        for line in removed_lines(removed):
            click.echo(line, err=True)
        click.echo(json.dumps([asdict(entry) for entry in entries], indent=2) if as_json else table(entries))


@models.command(context_settings=COMMAND_SETTINGS)
@click.argument("name")
@models_dir_option
@verbose_option("Show a traceback on failure.")
def pull(name: str, models_dir: Path | None, verbose: bool) -> None:
    """Download NAME (tiny.en, small, large-v3, ... or a Hub repo id owner/name) into the models
    directory. Offline, it says how to import the model instead."""
    with one_line_errors(verbose=verbose):
        from cesar.model_admin import pull_into, removed_lines

        stored, removed = pull_into(name, models_dir)
        for line in removed_lines(removed):
            click.echo(line, err=True)
        click.echo(f"{name}: {stored}")


@models.command("import", context_settings=COMMAND_SETTINGS)
@click.argument("path", type=click.Path(path_type=Path))
@option("--name", help="The name to use it by (--model NAME, the API's model field). [default: PATH's name]")
@models_dir_option
@verbose_option("Show a traceback on failure.")
def import_command(path: Path, name: str | None, models_dir: Path | None, verbose: bool) -> None:
    """Copy a CTranslate2 Whisper model directory, or a .tar.gz of one, into the models directory.

    The files are checked first (model.bin, config.json, tokenizer.json, a vocabulary), and an import of
    more than CESAR_MAX_MODEL_IMPORT_GB is refused. For the API to accept the name, add it to CESAR_MODELS.
    """
    with one_line_errors(verbose=verbose):
        from cesar.model_admin import import_into, removed_lines

        stored, chosen, removed = import_into(path, name, models_dir)
        for line in removed_lines(removed):
            click.echo(line, err=True)
        click.echo(f"imported {chosen}: {stored} (use it with --model {chosen})")


@models.command(context_settings=COMMAND_SETTINGS)
@click.argument("name")
@models_dir_option
@verbose_option("Show a traceback on failure.")
def remove(name: str, models_dir: Path | None, verbose: bool) -> None:
    """Delete the model NAME from the models directory."""
    with one_line_errors(verbose=verbose):
        from cesar.model_admin import remove_from

        click.echo(f"removed {name}: {remove_from(name, models_dir)}")
