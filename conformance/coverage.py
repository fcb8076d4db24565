"""``mailspec check --coverage``: the MUST clauses of each claimed RFC, checked or not.

The clause index (``conformance/clauses.toml``, kept by hand as mox keeps its RFC index)
names, for each MUST or MUST NOT clause, the suite's requirements that check it. This module
reads the requirements the suite really has (their ``@requirement`` marks, without running
anything), and the last mutation run's results (``reports/mutation/mutation.json``, written
by tests/test_mutation.py: which planted bugs the suite caught), and prints per RFC each
clause as covered or not, and whether a planted bug proved the check catches something.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance.requirements import Requirement, source_key

__all__ = ["CLAUSES", "Clause", "load_clauses", "render", "suite_requirements"]

CLAUSES = Path(__file__).with_name("clauses.toml")
MUTATION_REPORT = Path("reports/mutation/mutation.json")


@dataclass(frozen=True)
class Clause:
    """One MUST clause of an RFC and the requirement titles that check it."""

    rfc: str
    section: str
    text: str
    checked_by: tuple[str, ...]


def load_clauses(path: Path = CLAUSES) -> list[Clause]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [
        Clause(c["rfc"], c["section"], c["text"], tuple(c.get("checked_by", [])))
        for c in data.get("clause", [])
    ]


def _marks(obj: Any) -> Iterator[pytest.Mark]:
    for mark in getattr(obj, "pytestmark", []):
        if isinstance(mark, pytest.Mark) and mark.name == "requirement":
            yield mark


def suite_requirements(package: str = "conformance.tests") -> set[tuple[str, str]]:
    """(source, title) of every requirement the suite's tests are marked with."""
    pkg = importlib.import_module(package)
    out: set[tuple[str, str]] = set()
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        objects = [module, *vars(module).values()]
        objects += [
            v for cls in vars(module).values() if isinstance(cls, type) for v in vars(cls).values()
        ]
        for obj in objects:
            for mark in _marks(obj):
                req = Requirement.from_mark(mark)
                out.add((req.source, req.title))
    return out


def _caught_titles(mutation: dict[str, Any] | None) -> set[str]:
    if not mutation:
        return set()
    return {m["title"] for m in mutation.get("mutants", []) if m.get("caught")}


def render(
    clauses: list[Clause], titles: set[str], mutation: dict[str, Any] | None
) -> tuple[list[str], int]:
    """The report's lines, and how many index entries name a requirement the suite lacks."""
    caught = _caught_titles(mutation)
    lines: list[str] = []
    stale = 0
    by_rfc: dict[str, list[Clause]] = {}
    for clause in clauses:
        by_rfc.setdefault(clause.rfc, []).append(clause)
    totals = [0, 0, 0]
    for rfc in sorted(by_rfc, key=source_key):
        rows = by_rfc[rfc]
        covered = [c for c in rows if c.checked_by and all(t in titles for t in c.checked_by)]
        proven = [c for c in covered if any(t in caught for t in c.checked_by)]
        totals = [totals[0] + len(rows), totals[1] + len(covered), totals[2] + len(proven)]
        lines.append(
            f"RFC {rfc[3:]}: {len(covered)} of {len(rows)} MUST clauses covered, "
            f"{len(proven)} with a planted bug caught"
        )
        for c in rows:
            missing = [t for t in c.checked_by if t not in titles]
            stale += bool(missing)
            if missing:
                status = "STALE"
            elif not c.checked_by:
                status = "not covered"
            elif any(t in caught for t in c.checked_by):
                status = "covered, mutant caught"
            else:
                status = "covered"
            lines.append(f"  {status:<22} {c.section:<9} {c.text}")
            lines += [f"      names no requirement of the suite: {t!r}" for t in missing]
    lines.append(
        f"MUST clauses: {totals[1]} of {totals[0]} covered, {totals[2]} with a planted bug caught"
    )
    if mutation is None:
        lines.append("catch rate: no mutation run yet (pytest tests/test_mutation.py)")
    else:
        lines.append(
            f"catch rate of the last mutation run: {mutation['caught']}/{mutation['planted']} "
            f"mutants caught ({mutation['catalogue']} in the catalogue)"
        )
        missed = [m for m in mutation.get("mutants", []) if not m.get("caught")]
        lines += [f"  missed {m['flaw']}: {m['source']} {m['title']}" for m in missed]
    return lines, stale


def run(mutation_path: Path | None = None) -> int:
    """Print the coverage report; 1 when the index names a requirement the suite lacks."""
    path = mutation_path or MUTATION_REPORT
    mutation = json.loads(path.read_text()) if path.exists() else None
    titles = {title for _, title in suite_requirements()}
    lines, stale = render(load_clauses(), titles, mutation)
    print("\n".join(lines))
    return 1 if stale else 0
