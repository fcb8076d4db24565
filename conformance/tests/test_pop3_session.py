"""POP3 sessions: greeting, CAPA, STLS, USER/PASS and AUTH PLAIN after TLS only, the
maildrop lock (RFC 1939, RFC 2449, RFC 2595, RFC 5034)."""

from __future__ import annotations

import base64
import contextlib
import poplib
import socket

import pytest

from conformance.requirements import not_applicable, requirement
from conformance.target import ClockControl, Target
from conformance.tests.test_imap_support import TLS_ABORTED, pop3, pop3_session


class RawPop:
    """Line-level POP3 over the plaintext port (before STLS)."""

    def __init__(self, target: Target) -> None:
        ep = target.endpoint("pop3")
        self.target = target
        self.sock = socket.create_connection((ep.host, ep.port), timeout=target.timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        return self.file.readline()

    def command(self, text: bytes) -> bytes:
        self.sock.sendall(text + b"\r\n")
        return self.line()

    def multiline(self, text: bytes) -> list[bytes]:
        first = self.command(text)
        assert first.startswith(b"+OK"), first
        lines = []
        while (line := self.line()) not in (b".\r\n", b""):
            lines.append(line.rstrip(b"\r\n"))
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


@contextlib.contextmanager
def raw_pop(target: Target) -> object:
    raw = RawPop(target)
    try:
        yield raw
    finally:
        raw.close()


@requirement("RFC1939", "4", "MUST", "the greeting is a positive response (+OK)")
def test_greeting(target: Target) -> None:
    with raw_pop(target) as raw:
        assert raw.greeting.startswith(b"+OK"), raw.greeting  # type: ignore[attr-defined]


@requirement("RFC2449", "5", "MUST", "CAPA answers a multi-line list of capabilities, in any state")
def test_capa(target: Target) -> None:
    client = pop3(target)
    try:
        caps = client.capa()
        assert "TOP" in caps and "UIDL" in caps, caps
        acc = target.mailbox_account
        client.user(acc.address)
        client.pass_(acc.password)
        assert "TOP" in client.capa()
        client.quit()
    finally:
        client.close()


@requirement(
    "RFC2595",
    "4",
    "MUST",
    "STLS is advertised before TLS, starts TLS, and is no longer offered afterwards",
)
def test_stls(target: Target) -> None:
    ep = target.endpoint("pop3")
    client = poplib.POP3(ep.host, ep.port, timeout=target.timeout)
    try:
        assert "STLS" in client.capa()
        client.stls(target.ssl_context())
        assert "STLS" not in client.capa()
        acc = target.mailbox_account
        client.user(acc.address)
        client.pass_(acc.password)
        client.quit()
    finally:
        client.close()


@requirement(
    "PLATFORM",
    "pop3.tls-before-password",
    "MUST",
    "USER/PASS and AUTH PLAIN are refused before TLS",
)
def test_passwords_refused_before_tls(target: Target) -> None:
    acc = target.mailbox_account
    with raw_pop(target) as raw:
        # Whether CAPA lists USER before TLS is not the point (Dovecot lists it and refuses
        # PASS, which RFC 2449 6.3 allows): the refusal is.
        user = raw.command(b"USER " + acc.address.encode())  # type: ignore[attr-defined]
        if user.startswith(b"+OK"):
            assert raw.command(b"PASS " + acc.password.encode()).startswith(b"-ERR")  # type: ignore[attr-defined]
        else:
            assert user.startswith(b"-ERR"), user
        plain = base64.b64encode(f"\0{acc.address}\0{acc.password}".encode())
        assert raw.command(b"AUTH PLAIN " + plain).startswith(b"-ERR")  # type: ignore[attr-defined]
        assert raw.command(b"STAT").startswith(b"-ERR")  # type: ignore[attr-defined]


@requirement(
    "PLATFORM",
    "pop3.stls-injection",
    "MUST",
    "commands pipelined behind STLS are discarded, not run after the handshake",
)
def test_stls_discards_pipelined_commands(target: Target) -> None:
    acc = target.mailbox_account
    raw = RawPop(target)
    try:
        raw.sock.sendall(
            b"STLS\r\nUSER " + acc.address.encode() + b"\r\nPASS " + acc.password.encode()
            + b"\r\n"
        )  # fmt: skip
        assert raw.line().startswith(b"+OK"), "STLS refused"
        ep = target.endpoint("pop3")
        try:
            raw.sock = target.ssl_context().wrap_socket(
                raw.sock, server_hostname=target.server_name(ep)
            )
        except TLS_ABORTED:
            return  # it hung up rather than start TLS behind queued plaintext: safe
        raw.file = raw.sock.makefile("rb")
        # Had the injected USER and PASS run, STAT would read their +OK (or, logged in, its
        # own). No NOOP first: RFC 1939 5 allows -ERR for it before login.
        stat = raw.command(b"STAT")
        assert stat.startswith(b"-ERR"), f"the injected USER/PASS ran: STAT got {stat!r}"
    finally:
        raw.close()


@requirement("RFC1939", "7", "MUST", "USER and PASS with valid credentials over TLS log in")
def test_user_pass(target: Target) -> None:
    with pop3_session(target) as client:
        count, size = client.stat()
        assert count >= 0 and size >= 0
        client.quit()


@requirement(
    "RFC1939", "7", "MUST", "a wrong password gets -ERR and the session stays unauthenticated"
)
def test_wrong_password(target: Target) -> None:
    client = pop3(target)
    try:
        client.user(target.mailbox_account.address)
        with pytest.raises(poplib.error_proto):
            client.pass_("wrong-" + target.mailbox_account.password)
        with pytest.raises(poplib.error_proto):
            client.stat()
    finally:
        client.close()


@requirement("RFC5034", "4", "MUST", "AUTH PLAIN over TLS logs in")
def test_auth_plain(target: Target) -> None:
    client = pop3(target)
    try:
        caps = client.capa()
        if "PLAIN" not in caps.get("SASL", []):
            pytest.skip("not applicable: no SASL PLAIN advertised")
        acc = target.mailbox_account
        plain = base64.b64encode(f"\0{acc.address}\0{acc.password}".encode()).decode()
        assert client._shortcmd(f"AUTH PLAIN {plain}").startswith(b"+OK")
        client.stat()
        client.quit()
    finally:
        client.close()


@requirement(
    "RFC2449",
    "8.1.1",
    "SHOULD",
    "a second session on a maildrop in use is refused with -ERR [IN-USE]",
)
def test_second_session_is_in_use(target: Target) -> None:
    with pop3_session(target) as first:
        first.stat()
        second = pop3(target)
        try:
            second.user(target.mailbox_account.address)
            with pytest.raises(poplib.error_proto) as refused:
                second.pass_(target.mailbox_account.password)
            assert b"[IN-USE]" in refused.value.args[0], refused.value
        finally:
            second.close()
        first.quit()
    with pop3_session(target) as again:  # the lock went with the first session
        again.stat()
        again.quit()


@requirement("RFC1939", "5", "MUST", "NOOP answers +OK")
def test_noop(target: Target) -> None:
    with pop3_session(target) as client:
        assert client.noop().startswith(b"+OK")
        client.quit()


@requirement("RFC1939", "6", "MUST", "QUIT in the AUTHORIZATION state answers +OK and closes")
def test_quit_before_login(target: Target) -> None:
    client = pop3(target)
    try:
        assert client.quit().startswith(b"+OK")
    finally:
        client.close()


# NUL, other C0 controls and DEL (CR and LF end the line).
CONTROLS = {"NUL": "\x00", "SOH": "\x01", "HT": "\t", "ESC": "\x1b", "DEL": "\x7f"}


@requirement(
    "RFC1939",
    "3",
    "MUST",
    "a command whose argument carries a NUL or other control character gets -ERR "
    "(arguments are printable ASCII), and logs no one in",
)
@pytest.mark.parametrize("ctl", CONTROLS.values(), ids=CONTROLS.keys())
def test_control_character_in_user(target: Target, ctl: str) -> None:
    # RFC 1939 3: "Keywords and arguments consist of printable ASCII characters." A USER
    # name with a NUL or an ESC would otherwise reach the look-up and the log.
    acc = target.mailbox_account
    local, _, domain = acc.address.partition("@")
    twin = pop3(target)
    try:
        try:
            twin.user(acc.address)
        except poplib.error_proto as e:
            not_applicable(f"USER with the plain name is refused already ({e})")
    finally:
        twin.close()
    client = pop3(target)
    try:
        # The -ERR may come at USER or at PASS: a server may answer +OK to any USER so as not
        # to tell which mailboxes exist (RFC 1939 7, "USER name"; Dovecot does), but the
        # name with a control character must never log anyone in.
        try:
            user = client.user(f"{local}{ctl}@{domain}")
        except poplib.error_proto:
            user = None
        if user is not None:
            with pytest.raises(poplib.error_proto):
                client.pass_(acc.password)
        with pytest.raises(poplib.error_proto):
            client.stat()
    finally:
        client.close()


@requirement("RFC1939", "3", "MUST", "keywords are case-insensitive: user, pass, stat, rset work")
def test_keywords_are_case_insensitive(target: Target) -> None:
    # "Keywords are case-insensitive." poplib sends upper case; here every verb is lower.
    acc = target.mailbox_account
    client = pop3(target)
    try:
        for line in (f"user {acc.address}", f"pass {acc.password}", "stat", "rset"):
            reply = client._shortcmd(line)
            assert reply.startswith(b"+OK"), f"{line.split()[0]}: {reply!r}"
        client.quit()
    finally:
        client.close()


@requirement(
    "RFC1939",
    "3",
    "MUST",
    "the autologout timer is at least 10 minutes: a session idle for 9 m 59 s goes on",
    needs=("clock",),
)
def test_autologout_after_ten_minutes_at_least(target: Target, clock: ClockControl) -> None:
    # "If a server has an inactivity autologout timer, the duration of that timer MUST be
    # of at least 10 minutes." The target's clock moves; no test waits 10 minutes.
    with pop3_session(target) as client:
        clock.advance(599)
        # A server whose timer ran out says so (-ERR) and hangs up at once: give it that
        # moment before the next command, which would otherwise race its timer.
        client.sock.settimeout(0.2)
        with contextlib.suppress(TimeoutError):
            said = client.sock.recv(200)
            raise AssertionError(f"after 599 s idle the server said {said!r} and hung up")
        client.sock.settimeout(target.timeout)
        reply = client.noop()
        assert reply.startswith(b"+OK"), f"NOOP after 599 s idle: {reply!r}"
        client.quit()
