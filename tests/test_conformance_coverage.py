"""`mailspec check --coverage`: the clause index, read against the suite's requirements."""

from __future__ import annotations

import subprocess
import sys

from conformance.coverage import Clause, load_clauses, render, suite_requirements


def test_every_title_the_index_names_is_a_requirement_of_the_suite() -> None:
    # A renamed requirement would leave the index claiming coverage it no longer has.
    titles = {title for _, title in suite_requirements()}
    lines, stale = render(load_clauses(), titles, None)
    assert stale == 0, [line for line in lines if "names no requirement" in line]
    assert "catch rate: no mutation run yet (pytest tests/test_mutation.py)" in lines


def test_clauses_covered_proven_stale_and_the_catch_rate() -> None:
    clauses = [
        Clause("RFC5321", "4.1.1.9", "NOOP MUST be answered 250", ("NOOP gets 250",)),
        Clause("RFC5321", "4.1.1.5", "RSET MUST discard", ("RSET discards",)),
        Clause("RFC5321", "4.5.3.1.2", "a 255-octet domain", ()),
        Clause("RFC1939", "4", "the greeting is +OK", ("gone title",)),
    ]
    mutation = {
        "catalogue": 3,
        "planted": 2,
        "caught": 1,
        "mutants": [
            {"flaw": "a", "source": "RFC5321", "title": "RSET discards", "caught": True},
            {"flaw": "b", "source": "RFC5321", "title": "NOOP gets 250", "caught": False},
        ],
    }
    lines, stale = render(clauses, {"NOOP gets 250", "RSET discards"}, mutation)
    assert stale == 1
    assert lines == [
        "RFC 1939: 0 of 1 MUST clauses covered, 0 with a planted bug caught",
        "  STALE                  4         the greeting is +OK",
        "      names no requirement of the suite: 'gone title'",
        "RFC 5321: 2 of 3 MUST clauses covered, 1 with a planted bug caught",
        "  covered                4.1.1.9   NOOP MUST be answered 250",
        "  covered, mutant caught 4.1.1.5   RSET MUST discard",
        "  not covered            4.5.3.1.2 a 255-octet domain",
        "MUST clauses: 2 of 4 covered, 1 with a planted bug caught",
        "catch rate of the last mutation run: 1/2 mutants caught (3 in the catalogue)",
        "  missed b: RFC5321 NOOP gets 250",
    ]


def test_the_command_prints_the_index() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reference.cli", "check", "--coverage", "--mutation", "none.json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "RFC 5321: " in done.stdout and "MUST clauses: " in done.stdout
