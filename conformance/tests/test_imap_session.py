"""IMAP sessions: greeting, CAPABILITY, TLS (STARTTLS and implicit), LOGIN and AUTHENTICATE,
ID, ENABLE, NAMESPACE, NOOP, LOGOUT (RFC 9051, RFC 3501, RFC 2971, RFC 5161, RFC 2342)."""

from __future__ import annotations

import base64
import socket

import pytest

from conformance.requirements import requirement
from conformance.target import Target
from conformance.tests.test_imap_support import (
    TLS_ABORTED,
    RawImap,
    both_revisions,
    imap,
    imap_connect,
    require_capability,
    tagged,
)


def plaintext(target: Target) -> RawImap:
    """A raw connection to the STARTTLS port, before STARTTLS."""
    raw = RawImap.__new__(RawImap)
    ep = target.endpoint("imap")
    raw.timeout = target.timeout
    raw.sock = socket.create_connection((ep.host, ep.port), timeout=target.timeout)
    raw.buffer = b""
    raw.counter = 0
    raw.greeting = raw.line()
    return raw


def capabilities(lines: list[bytes]) -> set[str]:
    for line in lines:
        if line.upper().startswith(b"* CAPABILITY "):
            return {c.upper() for c in line[13:].decode().split()}
    raise AssertionError(f"no CAPABILITY response in {lines}")


@both_revisions("7.1.1", "MUST", "the greeting is an untagged OK, PREAUTH or BYE")
def test_greeting(target: Target) -> None:
    raw = plaintext(target)
    try:
        assert raw.greeting.startswith((b"* OK", b"* PREAUTH", b"* BYE")), raw.greeting
    finally:
        raw.close()


@requirement(
    "RFC9051", "6.1.1", "MUST", "CAPABILITY answers one untagged CAPABILITY listing IMAP4rev2"
)
def test_capability_lists_imap4rev2(target: Target) -> None:
    raw = RawImap(target)
    try:
        lines = raw.command("CAPABILITY")
        assert tagged(lines).startswith(b"OK"), lines
        assert sum(line.startswith(b"* CAPABILITY ") for line in lines) == 1, lines
        assert "IMAP4REV2" in capabilities(lines)
    finally:
        raw.close()


@requirement("RFC3501", "6.1.1", "MUST", "CAPABILITY lists IMAP4rev1")
def test_capability_lists_imap4rev1(target: Target) -> None:
    raw = RawImap(target)
    try:
        assert "IMAP4REV1" in capabilities(raw.command("CAPABILITY"))
    finally:
        raw.close()


@both_revisions("6.2.3", "MUST", "LOGIN is refused before TLS, and LOGINDISABLED is advertised")
def test_login_refused_before_tls(target: Target) -> None:
    raw = plaintext(target)
    try:
        caps = capabilities(raw.command("CAPABILITY"))
        assert "LOGINDISABLED" in caps and "STARTTLS" in caps, caps
        acc = target.account
        lines = raw.command(f'LOGIN "{acc.address}" "{acc.password}"')
        assert tagged(lines).startswith(b"NO"), lines
        assert tagged(raw.command("SELECT INBOX")).startswith(b"BAD"), "logged in without TLS"
    finally:
        raw.close()


@both_revisions(
    "6.2.2", "MUST", "AUTHENTICATE PLAIN is refused before TLS (no AUTH=PLAIN advertised)"
)
def test_authenticate_plain_refused_before_tls(target: Target) -> None:
    raw = plaintext(target)
    try:
        assert "AUTH=PLAIN" not in capabilities(raw.command("CAPABILITY"))
        acc = target.account
        plain = base64.b64encode(f"\0{acc.address}\0{acc.password}".encode())
        lines = raw.command(b"AUTHENTICATE PLAIN " + plain)
        assert tagged(lines).startswith((b"NO", b"BAD")), lines
        assert tagged(raw.command("SELECT INBOX")).startswith(b"BAD"), "logged in without TLS"
    finally:
        raw.close()


@both_revisions("6.2.1", "MUST", "after STARTTLS the server speaks TLS and login is possible")
def test_starttls_then_login(target: Target) -> None:
    with imap(target, role="imap") as client:
        assert client.select_folder("INBOX")[b"UIDVALIDITY"]


@requirement(
    "PLATFORM",
    "imap.starttls-injection",
    "MUST",
    "commands pipelined behind STARTTLS are discarded, not run after the handshake",
)
def test_starttls_discards_pipelined_commands(target: Target) -> None:
    raw = plaintext(target)
    try:
        acc = target.account
        raw.send(
            b"s STARTTLS\r\ni1 LOGIN "
            + f'"{acc.address}" "{acc.password}"'.encode()
            + b"\r\ni2 CAPABILITY\r\n"
        )
        assert raw.line().startswith(b"s OK"), "STARTTLS refused"
        context = target.ssl_context()
        try:
            raw.sock = context.wrap_socket(
                raw.sock, server_hostname=target.server_name(target.endpoint("imap"))
            )
        except TLS_ABORTED:
            return  # it hung up rather than start TLS behind queued plaintext: safe
        raw.buffer = b""
        lines = raw.command("NOOP")
        assert all(not line.startswith((b"i1 ", b"i2 ")) for line in lines), lines
        assert tagged(raw.command("SELECT INBOX")).startswith(b"BAD"), "injected LOGIN ran"
    finally:
        raw.close()


@requirement("RFC8314", "3.3", "MUST", "IMAP over implicit TLS (imaps) serves the session")
def test_implicit_tls(target: Target) -> None:
    with imap(target, role="imaps") as client:
        assert client.select_folder("INBOX")[b"UIDVALIDITY"]


@both_revisions("6.2.3", "MUST", "LOGIN with valid credentials over TLS succeeds")
def test_login_over_tls(target: Target) -> None:
    client = imap_connect(target)
    try:
        acc = target.account
        client.login(acc.address, acc.password)  # raises on NO
        assert client.list_folders()
    finally:
        client.logout()


@both_revisions("6.2.3", "MUST", "LOGIN with a wrong password gets NO and no session")
def test_login_wrong_password(target: Target) -> None:
    raw = RawImap(target)
    try:
        lines = raw.command(f'LOGIN "{target.account.address}" "wrong-{target.account.password}"')
        assert tagged(lines).startswith(b"NO"), lines
        assert tagged(raw.command("SELECT INBOX")).startswith(b"BAD")
    finally:
        raw.close()


@both_revisions("6.2.2", "MUST", "AUTHENTICATE PLAIN over TLS logs in (the mandatory mechanism)")
def test_authenticate_plain(target: Target) -> None:
    client = imap_connect(target)
    try:
        acc = target.account
        client.plain_login(acc.address, acc.password)
        assert client.select_folder("INBOX")[b"UIDVALIDITY"]
    finally:
        client.logout()


# RFC 9051 9: CHAR8 = %x01-ff (no NUL in a literal), a quoted string takes no NUL either
# (TEXT-CHAR is CHAR, %x01-7F, less CR and LF), and ATOM-CHAR excludes every CTL.
LOGIN_CONTROLS = {
    "quoted-NUL": b'"{local}\x00@{domain}"',
    "atom-NUL": b"{local}\x00@{domain}",
    "atom-SOH": b"{local}\x01@{domain}",
    "atom-HT": b"{local}\t@{domain}",
    "atom-ESC": b"{local}\x1b@{domain}",
    "atom-DEL": b"{local}\x7f@{domain}",
}


@both_revisions(
    "9",
    "MUST",
    "a NUL in a command, or a control character in an atom, gets BAD: a LOGIN with one "
    "logs no one in",
)
@pytest.mark.parametrize("form", LOGIN_CONTROLS.values(), ids=LOGIN_CONTROLS.keys())
def test_login_with_control_character(target: Target, form: bytes) -> None:
    acc = target.account
    local, _, domain = acc.address.partition("@")
    password = b'"' + acc.password.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    twin = RawImap(target)
    try:
        twin.login(acc)  # the same account, without the control character, logs in
    finally:
        twin.close()
    user = form.replace(b"{local}", local.encode()).replace(b"{domain}", domain.encode())
    raw = RawImap(target)
    try:
        lines = raw.command(b"LOGIN " + user + b" " + password)
        if tagged(lines).startswith(b"BYE"):
            return  # BYE and a closed connection (RFC 9051 7.1.5): no one logged in either
        assert tagged(lines).startswith(b"BAD"), f"LOGIN {user!r}: {lines}"
        assert tagged(raw.command("SELECT INBOX")).startswith(b"BAD"), "logged in after all"
    finally:
        raw.close()


@both_revisions("6.2.2", "MUST", "a client's '*' cancels AUTHENTICATE with BAD")
def test_authenticate_cancel(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert raw.line().startswith(b"+"), "no continuation request"
        raw.send(b"*\r\n")
        assert tagged(raw.until(b"a1")).startswith(b"BAD")
    finally:
        raw.close()


@both_revisions("6.1.2", "MUST", "NOOP always succeeds")
def test_noop(target: Target) -> None:
    raw = RawImap(target)
    try:
        assert tagged(raw.command("NOOP")).startswith(b"OK")
        raw.login(target.account)
        assert tagged(raw.command("NOOP")).startswith(b"OK")
    finally:
        raw.close()


@both_revisions(
    "6.1.3", "MUST", "LOGOUT sends an untagged BYE, then OK, then closes the connection"
)
def test_logout(target: Target) -> None:
    raw = RawImap(target)
    try:
        lines = raw.command("LOGOUT")
        assert lines[0].startswith(b"* BYE"), lines
        assert tagged(lines).startswith(b"OK"), lines
        raw.sock.settimeout(target.timeout)
        assert raw.sock.recv(100) == b"", "connection still open after LOGOUT"
    finally:
        raw.close()


@both_revisions("6.3", "MUST", "mailbox commands are refused (BAD) before login")
def test_commands_need_authentication(target: Target) -> None:
    # A connection each: a server may answer a run of refused commands with BYE and close
    # (Dovecot does after a few), which refuses them as well (RFC 3501 7.1.5).
    for command in ("SELECT INBOX", 'LIST "" *', "STATUS INBOX (MESSAGES)"):
        raw = RawImap(target)
        try:
            lines = raw.command(command)
            assert tagged(lines).startswith((b"BAD", b"NO", b"BYE")), f"{command}: {lines}"
        finally:
            raw.close()


@both_revisions("6.4", "MUST", "message commands are refused (BAD) with no mailbox selected")
def test_commands_need_a_selected_mailbox(target: Target) -> None:
    raw = RawImap(target)
    try:
        raw.login(target.account)
        for command in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "EXPUNGE"):
            assert tagged(raw.command(command)).startswith((b"BAD", b"NO")), command
    finally:
        raw.close()


@requirement("RFC2971", "3.1", "MUST", "ID is answered with an ID response and OK, in any state")
def test_id(target: Target) -> None:
    raw = RawImap(target)
    try:
        if "ID" not in capabilities(raw.command("CAPABILITY")):
            pytest.skip("not applicable: the server does not advertise ID")
        lines = raw.command('ID ("name" "mailspec-conformance")')
        assert any(line.startswith(b"* ID ") for line in lines), lines
        assert tagged(lines).startswith(b"OK")
    finally:
        raw.close()


@requirement("RFC5161", "3.1", "MUST", "ENABLE answers ENABLED with the extensions it turned on")
def test_enable(target: Target) -> None:
    with imap(target) as client:
        require_capability(client, "ENABLE")
        require_capability(client, "CONDSTORE")
        assert client.enable("CONDSTORE") == [b"CONDSTORE"]


@requirement("RFC2342", "5", "MUST", "NAMESPACE describes the personal namespace and its delimiter")
def test_namespace(target: Target) -> None:
    with imap(target) as client:
        require_capability(client, "NAMESPACE")
        namespace = client.namespace()
        assert namespace.personal, namespace
        prefix, delimiter = namespace.personal[0]
        assert delimiter is None or len(delimiter) == 1, namespace
        client.create_folder(f"{prefix}ns-probe-x")
        client.delete_folder(f"{prefix}ns-probe-x")


@both_revisions("6.2.3", "SHOULD", "after login the server sends fresh capabilities")
def test_capabilities_after_login(target: Target) -> None:
    raw = RawImap(target)
    try:
        acc = target.account
        lines = raw.command(f'LOGIN "{acc.address}" "{acc.password}"')
        before = capabilities(raw.command("CAPABILITY"))
        assert "IMAP4REV2" in before or "IMAP4REV1" in before
        assert tagged(lines).startswith(b"OK")
    finally:
        raw.close()


@requirement(
    "RFC2971",
    "3.3",
    "MUST",
    "an ID within the RFC's limits (30 pairs, 30-octet fields, 1024-octet values) is answered, "
    "not refused as too long",
)
def test_id_at_the_limits(target: Target) -> None:
    raw = RawImap(target)
    try:
        if "ID" not in capabilities(raw.command("CAPABILITY")):
            pytest.skip("not applicable: the server does not advertise ID")
        pairs = " ".join(f'"{n:0>30}" "{"v" * 1024}"' for n in range(30))
        lines = raw.command(f"ID ({pairs})")
        assert any(line.startswith(b"* ID ") for line in lines), lines
        assert tagged(lines).startswith(b"OK"), lines
        assert tagged(raw.command("NOOP")).startswith(b"OK")
    finally:
        raw.close()
