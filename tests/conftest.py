"""Options and the end-of-run summary of the unit tests (the mutation harness's catch rate)."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mutants",
        default="default",
        help="mutants the mutation harness plants: default, all, or flaw names separated by "
        "commas (tests/mutants.py)",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    harness = sys.modules.get("test_mutation")
    results: dict[str, dict[str, Any]] = getattr(harness, "RESULTS", {})
    if not results:
        return
    from mutants import MUTANTS, MUTATION_REPORT

    path = ROOT / MUTATION_REPORT
    # Merged with earlier runs: a default run plants a few mutants, and keeps what a full
    # run found for the others.
    kept: dict[str, Any] = {}
    if path.exists():
        kept = {m["flaw"]: m for m in json.loads(path.read_text()).get("mutants", [])}
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    kept.update({flaw: {**r, "at": now} for flaw, r in results.items()})
    known = {m.flaw for m in MUTANTS}
    mutants = [kept[m.flaw] for m in MUTANTS if m.flaw in kept and m.flaw in known]
    caught = sum(m["caught"] for m in mutants)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"catalogue": len(MUTANTS), "caught": caught, "planted": len(mutants),
             "mutants": mutants},
            indent=2,
        )
        + "\n"
    )  # fmt: skip
    tr = terminalreporter
    tr.section("mutation harness")
    this = sum(r["caught"] for r in results.values())
    tr.write_line(f"this run: {this}/{len(results)} mutants caught")
    for r in results.values():
        if not r["caught"]:
            tr.write_line(f"  missed {r['flaw']}: {r['source']} {r['title']} ({r['status']})")
    tr.write_line(
        f"catch rate: {caught}/{len(mutants)} mutants caught "
        f"({len(MUTANTS)} in the catalogue; {path.relative_to(ROOT)})"
    )
