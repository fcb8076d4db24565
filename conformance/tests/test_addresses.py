"""PLATFORM addresses: subaddresses, catch-alls, aliases with several targets (local and
elsewhere), alias domains, and deleted accounts, seen from the MX and read over IMAP.

Each test makes its own accounts and domains (capability ``admin``); the operations beyond
adding domains and accounts are the target admin's own (``set_catchall``, ``add_alias``,
``add_alias_domain``, ``delete_user``): a target without one has the test not applicable.
"""

from __future__ import annotations

import secrets
from typing import Any

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.target import Account, Target
from conformance.tests.outbound_support import (
    admin_op,
    fresh_user,
    inbox,
    submit,
    token,
    wait_until,
)

SENDER = "someone@sender.example"
DATE = "Thu, 01 Jan 2026 00:00:00 +0000"


def send(smtp: SMTPConnector, rcpts: list[str], subject: str) -> None:
    """One inbound transaction to the MX, every step expected to succeed."""
    submit(smtp.session("smtp"), SENDER, rcpts, subject)


def arrived(target: Target, account: Account, subject: str, folder: str = "INBOX") -> bytes:
    found: bytes = wait_until(
        lambda: next((m for m in inbox(target, account, folder) if subject.encode() in m), None),
        10,
        f"{subject!r} in {account.address}'s {folder}",
    )
    return found


def rcpt_reply(smtp: SMTPConnector, rcpt: str) -> Any:
    client = smtp.session("smtp")
    client.mail(SENDER).expect(250, doing="MAIL FROM")
    return client.rcpt(rcpt)


@requirement(
    "PLATFORM",
    "addresses.subaddress",
    "MUST",
    "mail to user+detail@domain (RFC 5233 subaddress) is accepted and delivered to user@domain",
    needs=("admin",),
)
def test_subaddress_reaches_the_account(smtp: SMTPConnector, target: Target) -> None:
    user = fresh_user(target, "sub")
    local, domain = user.address.split("@")
    subject = f"detail {token()}"
    send(smtp, [f"{local}+news-{token()}@{domain}"], subject)
    arrived(target, user, subject)


@requirement(
    "PLATFORM",
    "addresses.catch-all",
    "MUST",
    "a domain's catch-all receives mail for its addresses that do not exist; without one they "
    "get 550 5.1.1 at RCPT",
    needs=("admin",),
)
def test_catch_all(smtp: SMTPConnector, target: Target) -> None:
    assert target.admin is not None
    domain = f"catch-{token()}.test"
    target.admin.add_domain(domain)
    keeper = fresh_user(target, "catch")
    nobody = f"nobody-{token()}@{domain}"
    reply = rcpt_reply(smtp, nobody)
    assert (reply.code, reply.enhanced) == (550, "5.1.1"), str(reply)
    admin_op(target, "set_catchall")(domain, keeper.address)
    subject = f"catch-all {token()}"
    send(smtp, [nobody], subject)
    arrived(target, keeper, subject)


@requirement(
    "PLATFORM",
    "addresses.alias-targets",
    "MUST",
    "an alias with several targets delivers to each: accounts here and an address elsewhere "
    "(relayed to its MX)",
    needs=("admin", "fake-dns"),
)
def test_alias_with_several_targets(
    smtp: SMTPConnector, target: Target, fake_internet: Any
) -> None:
    first, second = fresh_user(target, "al1"), fresh_user(target, "al2")
    gmail = fake_internet.mx["gmail"]
    tag = token()
    remote = f"ext-{tag}@{fake_internet.providers['gmail'].domain}"
    alias = f"team-{tag}@{target.domain}"
    admin_op(target, "add_alias")(alias, first.address, second.address, remote)
    subject = f"team {tag}"
    send(smtp, [alias], subject)
    arrived(target, first, subject)
    arrived(target, second, subject)
    (copy,) = wait_until(
        lambda: [d for d in gmail.deliveries if remote in d.rcpt_tos], 10, f"{remote} delivered"
    )
    assert subject.encode() in copy.data


@requirement(
    "PLATFORM",
    "addresses.alias-domain",
    "MUST",
    "mail to any address of an alias domain is delivered as if sent to the domain it aliases",
    needs=("admin",),
)
def test_alias_domain(smtp: SMTPConnector, target: Target) -> None:
    assert target.admin is not None
    tag = token()
    real, other = f"real-{tag}.test", f"other-{tag}.test"
    target.admin.add_domain(real)
    user = Account(f"u-{tag}@{real}", secrets.token_urlsafe(15))
    target.admin.add_user(user.address, user.password)
    admin_op(target, "add_alias_domain")(other, real)
    subject = f"alias domain {tag}"
    send(smtp, [f"u-{tag}@{other}"], subject)
    arrived(target, user, subject)
    reply = rcpt_reply(smtp, f"nobody-{tag}@{other}")
    assert (reply.code, reply.enhanced) == (550, "5.1.1"), str(reply)


@requirement(
    "PLATFORM",
    "addresses.delete",
    "MUST",
    "a deleted account's address gets 550 5.1.1 at RCPT, and the mail it had is in the "
    "archive account named when it was deleted",
    needs=("admin",),
)
def test_deleted_account(smtp: SMTPConnector, target: Target) -> None:
    user, keeper = fresh_user(target, "gone"), fresh_user(target, "keeper")
    subject = f"before deletion {token()}"
    send(smtp, [user.address], subject)
    arrived(target, user, subject)
    folder = admin_op(target, "delete_user")(user.address, keeper.address)
    reply = rcpt_reply(smtp, user.address)
    assert (reply.code, reply.enhanced) == (550, "5.1.1"), str(reply)
    arrived(target, keeper, subject, f"{folder}/INBOX")


@requirement(
    "PLATFORM",
    "addresses.disabled-target",
    "MUST",
    "an alias delivers to its enabled accounts only; one whose accounts are all disabled gets "
    "550 5.2.1 at RCPT",
    needs=("admin",),
)
def test_alias_with_disabled_targets(smtp: SMTPConnector, target: Target) -> None:
    away, here = fresh_user(target, "away"), fresh_user(target, "here")
    disable = admin_op(target, "disable_user")
    add = admin_op(target, "add_alias")
    tag = token()
    group, single = f"group-{tag}@{target.domain}", f"single-{tag}@{target.domain}"
    add(group, away.address, here.address)  # the disabled account first
    add(single, away.address)
    disable(away.address)
    subject = f"to the group {tag}"
    send(smtp, [group], subject)
    arrived(target, here, subject)
    reply = rcpt_reply(smtp, single)
    assert (reply.code, reply.enhanced) == (550, "5.2.1"), str(reply)
    reply = rcpt_reply(smtp, away.address)
    assert (reply.code, reply.enhanced) == (550, "5.2.1"), str(reply)


@requirement(
    "RFC5321",
    "6.3",
    "MUST",
    "a loop is detected and stopped: a message whose header counts far more Received fields "
    "than any route needs (150) is bounced to its sender (5.4.6), not delivered; one with 90 "
    "is delivered (the threshold SHOULD be at least 100)",
    needs=("admin",),
)
def test_too_many_hops_bounce(smtp: SMTPConnector, target: Target) -> None:
    sender, rcpt = fresh_user(target, "hops"), fresh_user(target, "hops")
    subject = f"hops {token()}"
    for count in (90, 150):
        trace = [f"Received: from h{i}.example by h{i + 1}.example; {DATE}" for i in range(count)]
        submit(
            smtp.session("smtp"),
            sender.address,
            [rcpt.address],
            f"{subject} {count}",
            headers=trace,
        )
    arrived(target, rcpt, f"{subject} 90")
    bounce = arrived(target, sender, f"{subject} 150")
    assert b"5.4.6" in bounce, bounce[:2000]
    assert not [m for m in inbox(target, rcpt) if f"{subject} 150".encode() in m]
