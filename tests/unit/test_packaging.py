"""The wheel holds every package of the source tree (setuptools' list is written by hand)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = ("cesar", "cesar_common", "cesar_api", "cesar_worker")


def test_every_package_in_the_tree_is_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in TOP
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    mapped = tuple(config["package-dir"])  # the migrations, from the repository's migrations/
    assert {name for name in listed - found if not name.startswith(mapped)} == set(), "not in the tree"
