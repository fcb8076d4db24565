"""Submission: the sender must own the address (RFC 6409 6.1, 6.3), and failed logins are
slowed and then locked out for a while (RFC 4954 6: 454 4.7.0), like Fail2ban does.

The platform's numbers: 10 failed logins to one account within 15 minutes lock it for 30
minutes; from the 4th failure on, each 535 comes later than the one before. Locked, even
the right password gets 454 4.7.0 (a temporary failure: the client retries later and does
not ask its user for a new password).
"""

from __future__ import annotations

import base64
from typing import Any

from conformance import not_applicable, requirement
from conformance.smtp_client import Reply, SMTPClient, SMTPTimeout
from conformance.target import Account, ClockControl, Target
from conformance.tests.outbound_support import fresh_user, message, submission, token

MAX_FAILURES, LOCKOUT = 10, 1800


def alias_admin(target: Target) -> Any:
    add_alias = getattr(target.admin, "add_alias", None)
    if add_alias is None:
        not_applicable(f"target {target.name!r} gives the suite no way to create aliases")
    return add_alias


@requirement(
    "PLATFORM",
    "outbound.sender",
    "MUST",
    "MAIL FROM an address the authenticated user does not own gets 553 5.7.1",
    needs=("admin",),
)
@requirement(
    "RFC6409",
    "6.1",
    "MAY",
    "MAIL FROM an address the authenticated user may not use is refused with 5.7.1",
    needs=("admin",),
)
def test_mail_from_not_owned(target: Target) -> None:
    user, other = fresh_user(target), fresh_user(target)
    client = submission(target, user)
    reply = client.mail(other.address)
    assert (reply.code, reply.enhanced) == (553, "5.7.1"), str(reply)
    client.mail(user.address).expect(250, doing="MAIL FROM the user's own address")


@requirement(
    "PLATFORM",
    "outbound.sender",
    "MUST",
    "a user may send from an alias of theirs (MAIL FROM and From:)",
    needs=("admin",),
)
def test_alias_may_be_used(target: Target) -> None:
    add_alias = alias_admin(target)
    user = fresh_user(target)
    alias = f"alias-{token()}@{target.domain}"
    add_alias(alias, user.address)
    client = submission(target, user)
    client.mail(alias).expect(250, doing="MAIL FROM an alias of the user")
    client.rcpt(user.address).expect(250, doing="RCPT TO")
    client.data(message(alias, [user.address], "from my alias")).expect(250, doing="DATA")


def data_reply(client: SMTPClient, user: Account, from_field: str) -> Reply:
    client.mail(user.address).expect(250, doing="MAIL FROM")
    client.rcpt(user.address).expect(250, doing="RCPT TO")
    msg = (
        f"From: {from_field}\r\nTo: <{user.address}>\r\nSubject: whose? {token()}\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\nWho wrote this?\r\n"
    )
    return client.data(msg.encode())


@requirement(
    "PLATFORM",
    "outbound.sender-header",
    "MUST",
    "a submitted message whose From: names an address the user does not own is refused "
    "after DATA with 550 5.7.1; with several From: addresses, each must be the user's",
    needs=("admin",),
)
@requirement(
    "RFC6409",
    "6.3",
    "MAY",
    "a message inconsistent with the submitting user's permissions is refused with 550 5.7.1",
    needs=("admin",),
)
def test_from_header_not_owned(target: Target) -> None:
    user, other = fresh_user(target), fresh_user(target)
    client = submission(target, user)
    reply = data_reply(client, user, f"Someone Else <{other.address}>")
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)
    reply = data_reply(client, user, f"<{user.address}>, <{other.address}>")
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)
    data_reply(client, user, f"Me <{user.address}>").expect(250, doing="DATA, From: my own")


# -- failed logins ----------------------------------------------------------------------------


def auth(client: SMTPClient, clock: ClockControl, user: str, password: str) -> tuple[Reply, int]:
    """AUTH PLAIN, moving the target's clock while the server holds its answer back.

    Returns the reply and how many times the clock had to move for it.
    """
    token64 = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    client.send_line(f"AUTH PLAIN {token64}")
    for moves in range(200):
        try:
            return client.read_reply(timeout=0.1), moves
        except SMTPTimeout:
            clock.advance(15)
    raise AssertionError("no reply to AUTH even after 50 minutes of the target's clock")


def auth_once(target: Target, clock: ClockControl, user: Account, password: str) -> Reply:
    """AUTH on a new connection (an old one may have timed out while the clock moved)."""
    with submission(target) as client:
        return auth(client, clock, user.address, password)[0]


@requirement(
    "PLATFORM",
    "submission.auth-lockout",
    "MUST",
    "after 10 failed logins within 15 minutes the account is locked for 30 minutes: even "
    "the right password gets 454 4.7.0; after the lockout it gets 235 again",
    needs=("admin", "clock"),
)
@requirement(
    "RFC4954",
    "6",
    "MUST",
    "a login refused for a temporary reason gets 454 4.7.0, not 535",
    needs=("admin", "clock"),
)
def test_lockout_after_failed_logins(target: Target, clock: ClockControl) -> None:
    user = fresh_user(target)
    client = submission(target)
    try:
        for i in range(MAX_FAILURES):
            if client.closed:  # some servers hang up after several failures: fine
                client.close()
                client = submission(target)
            reply, _ = auth(client, clock, user.address, f"wrong-{i}")
            assert (reply.code, reply.enhanced) == (535, "5.7.8"), f"failure {i + 1}: {reply}"
    finally:
        client.close()
    locked = auth_once(target, clock, user, user.password)
    assert (locked.code, locked.enhanced) == (454, "4.7.0"), str(locked)
    clock.advance(LOCKOUT - 300)
    still = auth_once(target, clock, user, user.password)
    assert (still.code, still.enhanced) == (454, "4.7.0"), f"25 minutes later: {still}"
    clock.advance(300 + 60)
    auth_once(target, clock, user, user.password).expect(235, doing="AUTH after the lockout")


@requirement(
    "PLATFORM",
    "submission.auth-slowdown",
    "SHOULD",
    "after a few failed logins, each further 535 is held back on the server's clock",
    needs=("admin", "clock"),
)
def test_failed_logins_are_slowed(target: Target, clock: ClockControl) -> None:
    user = fresh_user(target)
    with submission(target) as client:
        for i in range(3):
            auth(client, clock, user.address, f"typo-{i}")[0].expect(535, doing="a typo")
        moves = 0
        for attempt in ("wrong-again", "and-again"):
            reply, waited = auth(client, clock, user.address, attempt)
            reply.expect(535, doing="a further failure")
            moves += waited
        assert moves > 0, "no reply to a further failure waited for the clock"
        auth(client, clock, user.address, user.password)[0].expect(235, doing="right password")
