"""Platform promises are claimed, not assumed: ``features`` in a target file.

A PLATFORM requirement of a feature the target does not claim is reported "not claimed"
(a status of its own, neither pass, fail nor not applicable), and its tests do not run; RFC
requirements never depend on a claim, and the report counts RFC conformance and platform
promises apart. Before, a Postfix without a content filter "failed" the spam and virus
promises it never made, indistinguishable from a real failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from broken_servers import BrokenServer

from conformance.requirements import FEATURES, feature_of
from conformance.target import ReferenceTarget, TargetError, load_target

pytest_plugins = ["pytester"]

INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:locust")

SUITE = """
from conformance.requirements import requirement

@requirement("RFC5321", "4.1.1.9", "MUST", "NOOP gets 250")
@requirement("PLATFORM", "inbound.spam", "MUST", "spam is refused (shared test)")
def test_noop_and_spam(smtp):
    smtp.session().noop().expect(250, doing="NOOP")

@requirement("PLATFORM", "inbound.virus", "MUST", "a virus is refused")
def test_virus(smtp):
    raise AssertionError("must not run where virus-scan is not claimed")

@requirement("PLATFORM", "smtp.helo-required", "MUST", "MAIL before HELO is refused")
def test_helo(smtp):
    smtp().command("MAIL FROM:<>").expect(503, doing="MAIL before EHLO")

@requirement("PLATFORM", "inbound.no-open-relay", "MUST", "no open relay")
def test_relay(smtp):
    c = smtp.session()
    c.mail("").expect(250, doing="MAIL")
    c.rcpt("x@relay-probe.mailspec.test").expect(550, 554, doing="RCPT elsewhere")
"""


@pytest.fixture
def server(tmp_path: Path) -> Any:
    srv = BrokenServer(None, tmp_path / "server").start()
    try:
        yield srv
    finally:
        srv.stop()


def run(pytester: pytest.Pytester, server: BrokenServer, features: str) -> dict[str, Any]:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_claims=SUITE)
    path = pytester.path / "target.toml"
    path.write_text(f"features = {features}\n" + server.target_toml())
    result = pytester.runpytest("--mailspec-target", str(path), *INNER)
    report: dict[str, Any] = json.loads(
        (pytester.path / "reports/conformance/conformance.json").read_text()
    )
    report["stdout"] = result.stdout.str()
    return report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["status"] for r in report["requirements"]}


def test_unclaimed_platform_promises_are_not_claimed(
    pytester: pytest.Pytester, server: BrokenServer
) -> None:
    report = run(pytester, server, '["helo-required"]')
    assert statuses(report) == {
        "RFC5321-4.1.1.9": "pass",  # shares its test with an unclaimed promise: still checked
        "PLATFORM-inbound.spam": "not_claimed",
        "PLATFORM-inbound.virus": "not_claimed",  # its test did not run (it would fail)
        "PLATFORM-smtp.helo-required": "pass",  # claimed, so checked
        "PLATFORM-inbound.no-open-relay": "pass",  # owed by every mail system
    }
    rows = {r["id"]: r for r in report["requirements"]}
    assert rows["PLATFORM-inbound.virus"]["detail"] == (
        "the target does not claim the feature 'virus-scan'"
    )
    assert report["summary"]["not_claimed"] == 2
    assert report["sections"]["rfc"] == {
        "pass": 1,
        "fail": 0,
        "not_applicable": 0,
        "skipped": 0,
        "deviation": 0,
        "not_claimed": 0,
        "should_fail": 0,
    }
    assert report["sections"]["platform"]["not_claimed"] == 2
    assert report["sections"]["platform"]["pass"] == 2
    assert "platform promises: 4 requirements: 2 pass, 0 fail" in report["stdout"]
    md = (pytester.path / "reports/conformance/conformance.md").read_text()
    assert "- Platform promises: 4 requirements: 2 pass" in md
    assert "| not claimed | the target does not claim the feature 'spam-filter' |" in md


def test_claimed_promises_are_checked(pytester: pytest.Pytester, server: BrokenServer) -> None:
    report = run(pytester, server, '["spam-filter", "virus-scan", "helo-required"]')
    got = statuses(report)
    assert got["PLATFORM-inbound.virus"] == "fail"  # the test ran: the server scans nothing
    assert got["PLATFORM-inbound.spam"] == "pass"
    assert "not_claimed" not in got.values()


def test_unknown_feature_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        'domain = "e.test"\nfeatures = ["spam-filtre"]\n[endpoints]\nsmtp = "smtp://127.0.0.1:25"\n'
    )
    with pytest.raises(TargetError, match="features: unknown 'spam-filtre'"):
        load_target(path)


def test_the_reference_claims_every_feature() -> None:
    assert ReferenceTarget().features == frozenset(FEATURES)


def test_rfc_requirements_never_belong_to_a_feature() -> None:
    assert feature_of("RFC5321", "4.5.2") is None
    assert feature_of("PLATFORM", "inbound.spam.settings") == "spam-filter"
    assert feature_of("PLATFORM", "inbound.no-open-relay") is None
