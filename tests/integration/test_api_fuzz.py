"""Property-based fuzzing of the OpenAPI document against the app (schemathesis): never a 500.

Every operation gets generated requests, valid ones and invalid ones, and every response must be a
documented status with a body matching its schema. The app runs in process (ASGI) on a real database
holding jobs in each state, so the id routes also meet real jobs. Host names are not resolved (no DNS in
a test): a name resolves to a fixed public address, so valid URL jobs are accepted. There is no worker:
the compatible routes, which answer when their job ends, see every job they queue cancelled at once.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import pkgutil
import threading
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from api_helpers import BACKENDS, completed_job, module_database, processing_job, url_job
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from cesar_api.app import create_app
from cesar_common import urlpolicy
from cesar_common.db.records import JobStatus
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings

POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_schema_conformance]  # fmt: skip
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, negative_data_rejection]
TAKES_NO_INPUT = {
    "GET /health",
    "GET /health/live",
    "GET /metrics",
    "POST /session",
    "DELETE /session",
    "GET /v1/models",
    "GET /speakers",
    "GET /keys",
    "GET /keys/me",
}  # nothing to make invalid
#: a job's event stream only ends with the job: it is fuzzed on the finished job (and unknown ids), without
#: following the transcript's revisions (then it stays open)
FOLLOWS_JOB = "GET /jobs/{job_id}/events"
#: the server's own key, sent with every request: an admin, as every caller of an open server is (a key that
#: POST /keys makes would close an open server to every request after it)
SERVER_KEY = "fuzz-server-key"
#: ``/keys/me`` is a route of its own (the caller's key): no key is named ``me``
KEY_ME = "me"
#: examples per operation: (positive, negative); PostgreSQL gets fewer (same code, slower round trips)
EXAMPLES = {"sqlite": (20, 12), "postgres": (10, 6)}


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with module_database(request, tmp_path_factory) as url:
        yield url


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urlpolicy, "resolve_host", lambda host, port: [ipaddress.ip_address("93.184.215.14")])


def run_operation(operation: Any, strategy: Any, mode: GenerationMode, examples: int) -> None:
    checks = POSITIVE_CHECKS if mode is GenerationMode.POSITIVE else NEGATIVE_CHECKS

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=checks, headers={"Authorization": f"Bearer {SERVER_KEY}"})

    check()


@contextlib.contextmanager
def cancelling_new_jobs(store: JobStore, keep: set[str]) -> Iterator[None]:
    """Cancel each queued job but those in ``keep`` as it appears (the compatible routes then answer)."""
    stop = threading.Event()

    def cancel() -> None:
        while not stop.wait(0.02):
            for job in store.list_jobs(status=JobStatus.QUEUED).jobs:
                if job.id not in keep:
                    store.request_cancel(job.id)

    thread = threading.Thread(target=cancel, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def import_the_product() -> None:
    """Import every module of Cesar's packages. Hypothesis draws constants from the local modules imported so
    far; with all of them imported, what it generates no longer depends on which tests ran before in this
    process (under xdist, on which files shared the worker)."""
    import cesar
    import cesar_api
    import cesar_common
    import cesar_worker

    for package in (cesar, cesar_api, cesar_common, cesar_worker):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)


@pytest.mark.usefixtures("no_dns")
def test_fuzz_every_operation(fuzz_db: str) -> None:
    import_the_product()
    backend = "sqlite" if fuzz_db.startswith("sqlite") else "postgres"
    store = JobStore.from_url(fuzz_db)
    finished = completed_job(store).id
    ids = [finished, processing_job(store).id, url_job(store).id]
    app = create_app(Settings(database_url=fuzz_db, max_upload_mb=2, api_key=SERVER_KEY), store)
    schema = schemathesis.openapi.from_asgi("/docs/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # GET /jobs/{job_id}/audio (issue 28) included; issue 30's voice library (7) and corrections (2); issue
    # 31's keys (6)
    assert len(operations) == 36
    positive, negative = EXAMPLES[backend]
    with cancelling_new_jobs(store, keep=set(ids)):
        fuzz(operations, positive, negative, finished, ids)
    store.close()


def fuzz(operations: list[Any], positive: int, negative: int, finished: str, ids: list[str]) -> None:
    for operation in operations:
        for mode, examples in ((GenerationMode.POSITIVE, positive), (GenerationMode.NEGATIVE, negative)):
            if mode is GenerationMode.NEGATIVE and operation.label in TAKES_NO_INPUT:
                continue
            strategies = [operation.as_strategy(generation_mode=mode)]
            if "{job_id}" in operation.path and mode is GenerationMode.POSITIVE:
                follows = operation.label == FOLLOWS_JOB
                strategies += [
                    operation.as_strategy(
                        generation_mode=mode,
                        path_parameters={"job_id": job_id},
                        query={"revisions": False} if follows else None,
                    )
                    for job_id in ([finished] if follows else ids)
                ]
            strategy = st.one_of(strategies)
            if "{key_id}" in operation.path:
                strategy = strategy.filter(lambda case: case.path_parameters.get("key_id") != KEY_ME)
            run_operation(operation, strategy, mode, examples)
