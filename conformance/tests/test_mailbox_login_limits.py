"""Failed IMAP and POP3 logins are limited per client address as well as per account: a
guesser trying many account names from one address is locked out like one trying many
passwords for one account (the platform's policy; SMTP AUTH's is in test_outbound_*)."""

from __future__ import annotations

import contextlib
import ipaddress
import poplib
import secrets
import select

from conformance import not_applicable, requirement
from conformance.target import ClockControl, Target
from conformance.tests.test_imap_support import RawImap, mail_role, pop3, quote

CLIENT_FAILURES = 30  # the platform's default limit per client address in 15 minutes
LOCKOUT = 30 * 60
SOURCE = "127.0.0.77"  # a loopback address of the suite's own, counted apart from the others


def login(raw: RawImap, clock: ClockControl, user: str, password: str) -> bytes:
    """LOGIN, moving the target's clock while the server holds a failure's answer back;
    the tagged status."""
    raw.send(b"l1 LOGIN " + quote(user) + b" " + quote(password) + b"\r\n")
    for _ in range(400):
        try:
            line = raw.line(timeout=0.1)
        except TimeoutError:
            clock.advance(15)
            continue
        if line.startswith(b"l1 "):
            return line[3:]
    raise AssertionError("no answer to LOGIN even after 100 minutes of the target's clock")


def answers(sessions: list[RawImap], clock: ClockControl) -> list[bytes]:
    """The tagged status of the LOGIN each session sent, moving the target's clock while
    none answers (one select over every session, not a timeout per session)."""
    got: dict[int, bytes] = {}
    advances = 0
    while advances < 400:
        waiting = [i for i in range(len(sessions)) if i not in got]
        if not waiting:
            return [got[i] for i in range(len(sessions))]
        # A line may already sit in our buffer or in TLS's, where select cannot see it.
        ready = [i for i in waiting if sessions[i].has_data()]
        if not ready:
            socks = {sessions[i].sock: i for i in waiting}
            readable, _, _ = select.select(list(socks), [], [], 0.1)
            ready = [socks[s] for s in readable]
        if not ready:
            clock.advance(15)
            advances += 1
            continue
        for i in ready:
            line = sessions[i].line()
            if line.startswith(b"l1 "):
                got[i] = line[3:]
    raise AssertionError("no answer to every LOGIN even after 100 minutes of the clock")


def connect(target: Target, source: str | None) -> RawImap:
    try:
        return RawImap(target, source=source)
    except OSError as e:  # the address cannot be bound on this host
        not_applicable(f"cannot connect from {source}: {e}")


def login_once(
    target: Target, clock: ClockControl, source: str | None, user: str, password: str
) -> bytes:
    """LOGIN on a connection of its own (servers may hang up after a few failures) from the
    local address ``source``; the tagged status."""
    raw = connect(target, source)
    try:
        return login(raw, clock, user, password)
    finally:
        raw.close()


@requirement(
    "PLATFORM",
    "mailbox.auth-lockout-client",
    "MUST",
    f"after {CLIENT_FAILURES} failed IMAP logins from one client address within 15 minutes "
    "(over many account names), that address is locked for 30 minutes: IMAP answers even "
    "the right password NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]; other addresses still log in",
    needs=("clock",),
)
def test_client_address_lockout(target: Target, clock: ClockControl) -> None:
    host = target.endpoint(mail_role(target, "imap")).host
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(host).is_loopback:
            not_applicable("the suite can choose its client address only on loopback")
    names = [f"nobody-{n}-{secrets.token_hex(3)}@{target.domain}" for n in range(6)]
    # All at once, five per name (no account reaches its own limit): the server holds each
    # failure back on its clock, and one after the other those holds would add up past the
    # 15-minute window the failures are counted in.
    sessions = [connect(target, SOURCE) for _ in range(CLIENT_FAILURES)]
    try:
        for i, raw in enumerate(sessions):
            user, password = quote(names[i % len(names)]), quote(f"wrong-{i}")
            raw.send(b"l1 LOGIN " + user + b" " + password + b"\r\n")
        for i, status in enumerate(answers(sessions, clock)):
            assert status.startswith(b"NO"), f"failure {i + 1}: {status!r}"
    finally:
        for raw in sessions:
            raw.close()
    account = target.account
    status = login_once(target, clock, SOURCE, account.address, account.password)
    assert status.upper().startswith(b"NO [UNAVAILABLE]"), status
    if "pop3" in target.endpoints or "pop3s" in target.endpoints:
        client = pop3(target, source=SOURCE)
        try:
            client.user(account.address)
            try:
                client.pass_(account.password)
                raise AssertionError("POP3 let a locked client address log in")
            except poplib.error_proto as e:
                assert b"[SYS/TEMP]" in e.args[0], e.args[0]
        finally:
            with contextlib.suppress(Exception):
                client.quit()
    assert login_once(target, clock, None, account.address, account.password).startswith(b"OK")
    clock.advance(LOCKOUT + 60)
    assert login_once(target, clock, SOURCE, account.address, account.password).startswith(b"OK")
