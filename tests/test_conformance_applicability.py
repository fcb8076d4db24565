"""Applicability from what the server says, and a run that checked little says so.

The reference is started by hand and described in TOML as an operator would describe a
STARTTLS-only, single-account mail host: most IMAP and POP3 requirements must run there
(before: 5 of 75 IMAP and 1 of 21 POP3 requirements did, the rest "not applicable" for want
of ``imaps``, ``pop3s`` or a second account). Behind a proxy that advertises IMAP4rev1 only,
RFC 9051 requirements are not applicable and RFC 3501 ones run; a protocol of which more
than half the requirements did not apply is warned about, with the reasons counted.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from by_hand import INNER, inner_ini, reference, target_toml

import conformance
from reference.testing import ReferenceServer

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.usefixtures("inner_ini")
__all__ = ["inner_ini", "reference"]  # fixtures, used by name

IMAP = [
    "conformance.tests.test_imap_session",
    "conformance.tests.test_imap_mailboxes",
    "conformance.tests.test_imap_messages",
    "conformance.tests.test_imap_idle",
]
POP3 = ["conformance.tests.test_pop3_session", "conformance.tests.test_pop3_transaction"]


def run(
    pytester: pytest.Pytester, text: str, modules: list[str]
) -> tuple[pytest.RunResult, dict[str, Any]]:
    path = pytester.path / "target.toml"
    path.write_text(text)
    # The suite's own root, as `mailspec check` gives it: outside it, tests of the same name
    # in two modules (IMAP's and POP3's test_noop) would share the node id "::test_noop".
    root = str(Path(conformance.__file__).resolve().parent.parent)
    result = pytester.runpytest(
        "--mailspec-target", str(path), *INNER, "--rootdir", root, "--pyargs", *modules
    )
    report = json.loads((pytester.path / "reports/conformance/conformance.json").read_text())
    return result, report


def test_starttls_single_account_target_runs_most_requirements(
    pytester: pytest.Pytester, reference: ReferenceServer
) -> None:
    eps = reference.endpoints
    endpoints = {"smtp": eps["mx"], "imap": eps["imap"], "pop3": eps["pop3"]}
    result, report = run(pytester, target_toml(reference, endpoints), IMAP + POP3)
    protocols = report["protocols"]
    assert protocols["imap"]["requirements"] >= 60, protocols
    assert protocols["pop3"]["requirements"] >= 15, protocols
    # What is left needs what this target truly lacks: implicit TLS, a second account.
    assert protocols["imap"]["not_applicable"] <= 3, report["not_applicable_reasons"]
    # ... and a clock the suite can move (the autologout requirement).
    assert protocols["pop3"]["not_applicable"] <= 1, report["not_applicable_reasons"]
    if protocols["pop3"]["not_applicable"]:
        assert "target 'by-hand' lacks capability 'clock'" in report["not_applicable_reasons"]
    assert report["summary"]["fail"] == 0, [
        (r["id"], r["detail"]) for r in report["requirements"] if r["status"] == "fail"
    ]
    assert "WARNING" not in result.stdout.str()


class Rev1Proxy:
    """imaps in front of the reference's imaps that strips IMAP4rev2 from what it advertises:
    to the suite, an IMAP4rev1-only server (as Dovecot 2.3 is)."""

    def __init__(self, ref: ReferenceServer) -> None:
        self.upstream = ("127.0.0.1", ref.port("imaps"))
        self.client_tls = ssl.create_default_context(cafile=str(ref.cafile))
        self.client_tls.check_hostname = False
        self.server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_tls.load_cert_chain(ref.cafile, Path(ref.cafile).with_name("key.pem"))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.upstream, ssl=self.client_tls)

        async def down() -> None:
            while line := await up_r.readline():
                writer.write(line.replace(b" IMAP4rev2", b""))
                await writer.drain()
            writer.close()

        async def up() -> None:
            while data := await reader.read(65536):
                up_w.write(data)
                await up_w.drain()
            up_w.close()

        await asyncio.gather(down(), up(), return_exceptions=True)

    def __enter__(self) -> Rev1Proxy:
        self._thread.start()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.server_tls)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.url = f"imaps://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def test_rfc9051_requirements_do_not_apply_to_a_rev1_server(
    pytester: pytest.Pytester, reference: ReferenceServer
) -> None:
    # Before: every RFC 9051 requirement was held against IMAP4rev1 servers (false alarms
    # against Dovecot 2.3); and a run of POP3 tests with no POP3 endpoint stayed quiet.
    with Rev1Proxy(reference) as proxy:
        endpoints = {"smtp": reference.endpoints["mx"], "imaps": proxy.url}
        result, report = run(pytester, target_toml(reference, endpoints), [*IMAP[:2], POP3[0]])
    rows = report["requirements"]
    rev2 = [r for r in rows if r["source"] == "RFC9051"]
    rev1 = [r for r in rows if r["source"] == "RFC3501"]
    assert rev2 and rev1
    for row in rev2:
        assert row["status"] == "not_applicable", row
        assert "does not advertise IMAP4rev2 (it says IMAP4REV1)" in row["detail"], row
    # RFC 3501 runs there, twins of RFC 9051 requirements included; what it cannot run
    # needs an endpoint this target lacks (plaintext imap), never the other revision.
    seen = [(r["id"], r["status"], r["detail"]) for r in rev1]
    assert {status for _, status, _ in seen} <= {"pass", "not_applicable"}, seen
    assert not [s for s in seen if "IMAP4rev" in s[2]], seen
    assert sum(status == "pass" for _, status, _ in seen) >= 30, seen
    reasons = report["not_applicable_reasons"]
    assert sum(reasons.values()) == report["summary"]["not_applicable"]
    out = result.stdout.str()
    assert "not applicable, by reason:" in out
    # No POP3 endpoint: nothing of POP3 ran. IMAP no longer warns: its RFC 3501 twins ran.
    assert "WARNING: pop3: " in out and "WARNING: imap: " not in out
