"""`cesar serve`: upgrade the database, start the API and the workers, keep them running, stop them cleanly.

Database: serve runs Alembic's ``upgrade head`` itself, for SQLite under a file lock beside the database (so
two serves on one file cannot race). It does the same for PostgreSQL, which is what a single-host deployment
wants; where several hosts deploy at once, run ``cesar db upgrade`` once as the release step and start serve
with ``--no-migrate``, which only checks the schema is current.

Children: ``python -m cesar_api`` and N x ``python -m cesar_worker``, configured entirely through
``CESAR_*`` environment variables written from serve's own settings, each in its own process group (a
terminal's Ctrl-C reaches serve alone, which then stops them in order) and with PR_SET_PDEATHSIG, so they
get SIGTERM if serve dies; ``CESAR_SUPERVISOR_PID`` lets them watch for that too
(:mod:`cesar_common.parentwatch`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from cesar.supervisor.children import Backoff, Child, ChildSpec
from cesar.supervisor.layout import Layout, machine_facts, model_bytes_for, parse_workers, plan_layout
from cesar.supervisor.ports import base_url, check_port, is_listening
from cesar.supervisor.supervise import Supervisor
from cesar_common.exits import EXIT_INTERRUPTED, EXIT_OK
from cesar_common.exposure import check_exposure, keys_in_use
from cesar_common.parentwatch import SUPERVISOR_PID_ENV
from cesar_common.settings import Settings
from cesar_common.signals import stop_on_signals
from cesar_worker.model_memory import auto_budget_bytes

__all__ = ["child_specs", "largest_allowed_model_bytes", "plan_serve_layout", "run_serve", "settings_env"]

logger = logging.getLogger("cesar.serve")

EXIT_FORCED = EXIT_INTERRUPTED

Echo = Callable[[str], None]


def run_serve(
    settings: Settings,
    *,
    migrate: bool = True,
    echo: Echo | None = None,
    backoff: Backoff | None = None,
) -> int:
    """Run the API and the workers until SIGINT/SIGTERM; the exit code (0, or 130 when forced).

    Raises a CesarError before anything starts (port taken, database unreachable, unknown model or device,
    no key beyond loopback: :func:`~cesar_common.exposure.check_exposure`)
    and when serve cannot go on (the port was taken from the API, a child keeps failing at start).
    """
    say = echo or _print
    settings = _with_concrete_port(settings)
    check_port(settings.host, settings.port)
    layout = plan_serve_layout(settings)  # before the database: no model, no migration
    prepare_database(settings.database_url, migrate=migrate)
    check_exposure(settings, lambda: _keys_in_use(settings.database_url))  # before anything listens
    check_object_store(settings)
    logger.info("layout: %s (%s)", layout.describe(), layout.reason)
    say(f"Starting {layout.describe()}" if layout.workers else "Starting the API alone (--workers 0)")

    url = base_url(settings.host, settings.port)

    def api_ready(first: bool) -> None:
        if first:
            say(f"Cesar API on {url} (docs: {url}/docs)")
        else:
            logger.info("the API is back on %s", url)

    supervisor = Supervisor(
        [Child(spec) for spec in child_specs(settings, layout)],
        backoff=backoff,
        api_ready=lambda: is_listening(settings.host, settings.port),
        on_api_ready=api_ready,
        # the API died: if someone else now holds its port, restarting cannot help
        on_api_exit=lambda code: check_port(settings.host, settings.port),
    )
    return supervise(supervisor, grace=settings.shutdown_grace_seconds)


def supervise(supervisor: Supervisor, *, grace: float) -> int:
    """Start the children and keep them running until a stop signal; then stop them (0, or 130 if forced)."""
    with stop_on_signals() as stop:
        try:
            try:
                supervisor.start_all()
                supervisor.run(stop)
            finally:
                clean = supervisor.shutdown(grace=grace)
        except KeyboardInterrupt:  # the second Ctrl-C (or SIGTERM): no more waiting
            supervisor.kill_all()
            logger.warning("stopped by force")
            return EXIT_FORCED
    logger.info("stopped" if clean else "stopped (some processes had to be killed)")
    return EXIT_OK


def prepare_database(url: str, *, migrate: bool) -> None:
    """Upgrade the schema to head (``migrate``), or only check it is there."""
    from cesar_common.db.connect import open_engine
    from cesar_common.db.migrate import ensure_schema_current, head_revision, upgrade_to_head

    # Alembic's INFO lines (plugins, dialect) say nothing a user needs; serve logs the outcome itself.
    if not logger.isEnabledFor(logging.DEBUG):
        logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = open_engine(url, pooled=False)  # serve's only use of the database
    try:
        if migrate:
            upgrade_to_head(engine)
            logger.info("database at revision %s", head_revision())
        else:
            ensure_schema_current(engine)
    finally:
        engine.dispose()


def check_object_store(settings: Settings) -> None:
    """With CESAR_BLOB_URL: ObjectStoreError (one line) unless the bucket takes a write, before any child
    starts (each checks again itself)."""
    from cesar_common.blob_store import open_blob_store

    blobs = open_blob_store(settings)
    if blobs is not None:
        try:
            blobs.check(write=True)
        finally:
            blobs.close()
        logger.info("audio is kept in %s at %s", blobs.url, blobs.endpoint)


def _keys_in_use(url: str) -> bool:
    from cesar_common.db.store import JobStore

    store = JobStore.from_url(url, pooled=False)
    try:
        return keys_in_use(store)
    finally:
        store.close()


def plan_serve_layout(settings: Settings) -> Layout:
    """The worker layout for these settings on this machine (checks the device and finds the model)."""
    common: dict[str, Any] = {
        "workers": settings.workers,
        "threads": settings.threads,
        "model": settings.model,
    }
    if parse_workers(settings.workers) == 0:
        return plan_layout(
            **common, device="cpu", cpu_count=1, available_memory=0, model_bytes=0, gpu_count=0
        )
    from cesar_common.transcription.loading import resolve_device, resolve_model

    device, compute_type = resolve_device(settings.device, settings.compute_type)
    # Resolved (downloaded, if need be) once here: a bad name fails now with one line, and N workers
    # do not download the same model side by side.
    model_dir = resolve_model(settings.model, offline=settings.offline, models_dir=settings.models_dir)
    facts = machine_facts(need_gpus=device == "cuda")
    return plan_layout(
        **common,
        device=device,
        compute_type=compute_type,
        cpu_count=facts.cpu_count,
        available_memory=facts.available_memory,
        model_bytes=largest_allowed_model_bytes(settings, model_dir),
        gpu_count=facts.gpu_count,
        gpu_ids=facts.gpu_ids,
    )


def largest_allowed_model_bytes(settings: Settings, default_dir: str) -> int:
    """What the largest model a client may ask for weighs: a worker must fit it in memory, since any job
    can load it. Models on disk are measured; names not downloaded yet count at their known size."""
    sizes = [model_bytes_for(settings.model, default_dir)]
    for name in settings.models:
        local = Path(name).expanduser()
        sizes.append(model_bytes_for(name, local if local.is_dir() else None))
    return max(sizes)


def child_specs(
    settings: Settings, layout: Layout, *, environ: Mapping[str, str] | None = None
) -> list[ChildSpec]:
    """The API and the workers, as commands and environments."""
    env = {
        **(os.environ if environ is None else environ),
        **settings_env(settings),
        SUPERVISOR_PID_ENV: str(os.getpid()),
        "PYTHONUNBUFFERED": "1",  # children's log lines appear as they happen
    }
    specs = [ChildSpec("api", (sys.executable, "-m", "cesar_api"), env, role="api")]
    # by module name, never by import; a worker started so loads its model before the first job
    worker_argv = (sys.executable, "-m", "cesar_worker")
    budget = settings.worker_model_memory_mb
    if budget == 0 and layout.workers:  # auto: the workers share the machine's half for models
        budget = max(1, auto_budget_bytes(layout.workers) // (1024 * 1024))
    for index in range(layout.workers):
        worker_env = {
            **env,
            "CESAR_WORKER_MODEL_MEMORY_MB": str(budget),
            "CESAR_THREADS": str(layout.threads),
            "CESAR_DEVICE": layout.device,
            "CESAR_COMPUTE_TYPE": layout.compute_type,
            **(layout.worker_env[index] if index < len(layout.worker_env) else {}),
        }
        specs.append(ChildSpec(f"worker-{index + 1}", worker_argv, worker_env))
    return specs


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the ``CESAR_*`` variable that reads back as the same value."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        env[f"CESAR_{name.upper()}"] = _env_value(value)
    return env


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):  # name=value pairs (CESAR_MODEL_ALIASES)
        return ",".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, str | int | float) or hasattr(value, "__fspath__"):
        return str(value)
    return json.dumps(value, default=str)  # pydantic-settings decodes complex fields from JSON


def _with_concrete_port(settings: Settings) -> Settings:
    """Port 0 means any free port: pick it here, so serve can say where the API is."""
    if settings.port != 0:
        return settings
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((settings.host, 0))
        port = sock.getsockname()[1]
    return settings.model_copy(update={"port": port})


def _print(line: str) -> None:
    print(line, flush=True)
