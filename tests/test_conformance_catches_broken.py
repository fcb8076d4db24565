"""The conformance suite catches known-bad servers: each flaw fails its requirement.

Each broken server from :mod:`broken_servers` is a target (a TOML file, as an
operator would write one); the matching conformance tests run against it with pytester
and the report must say "fail" for the requirement the flaw breaks. The same server
without the flaw passes them, so the tests discriminate rather than fail everything.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broken_servers import BrokenServer

from conformance.tests.test_imap_support import RawImap, tagged

pytest_plugins = ["pytester"]

INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:locust")

SMUGGLING = "only <CRLF>.<CRLF> ends mail data: no bare CR/LF variant ends it or smuggles a message"
RELAY = "mail for other domains is refused without AUTH, whatever the address disguise"
INJECTION = "commands pipelined behind STARTTLS in plaintext are discarded, never run inside TLS"
HELLO_CONTROL = "EHLO or HELO whose domain carries a NUL or other control character gets 5yz (501)"
PATH_NUL = "a MAIL FROM or RCPT TO path carrying a NUL gets a syntax refusal (501 or 553)"

SECURITY = "conformance.tests.test_smtp_security"
STARTTLS = "conformance.tests.test_smtp_starttls_auth"
CONTROLS = "conformance.tests.test_smtp_control_chars"

# flaw -> (module, -k expression selecting its tests, the requirement title that must fail)
CASES = {
    "lf-dot-lf": (SECURITY, "test_no_smuggling", SMUGGLING),
    "open-relay": (SECURITY, "test_no_open_relay or test_local_sender_does_not_open", RELAY),
    "starttls-injection": (STARTTLS, "test_no_plaintext_command_injection", INJECTION),
    "control-characters": (CONTROLS, "test_hello_with_a_control_character", HELLO_CONTROL),
}


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def serve(flaw: str | None, workdir: Path) -> Iterator[BrokenServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = BrokenServer(flaw, workdir).start()
    try:
        yield server
    finally:
        server.stop()


def run(
    pytester: pytest.Pytester, server: BrokenServer, modules: list[str], keyword: str
) -> pytest.RunResult:
    target = pytester.path / "target.toml"
    target.write_text(server.target_toml())
    return pytester.runpytest(
        "--mailspec-target", str(target), *INNER, "-rf", "--pyargs", *modules, "-k", keyword
    )


def check(
    pytester: pytest.Pytester, server: BrokenServer, modules: list[str], keyword: str
) -> dict[str, Any]:
    run(pytester, server, modules, keyword)
    report: dict[str, Any] = json.loads(
        (pytester.path / "reports/conformance/conformance.json").read_text()
    )
    return {r["title"]: r for r in report["requirements"]}


@pytest.mark.parametrize("flaw", sorted(CASES))
def test_flaw_fails_its_requirement(pytester: pytest.Pytester, flaw: str) -> None:
    module, keyword, title = CASES[flaw]
    for server in serve(flaw, pytester.path / "server"):
        rows = check(pytester, server, [module], keyword)
        assert rows[title]["status"] == "fail", rows[title]


def test_lf_dot_lf_fails_on_the_lf_variants_only(pytester: pytest.Pytester) -> None:
    # The LF-reading server is fooled by each variant whose dot line ends in LF, and by
    # none that uses CR alone: one test per variant says which.
    for server in serve("lf-dot-lf", pytester.path / "server"):
        result = run(pytester, server, [SECURITY], "test_no_smuggling")
        result.assert_outcomes(failed=3, passed=6)
        failed = {
            ln.split("[", 1)[1].split("]", 1)[0]
            for ln in result.outlines
            if ln.startswith("FAILED")
        }
        assert failed == {"LF.LF", "LF.CRLF", "CRLF.LF"}


def test_nul_in_a_path_fails(pytester: pytest.Pytester) -> None:
    # MAIL takes the NUL into the envelope (250); RCPT looks the address up (550), which
    # says its syntax was accepted.
    for server in serve("control-characters", pytester.path / "server"):
        result = run(pytester, server, [CONTROLS], "test_path_with_nul")
        result.assert_outcomes(failed=2)  # MAIL and RCPT alike


def test_control_server_passes(pytester: pytest.Pytester) -> None:
    keyword = " or ".join(f"({k})" for _, k, _ in CASES.values()) + " or test_path_with_nul"
    modules = sorted({module for module, _, _ in CASES.values()})
    for server in serve(None, pytester.path / "server"):
        rows = check(pytester, server, modules, keyword)
        for title in [*(title for _, _, title in CASES.values()), PATH_NUL]:
            assert rows[title]["status"] == "pass", rows[title]


def test_tls_abort_after_pipelined_starttls_is_safe(pytester: pytest.Pytester) -> None:
    # Before: a server that hangs up instead of starting TLS behind injected plaintext
    # was counted as vulnerable ("answered commands sent behind STARTTLS").
    for server in serve("tls-abort", pytester.path / "server"):
        module, keyword, title = CASES["starttls-injection"]
        rows = check(pytester, server, [module], keyword)
        assert rows[title]["status"] == "pass", rows[title]


def test_pop3_tls_abort_after_pipelined_stls_is_safe(pytester: pytest.Pytester) -> None:
    # Before: the handshake's EOF was an error, so a safe server failed the requirement.
    server = BrokenServer("tls-abort", pytester.path / "server", mailbox=True).start()
    try:
        module, keyword = "conformance.tests.test_pop3_session", "test_stls_discards_pipelined"
        rows = check(pytester, server, [module], keyword)
    finally:
        server.stop()
    (row,) = rows.values()
    assert row["status"] == "pass", row


def test_property_tests_keep_to_the_targets_budget(pytester: pytest.Pytester) -> None:
    # A server that waits 0.5 s before each error reply (Postfix waits 1 s by default) made
    # the state model and the fuzzer run for minutes; with a budget of 3 s each they stop.
    server = BrokenServer(None, pytester.path / "server", error_sleep=0.5).start()
    try:
        target = pytester.path / "target.toml"
        target.write_text(server.target_toml() + "\n[budget]\nseconds = 3\nexamples = 100\n")
        start = time.monotonic()
        result = pytester.runpytest(
            "--mailspec-target",
            str(target),
            *INNER,
            "--pyargs",
            "conformance.tests.test_smtp_model",
        )
        took = time.monotonic() - start
    finally:
        server.stop()
    result.assert_outcomes(passed=2)
    # Each may overrun its 3 s by one example; without the budget they took minutes.
    assert took < 20, f"the property tests took {took:.0f} s"


def test_imap_bye_and_close_is_a_reply(tmp_path: Path) -> None:
    # Before: a server that answers a bad command with "* BYE" and closes (as RFC 3501 7.1.5
    # allows) failed as "connection closed" instead of being read as having answered.
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"* OK ready\r\n")
        conn.recv(1024)
        conn.sendall(b"* BYE too many errors\r\n")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    raw = RawImap.__new__(RawImap)
    raw.sock = socket.create_connection(listener.getsockname(), timeout=5)
    raw.timeout, raw.buffer, raw.counter = 5.0, b"", 0
    raw.greeting = raw.line()
    try:
        assert tagged(raw.command("LOGIN a b")) == b"BYE too many errors\r\n"
    finally:
        raw.close()
        listener.close()
        thread.join(5)
