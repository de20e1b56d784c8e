"""The API of the integration tests: one running in this process per test module and backend (a module
that needs other settings overrides ``api``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import BACKENDS, Api, module_database, running_api


@pytest.fixture(scope="module", params=BACKENDS)
def api_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with module_database(request, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def api(api_db: str) -> Iterator[Api]:
    with running_api(api_db) as running:
        yield running
