"""Each package of the reference names its public surface in ``__all__``, and that list holds
only what the package really offers (httpx tests its exported members the same way)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import types
from pathlib import Path

import pytest

import reference

PACKAGES = sorted(
    m.name for m in pkgutil.walk_packages(reference.__path__, "reference.") if m.ispkg
)
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(reference.__path__, "reference.")
    if not m.ispkg and not m.name.endswith("__main__")  # __main__ runs the command line
)


def _packages() -> list[str]:
    return list(PACKAGES)


def _exported(name: str) -> list[str]:
    found = getattr(importlib.import_module(name), "__all__", None)
    assert isinstance(found, list), f"{name} has no __all__"
    return found


def test_every_package_is_found() -> None:
    assert {"reference.delivery", "reference.directory", "reference.mailbox"} <= set(PACKAGES)
    assert {"reference.spool", "reference.scan"} <= set(PACKAGES)


@pytest.mark.parametrize("name", _packages())
def test_the_package_names_its_public_surface(name: str) -> None:
    exported = _exported(name)
    assert len(exported) == len(set(exported)), f"{name}.__all__ names something twice"


@pytest.mark.parametrize("name", _packages())
def test_every_exported_name_is_public_and_the_packages_own(name: str) -> None:
    package = importlib.import_module(name)
    for member in _exported(name):
        assert not member.startswith("_"), f"{name} exports a private name: {member}"
        assert hasattr(package, member), f"{name}.__all__ names {member}, which it lacks"
        value = getattr(package, member)
        assert not isinstance(value, types.ModuleType), f"{name} exports a module: {member}"
        defined_in = getattr(value, "__module__", None)
        if isinstance(defined_in, str):  # classes and functions: made in this package
            assert defined_in == name or defined_in.startswith(name + "."), (
                f"{name} exports {member} from {defined_in}"
            )
            private = [part for part in defined_in.split(".") if part.startswith("_")]
            assert not private, f"{name} exports {member} from a private module"


def _reexports_only(name: str) -> bool:
    """The package's ``__init__`` holds a docstring, imports and ``__all__``, no code."""
    path = Path(importlib.import_module(name).__file__ or "")
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if [getattr(t, "id", None) for t in targets] == ["__all__"]:
            continue
        return False
    return True


@pytest.mark.parametrize("name", [n for n in PACKAGES if _reexports_only(n)])
def test_a_package_that_only_reexports_exports_all_it_imports(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        member
        for member, value in vars(package).items()
        if not member.startswith("_")
        and not isinstance(value, types.ModuleType)
        and member != "annotations"  # from __future__
    }
    assert public == set(_exported(name)), f"{name} imports names it does not export"


@pytest.mark.parametrize("name", MODULES)
def test_a_modules_all_names_only_what_it_has(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", [])
    for member in exported:
        assert not member.startswith("_"), f"{name} exports a private name: {member}"
        assert hasattr(module, member), f"{name}.__all__ names {member}, which it lacks"
