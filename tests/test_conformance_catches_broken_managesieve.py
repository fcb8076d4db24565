"""The ManageSieve requirements catch broken servers: each flaw of :mod:`broken_managesieve`
fails its requirement, and the same server without it passes them all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from broken_managesieve import BrokenManageSieve

pytest_plugins = ["pytester"]

INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:locust")
MODULE = "conformance.tests.test_managesieve"

# flaw -> the requirement title that must fail
CASES = {
    "auth-before-tls": "ManageSieve offers STARTTLS and refuses AUTHENTICATE PLAIN before it",
    "lf-scripts": "GETSCRIPT returns the script as stored",
    "delete-active": "DELETESCRIPT removes a script but refuses the active one (ACTIVE)",
}


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def rows(pytester: pytest.Pytester, flaw: str | None) -> dict[str, Any]:
    server = BrokenManageSieve(flaw, pytester.path / "server").start()
    try:
        target = pytester.path / "target.toml"
        target.write_text(server.target_toml())
        pytester.runpytest("--mailspec-target", str(target), *INNER, "--pyargs", MODULE)
    finally:
        server.stop()
    report = json.loads((pytester.path / "reports/conformance/conformance.json").read_text())
    return {r["title"]: r for r in report["requirements"]}


@pytest.mark.parametrize("flaw", sorted(CASES))
def test_flaw_fails_its_requirement(pytester: pytest.Pytester, flaw: str) -> None:
    found = rows(pytester, flaw)
    assert found[CASES[flaw]]["status"] == "fail", found[CASES[flaw]]


def test_control_server_passes(pytester: pytest.Pytester) -> None:
    found = rows(pytester, None)
    assert {t: r["status"] for t, r in found.items() if r["status"] != "pass"} == {}
