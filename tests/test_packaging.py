"""What the installed package imports is installed with it: no ImportError after `pip install .`."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reference", "conformance", "fakes")  # what pyproject ships


def _imported(path: Path) -> set[str]:
    """Top-level names a module imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_every_import_of_the_shipped_packages_is_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    ours = set(PACKAGES)
    by_module = packages_distributions()
    missing: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _imported(path) - ours - set(sys.stdlib_module_names) - {"__future__"}:
                dists = {canonicalize_name(d) for d in by_module.get(name, [name])}
                if not dists & runtime:
                    missing.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    # `mailspec check` runs the suite from the installed package: a test module's import
    # counts as much as the server's.
    assert missing == {}, f"imported but not in [project] dependencies: {missing}"
