"""No false pass on content: what the suite delivered is read back over the target's own
mailbox access, and a requirement it cannot observe is not applicable, never a pass.

Every conformance test that reads delivered mail (found by its use of ``delivered``) runs
against targets described in TOML, as an operator would write them: the reference started
by hand and offered with each observation path withheld (all of them not applicable), with
IMAP over STARTTLS only (all pass), and a server that mangles bodies with its mailbox served
over POP3 (each content requirement it can be asked about fails).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from broken_servers import BrokenServer
from by_hand import INNER, inner_ini, reference, target_toml

import conformance.tests.test_smtp_extensions as extensions
import conformance.tests.test_smtp_rfc5321 as rfc5321
from reference.testing import ReferenceServer

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.usefixtures("inner_ini")
__all__ = ["inner_ini", "reference"]  # fixtures, used by name

MODULES = (rfc5321, extensions)


def _needs(fn: object) -> tuple[str, ...]:
    marks = getattr(fn, "pytestmark", [])
    return tuple(n for m in marks if m.name == "requirement" for n in m.kwargs.get("needs", ()))


def content_tests() -> list[str]:
    """The conformance tests whose verdict rests on reading the delivered message (those
    that also need a capability a target file grants by a command, such as restarting the
    server, are left out: the by-hand target here cannot give it, and they say so)."""
    return sorted(
        name
        for module in MODULES
        for name, fn in vars(module).items()
        if name.startswith("test_")
        and "delivered(" in inspect.getsource(fn)
        and "restart" not in _needs(fn)
    )


CONTENT = content_tests()
KEYWORD = " or ".join(CONTENT)


def test_the_content_tests_are_found() -> None:
    assert set(CONTENT) >= {
        "test_dot_stuffing_is_removed",
        "test_1000_octet_text_line",
        "test_8bitmime",
        "test_bdat_is_binary_transparent",
    }


def by_hand_toml(ref: ReferenceServer, roles: tuple[str, ...], account: bool = True) -> str:
    eps = {"smtp" if name == "mx" else name: url for name, url in ref.endpoints.items()}
    return target_toml(ref, {role: eps[role] for role in roles}, account)


def rows_for(pytester: pytest.Pytester, toml: str) -> dict[str, dict[str, Any]]:
    path = pytester.path / "target.toml"
    path.write_text(toml)
    modules = [m.__name__ for m in MODULES]
    pytester.runpytest("--mailspec-target", str(path), *INNER, "--pyargs", *modules, "-k", KEYWORD)
    report = json.loads((pytester.path / "reports/conformance/conformance.json").read_text())
    by_test: dict[str, dict[str, Any]] = {}
    for row in report["requirements"]:
        for nodeid in row["tests"]:
            by_test[nodeid.rsplit("::", 1)[1].split("[")[0]] = row
    assert set(by_test) == set(CONTENT), sorted(by_test)
    return by_test


@pytest.mark.parametrize(
    ("roles", "account", "why"),
    [
        (("smtp",), True, "offers no mailbox access"),
        (("smtp", "imap", "imaps", "pop3", "pop3s"), False, "no test account"),
    ],
    ids=["no-mailbox-endpoint", "no-account"],
)
def test_withheld_observation_is_not_applicable(
    pytester: pytest.Pytester,
    reference: ReferenceServer,
    roles: tuple[str, ...],
    account: bool,
    why: str,
) -> None:
    # Before: 8BITMIME, 1000-octet lines and BDAT transparency reported pass unobserved.
    rows = rows_for(pytester, by_hand_toml(reference, roles, account))
    for name, row in rows.items():
        assert row["status"] == "not_applicable", (name, row)
        assert why in row["detail"], (name, row["detail"])


def test_imap_over_starttls_observes(pytester: pytest.Pytester, reference: ReferenceServer) -> None:
    rows = rows_for(pytester, by_hand_toml(reference, ("smtp", "imap")))
    assert {name: row["status"] for name, row in rows.items()} == dict.fromkeys(CONTENT, "pass")


@pytest.mark.parametrize(("flaw", "status"), [("mangled-body", "fail"), (None, "pass")])
def test_pop3_observation_catches_mangled_bodies(
    pytester: pytest.Pytester, flaw: str | None, status: str
) -> None:
    server = BrokenServer(flaw, pytester.path / "server", mailbox=True).start()
    try:
        rows = rows_for(pytester, server.target_toml())
    finally:
        server.stop()
    statuses = {name: row["status"] for name, row in rows.items()}
    # aiosmtpd offers no CHUNKING: the BDAT requirement is not applicable, not passed.
    assert statuses == {
        **dict.fromkeys(CONTENT, status),
        "test_bdat_is_binary_transparent": "not_applicable",
    }, {name: (row["status"], row["detail"]) for name, row in rows.items()}
