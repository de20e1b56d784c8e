"""The layers hold at run time, not only in the import graph `lint-imports` checks: each entry point, imported
in a fresh interpreter, loads nothing it must not."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import cesar_common

WHISPER = {"faster_whisper", "ctranslate2"}
WEB = {"litestar", "uvicorn"}
ABOVE_THE_BASE = {"cesar", "cesar_api", "cesar_worker"}


def loaded_after(*modules: str) -> set[str]:
    """The top-level packages in sys.modules after importing ``modules`` in a new interpreter."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("entry", "forbidden"),
    [
        ("cesar_api.__main__", WHISPER),  # python -m cesar_api
        ("cesar_api.app", WHISPER),
        ("cesar_api.server", WHISPER),
        ("cesar_worker.__main__", WEB),  # python -m cesar_worker
        ("cesar_worker.worker", WEB),
        ("cesar.cli", WHISPER | WEB | {"sqlalchemy", "pydantic"}),  # `cesar --help` stays fast
    ],
)
def test_an_entry_point_loads_nothing_it_must_not(entry: str, forbidden: set[str]) -> None:
    assert loaded_after(entry) & forbidden == set()


def test_the_base_never_loads_the_layers_above_it() -> None:
    modules = [
        info.name
        for info in pkgutil.walk_packages(cesar_common.__path__, "cesar_common.")
        if not info.name.startswith("cesar_common.db.migrations")  # Alembic's scripts, not modules
    ]
    assert len(modules) > 20
    assert loaded_after(*modules) & ABOVE_THE_BASE == set()


def test_the_product_imports_nothing_from_its_tests_or_benchmarks() -> None:
    """Test and benchmark helpers are imported by bare names (``dbtools``, ``serving``): the import
    contracts name the packages, this looks at where each module the product imports comes from."""
    import importlib.util
    from pathlib import Path

    import grimp

    root = Path(cesar_common.__file__).resolve().parents[1]
    outside = [root / "tests", root / "bench"]
    graph = grimp.build_graph(
        "cesar", "cesar_common", "cesar_api", "cesar_worker", include_external_packages=True
    )
    imported = {module.split(".")[0] for module in graph.modules}
    found = []
    for name in sorted(imported):
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is not None and any(origin.is_relative_to(place) for place in outside):
            found.append(name)
    assert found == []
