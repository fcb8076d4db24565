"""PLATFORM inbound.mailbox: unknown, disabled and full mailboxes are refused at RCPT."""

from __future__ import annotations

import secrets
from typing import Any

from conformance import not_applicable, requirement
from conformance.plugin import SMTPConnector
from conformance.smtp_client import SMTPClient
from conformance.target import Admin, Target


def fresh_user(admin: Admin, target: Target) -> str:
    address = f"mbox-{secrets.token_hex(4)}@{target.domain}"
    admin.add_user(address, secrets.token_urlsafe(12))
    return address


def admin_op(admin: Admin, name: str) -> Any:
    op = getattr(admin, name, None)
    if op is None:
        not_applicable(f"the target's admin cannot {name.replace('_', ' ')}")
    return op


def rcpt_session(smtp: SMTPConnector) -> SMTPClient:
    client = smtp.session("smtp")
    client.mail("sender@remote.example").expect(250, doing="MAIL FROM")
    return client


@requirement(
    "PLATFORM",
    "inbound.mailbox",
    "MUST",
    "a recipient with no mailbox here gets 550 5.1.1 at RCPT",
)
def test_unknown_user(smtp: SMTPConnector, target: Target) -> None:
    reply = rcpt_session(smtp).rcpt(f"no-such-user-{secrets.token_hex(3)}@{target.domain}")
    assert (reply.code, reply.enhanced) == (550, "5.1.1"), str(reply)


@requirement(
    "PLATFORM",
    "inbound.mailbox",
    "MUST",
    "a disabled account gets 550 5.2.1 at RCPT",
    needs=("admin",),
)
def test_disabled_account(smtp: SMTPConnector, admin: Admin, target: Target) -> None:
    address = fresh_user(admin, target)
    admin_op(admin, "disable_user")(address)
    reply = rcpt_session(smtp).rcpt(address)
    assert (reply.code, reply.enhanced) == (550, "5.2.1"), str(reply)


@requirement(
    "PLATFORM",
    "inbound.mailbox",
    "MUST",
    "a mailbox over its quota gets 452 4.2.2 at RCPT, and other recipients still get mail",
    needs=("admin",),
)
def test_over_quota(smtp: SMTPConnector, admin: Admin, target: Target) -> None:
    full, other = fresh_user(admin, target), fresh_user(admin, target)
    admin_op(admin, "set_quota")(full, messages=1)
    first = rcpt_session(smtp)
    first.rcpt(full).expect(250, doing="RCPT TO (room for one)")
    first.data(b"Subject: fills the box\r\n\r\nhello\r\n").expect(250, doing="DATA")
    admin_op(admin, "wait_delivered")()
    client = rcpt_session(smtp)
    reply = client.rcpt(full)
    assert (reply.code, reply.enhanced) == (452, "4.2.2"), str(reply)
    assert client.rcpt(other).code == 250
