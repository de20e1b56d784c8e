"""What the client commands do (the Click layer only parses options)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cesar.remote.batch import Batch, Item, expand, plan_outputs, result_json, summary, write_atomically
from cesar.remote.client import EXIT_JOB_FAILED, EXIT_SERVER, RemoteAPI
from cesar_common.db.records import JobStatus
from cesar_common.errors import InvalidInputError
from cesar_common.exits import fail, one_line_errors
from cesar_common.job_options import DECODING_NAMES, OPTION_NAMES, check_options, options_from, parse_options
from cesar_common.settings import get_settings

__all__ = [
    "connected",
    "run_action",
    "run_health",
    "run_list",
    "run_show",
    "run_submit",
    "run_transcript",
    "sent_options",
]


@contextmanager
def connected(server: str | None, api_key: str | None, *, verbose: bool) -> Iterator[RemoteAPI]:
    """The server the settings name (``--server``, ``CESAR_SERVER``), with errors as one line."""
    with one_line_errors(verbose=verbose):
        settings = get_settings(server=server, api_key=api_key)
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        api = RemoteAPI(settings.server, key)
        try:
            yield api
        finally:
            api.close()


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# --- submit ----------------------------------------------------------------------------------------------
def sent_options(job: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The job fields a client command sends for its flags, refused here as the server would refuse each
    file, before anything is sent (the server reads the decoding options' text again, as it reads every
    client's)."""
    check_options(options_from(parse_options(job, flags=True), model=model or ""), flags=True)
    # a decoding flag left off is not sent (a server from before them takes the request as it did)
    options = {
        name: job[name]
        for name in OPTION_NAMES
        if job.get(name) is not None and not (name in DECODING_NAMES and job[name] is False)
    }
    if model:
        options["model"] = model
    return options


def run_submit(
    sources: tuple[str, ...],
    *,
    model: str | None,
    job: dict[str, Any],
    wait: bool,
    outputs: tuple[Path, ...],
    formats: tuple[str, ...],
    output_dir: Path | None,
    parallel: int,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
    live: bool,
    max_seconds: float | None,
) -> None:
    stderr = Console(stderr=True)
    with connected(server, api_key, verbose=verbose) as api:
        options = sent_options(job, model)
        found = expand(sources)
        options.update(_stream_options(found, live, max_seconds))
        items = plan_outputs(found, outputs, output_dir, formats)
        asked = {*formats, *(fmt for item in items for _path, fmt in item.outputs)}
        if wait and "rttm" in asked and not job.get("diarize"):
            raise InvalidInputError("rttm is the speaker turns: it needs --diarize")
        if not wait:
            for item in items:
                item.outputs = []

        def submitted(item: Item) -> None:
            if not as_json and not (wait and len(items) == 1 and not item.outputs):
                click.echo(f"{item.job_id}\t{item.source}")

        batch = Batch(
            api,
            items,
            options,
            print_format=formats[0] if formats else "txt",
            wait=wait,
            parallel=parallel,
            console=stderr,
            on_submitted=submitted,
        )
        batch.run()
    _report(items, wait=wait, as_json=as_json, stderr=stderr)


def _stream_options(sources: list[tuple[str, bool]], live: bool, max_seconds: float | None) -> dict[str, Any]:
    """The fields that make URLs live streams (``--live``): URLs only."""
    if max_seconds is not None and not live:
        raise InvalidInputError("--max-seconds is the length of a live stream: give it with --live")
    if not live:
        return {}
    files = [source for source, is_url in sources if not is_url]
    if files:
        raise InvalidInputError(
            f"--live takes URLs of live streams: {files[0]} is a file (send it without --live)"
        )
    return {"live": True} if max_seconds is None else {"live": True, "max_seconds": max_seconds}


def _report(items: list[Item], *, wait: bool, as_json: bool, stderr: Console) -> None:
    if as_json:
        _print_json([result_json(item) for item in items])
    else:
        for item in items:
            if item.text is not None:
                sys.stdout.write(item.text)
        if wait and len(items) > 1:
            stderr.print(summary(items))
    failures = [item for item in items if item.error is not None]
    for item in failures:
        click.echo(f"error: {item.name}: {item.error}", err=True)
    if failures:
        # the first failure by input order decides; a job that ended badly only if nothing worse happened
        codes = [item.error.exit_code for item in failures if item.error is not None]
        sys.exit(next((code for code in codes if code != EXIT_JOB_FAILED), codes[0]))


# --- one job, the list, health ----------------------------------------------------------------------------
def run_list(
    status: str | None, limit: int, *, server: str | None, api_key: str | None, as_json: bool, verbose: bool
) -> None:
    with connected(server, api_key, verbose=verbose) as api:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status.lower()
        jobs = api.json("GET", "/jobs", params=params)
    if as_json:
        _print_json(jobs)
        return
    rows = [
        (
            job["id"],
            job["status"],
            f"{100 * (job.get('progress') or 0):.0f}%",
            "" if job.get("duration") is None else f"{job['duration']:.1f}s",
            job["model"],
            job["created_at"][:19].replace("T", " "),
            job.get("audio_path") or "",
        )
        for job in jobs
    ]
    print_table(("JOB", "STATUS", "PROGRESS", "AUDIO", "MODEL", "CREATED", "FILE"), rows)


def print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Aligned columns on a terminal; tab-separated lines (whole values, for `cut` and `awk`) otherwise."""
    if not sys.stdout.isatty():
        for row in (header, *rows):
            click.echo("\t".join(row))
        return
    table = Table(box=None, pad_edge=False)
    for column in header:
        table.add_column(column, no_wrap=column != header[-1])
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def run_show(job_id: str, *, server: str | None, api_key: str | None, as_json: bool, verbose: bool) -> None:
    with connected(server, api_key, verbose=verbose) as api:
        job = api.json("GET", f"/jobs/{job_id}")
    if as_json:
        _print_json(job)
        return
    shown = ("id", "status", "progress", "queue_position", "audio_path", "model", "duration",
             "detected_language", "created_at", "started_at", "completed_at", "attempts", "error_code",
             "error_message")  # fmt: skip
    for name in shown:
        if job.get(name) is not None:
            click.echo(f"{name:<18} {job[name]}")


def run_action(
    action: str, job_id: str, *, server: str | None, api_key: str | None, as_json: bool, verbose: bool
) -> None:
    with connected(server, api_key, verbose=verbose) as api:
        if action == "cancel":
            job = api.json("POST", f"/jobs/{job_id}/cancel")
            message = f"{job_id}: {job['status']}" + (
                " (stops between segments)" if job["status"] == JobStatus.PROCESSING else ""
            )
        else:
            api.request("DELETE", f"/jobs/{job_id}")
            job, message = {"id": job_id, "deleted": True}, f"{job_id}: deleted"
    if as_json:
        _print_json(job)
    else:
        click.echo(message)


def run_transcript(
    job_id: str, fmt: str, output: Path | None, *, server: str | None, api_key: str | None, verbose: bool
) -> None:
    with connected(server, api_key, verbose=verbose) as api:
        text = api.transcript(job_id, fmt)
        if output is None:
            sys.stdout.write(text)
        else:
            write_atomically(output, text)


def _worker_line(worker: dict[str, Any]) -> str:
    """A worker of ``/health`` in one line: its id, the models it holds (MiB) and its memory."""
    models = ", ".join(
        f"{model.get('name')} ({size} MiB)"
        if (size := model.get("measured_mb") or model.get("estimated_mb"))
        else str(model.get("name"))
        for model in worker.get("models") or []
    )
    line = f"{worker.get('id')}: {models or 'no model loaded'}"
    if worker.get("memory_budget_mb") is not None:
        line += f"; budget {worker['memory_budget_mb']} MiB, resident {worker.get('rss_mb')} MiB"
    return line


def run_health(*, server: str | None, api_key: str | None, as_json: bool, verbose: bool) -> None:
    with connected(server, api_key, verbose=verbose) as api:
        response = api.request("GET", "/health", answers=frozenset({503}))  # its body says what is wrong
        health = response.json()
    if as_json:
        _print_json(health)
    else:
        database, workers = health.get("database") or {}, health.get("workers") or {}
        click.echo(f"status     {health.get('status')}")
        reachable = "reachable" if database.get("reachable") else "unreachable"
        click.echo(f"database   {database.get('backend')}, {reachable}")
        click.echo(f"workers    {workers.get('count', 0)} alive")
        for worker in workers.get("workers") or []:
            click.echo(f"  {_worker_line(worker)}")
        queue = health.get("queue") or {}
        if queue:
            click.echo("queue      " + ", ".join(f"{name} {count}" for name, count in queue.items()))
    if response.status_code == 503:
        fail("the server is unavailable (503): its database cannot be reached", EXIT_SERVER)
