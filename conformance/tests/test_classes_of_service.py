"""PLATFORM classes of service: named bundles (storage and message quota, rate limits,
largest message, whether forwarding elsewhere, lists and external recipients are allowed)
given to domains and accounts; the account's class applies, else its domain's, else the
class named "default". The quota, rate-limit and size checks read the class that applies.

The classes are the target admin's own operations (``create_cos(name, **settings)``,
``assign_cos(target, name)``, ``delete_cos(name)``): a target without them has the tests
not applicable. Each test makes its own domain or accounts and takes its classes away.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.target import Account, Target
from conformance.tests.outbound_support import (
    admin_op,
    fresh_user,
    inbox,
    message,
    submission,
    token,
    wait_until,
)

SENDER = "someone@sender.example"


@contextlib.contextmanager
def cos(target: Target, name: str, *given: str, **settings: Any) -> Iterator[str]:
    """A class with ``settings``, given to each of ``given`` for the length of a test."""
    name = f"{name}-{token()}" if name != "default" else name
    admin_op(target, "create_cos")(name, **settings)
    assign = admin_op(target, "assign_cos")
    try:
        for who in given:
            assign(who, name)
        yield name
    finally:
        for who in given:
            assign(who, None)
        admin_op(target, "delete_cos")(name)


def fresh_domain(target: Target) -> tuple[str, Account, Account]:
    """A new domain with two accounts."""
    assert target.admin is not None
    domain = f"cos-{token()}.example"
    target.admin.add_domain(domain)
    users = [Account(f"{n}@{domain}", secrets.token_urlsafe(12)) for n in ("ann", "ben")]
    for u in users:
        target.admin.add_user(u.address, u.password)
    return domain, users[0], users[1]


def inbound(smtp: SMTPConnector, rcpt: str, size: int) -> Any:
    """One message of about ``size`` bytes to ``rcpt`` through the MX; the reply to DATA."""
    c = smtp.session("smtp")
    c.mail(SENDER).expect(250, doing="MAIL FROM")
    c.rcpt(rcpt).expect(250, doing="RCPT TO")
    body = ("x" * 70 + "\r\n") * (size // 72)
    return c.data(message(SENDER, [rcpt], "sized", body=body))


@requirement(
    "PLATFORM",
    "cos.precedence",
    "MUST",
    "the account's class applies before its domain's, and the domain's before the default "
    "class (seen through the largest message each allows: 552 5.3.4 past it)",
    needs=("admin",),
)
def test_precedence_account_domain_default(smtp: SMTPConnector, target: Target) -> None:
    domain, ann, ben = fresh_domain(target)
    other = fresh_user(target, "cos")
    with (
        cos(target, "default", max_message_size=3000),
        cos(target, "small", domain, max_message_size=6000),
        cos(target, "large", ann.address, max_message_size=0),
    ):
        assert inbound(smtp, ann.address, 8000).code == 250, "ann's own class: no limit"
        refused = inbound(smtp, ben.address, 8000)
        assert (refused.code, refused.enhanced) == (552, "5.3.4"), str(refused)
        assert inbound(smtp, ben.address, 4000).code == 250, "the domain's class before default"
        refused = inbound(smtp, other.address, 4000)
        assert (refused.code, refused.enhanced) == (552, "5.3.4"), f"the default: {refused}"
    assert inbound(smtp, other.address, 4000).code == 250, "no class: the platform's limit"


@requirement(
    "PLATFORM",
    "cos.quota",
    "MUST",
    "the mailbox quota is the class's: a box full by its class's message quota gets 452 "
    "4.2.2 at RCPT",
    needs=("admin",),
)
def test_quota_from_the_class(smtp: SMTPConnector, target: Target) -> None:
    user = fresh_user(target, "cosq")
    with cos(target, "one", user.address, quota_messages=1):
        assert inbound(smtp, user.address, 10).code == 250
        wait_until(lambda: inbox(target, user), 10, "the first message in the box")
        c = smtp.session("smtp")
        c.mail(SENDER).expect(250, doing="MAIL FROM")
        full = c.rcpt(user.address)
        assert (full.code, full.enhanced) == (452, "4.2.2"), str(full)


@requirement(
    "PLATFORM",
    "cos.ratelimit",
    "MUST",
    "submission rate limits are the class's: past its recipients per window, 450 4.7.1",
    needs=("admin",),
)
def test_rate_limit_from_the_class(target: Target) -> None:
    user = fresh_user(target, "cosr")
    with cos(target, "slow", user.address, rate_recipients="2/1h"):
        c = submission(target, user)
        c.mail(user.address).expect(250, doing="MAIL FROM")
        c.rcpt(target.account.address).expect(250, doing="first RCPT")
        c.rcpt(target.second_account.address).expect(250, doing="second RCPT")
        third = c.rcpt(user.address)
        assert (third.code, third.enhanced) == (450, "4.7.1"), str(third)


@requirement(
    "PLATFORM",
    "cos.external",
    "MUST",
    "an account whose class refuses external recipients gets 550 5.7.1 at RCPT for other "
    "domains, and still reaches its own",
    needs=("admin",),
)
def test_external_recipients_refused_by_class(target: Target) -> None:
    user, colleague = fresh_user(target, "cose"), fresh_user(target, "cose")
    with cos(target, "internal", user.address, external=False):
        c = submission(target, user)
        c.mail(user.address).expect(250, doing="MAIL FROM")
        refused = c.rcpt("someone@elsewhere.example")
        assert (refused.code, refused.enhanced) == (550, "5.7.1"), str(refused)
        c.rcpt(colleague.address).expect(250, doing="RCPT TO a colleague")
