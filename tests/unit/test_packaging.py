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


def test_each_package_declares_its_modules_and_every_module_its_public_names() -> None:
    """A package's ``__all__`` lists exactly its modules and subpackages; every module has an ``__all__``
    (what the rest of Cesar may use of it), and it names only what the module defines or imports."""
    import ast

    for package in TOP:
        for init in sorted((ROOT / package).rglob("__init__.py")):
            folder = init.parent
            if folder.name == "webpage" or "migrations" in folder.parts:
                continue
            children = {
                path.stem for path in folder.glob("*.py") if path.stem not in ("__init__", "__main__")
            } | {path.parent.name for path in folder.glob("*/__init__.py")}
            declared = _all_of(init)
            assert declared is not None, f"{init} has no __all__"
            assert set(declared) - {"__version__"} >= children, (
                f"{init}: __all__ misses {children - set(declared)}"
            )
        for module in sorted((ROOT / package).rglob("*.py")):
            if module.name in ("__init__.py", "__main__.py") or "migrations" in module.parts:
                continue
            names = _all_of(module)
            assert names is not None, f"{module} has no __all__"
            tree = ast.parse(module.read_text())
            bound = {
                node.name
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign | ast.AnnAssign):
                    for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                        names_of = target.elts if isinstance(target, ast.Tuple) else [target]
                        bound |= {name.id for name in names_of if isinstance(name, ast.Name)}
                elif isinstance(node, ast.Import | ast.ImportFrom):
                    bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
            assert set(names) <= bound, (
                f"{module}: __all__ names {set(names) - bound}, which it does not define"
            )


def _all_of(path: Path) -> list[str] | None:
    import ast

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
        if (
            isinstance(node, ast.AugAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "__all__"
        ):
            continue
    return None
