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


def sized_mail(client: Any, sender: str, size: int) -> Any:
    """MAIL FROM:<sender> SIZE=size (RFC 1870)."""
    return client.mail(sender, [f"SIZE={size}"])


@requirement(
    "RFC1870",
    "6",
    "MUST",
    "MAIL declaring a SIZE over the signed-in user's class-of-service maximum gets 552 "
    "5.3.4, within it 250",
    needs=("admin",),
)
def test_declared_size_over_the_senders_class(target: Target) -> None:
    user = fresh_user(target, "cossz")
    with cos(target, "small", user.address, max_message_size=5000):
        c = submission(target, user)
        refused = sized_mail(c, user.address, 6000)
        assert (refused.code, refused.enhanced) == (552, "5.3.4"), str(refused)
        sized_mail(c, user.address, 4000).expect(250, doing="MAIL FROM with SIZE=4000")


@requirement(
    "RFC1870",
    "6",
    "MUST",
    "RCPT of a recipient whose class of service takes smaller messages than the declared "
    "SIZE gets 552 5.3.4 for that recipient alone; the others get 250",
    needs=("admin",),
)
def test_declared_size_over_a_recipients_class(smtp: SMTPConnector, target: Target) -> None:
    small, other = fresh_user(target, "cossr"), fresh_user(target, "cossr")
    with cos(target, "small", small.address, max_message_size=5000):
        c = smtp.session("smtp")
        sized_mail(c, SENDER, 6000).expect(250, doing="MAIL FROM with SIZE=6000")
        refused = c.rcpt(small.address)
        assert (refused.code, refused.enhanced) == (552, "5.3.4"), str(refused)
        c.rcpt(other.address).expect(250, doing="RCPT TO a recipient without the class")


@requirement(
    "PLATFORM",
    "cos.size-understated",
    "MUST",
    "a message larger than the SIZE its MAIL declared is held against the recipients' "
    "classes at the end of DATA: past a class's maximum, 552 5.3.4",
    needs=("admin",),
)
def test_understated_size_is_checked_at_data(smtp: SMTPConnector, target: Target) -> None:
    small = fresh_user(target, "cossu")
    with cos(target, "small", small.address, max_message_size=5000):
        c = smtp.session("smtp")
        sized_mail(c, SENDER, 2000).expect(250, doing="MAIL FROM with SIZE=2000")
        c.rcpt(small.address).expect(250, doing="RCPT TO within the declared size")
        body = ("x" * 70 + "\r\n") * (8000 // 72)
        refused = c.data(message(SENDER, [small.address], "understated", body=body))
        assert (refused.code, refused.enhanced) == (552, "5.3.4"), str(refused)


@requirement(
    "RFC1870",
    "6",
    "SHOULD",
    "RCPT of a recipient whose mailbox has no room left for the declared SIZE gets 452 "
    "4.2.2 (insufficient storage, for now); a smaller SIZE is taken",
    needs=("admin",),
)
def test_declared_size_over_the_room_left(smtp: SMTPConnector, target: Target) -> None:
    user = fresh_user(target, "cossq")
    admin_op(target, "set_quota")(user.address, bytes=20_000)
    c = smtp.session("smtp")
    sized_mail(c, SENDER, 30_000).expect(250, doing="MAIL FROM with SIZE=30000")
    full = c.rcpt(user.address)
    assert (full.code, full.enhanced) == (452, "4.2.2"), str(full)
    c.command("RSET").expect(250, doing="RSET")
    sized_mail(c, SENDER, 10_000).expect(250, doing="MAIL FROM with SIZE=10000")
    c.rcpt(user.address).expect(250, doing="RCPT TO with room for it")


@requirement(
    "PLATFORM",
    "cos.lists",
    "MUST",
    "a class of service without lists keeps its accounts off lists: a list is not made for "
    "an owner of that class, and posts get 550 5.7.1 at RCPT from a user of that class and "
    "to a list whose owner's class it became",
    needs=("admin",),
)
def test_lists_refused_by_class(smtp: SMTPConnector, target: Target) -> None:
    owner, poster = fresh_user(target, "cosl"), fresh_user(target, "cosl")
    team = f"team-{token()}@{target.domain}"
    admin_op(target, "create_list")(team, owner=owner.address, members=[owner.address])
    with cos(target, "nolists", poster.address, owner.address, lists=False):
        c = submission(target, poster)
        c.mail(poster.address).expect(250, doing="MAIL FROM")
        refused = c.rcpt(team)
        assert (refused.code, refused.enhanced) == (550, "5.7.1"), f"poster's class: {refused}"
        outsider = smtp.session("smtp")
        outsider.mail(SENDER).expect(250, doing="MAIL FROM")
        closed = outsider.rcpt(team)
        assert (closed.code, closed.enhanced) == (550, "5.7.1"), f"owner's class: {closed}"
        another = f"team-{token()}@{target.domain}"
        try:
            admin_op(target, "create_list")(another, owner=owner.address)
        except Exception as e:
            assert "lists" in str(e), str(e)
        else:
            raise AssertionError(f"{another} was made for an owner whose class has no lists")
    outsider = smtp.session("smtp")
    outsider.mail(SENDER).expect(250, doing="MAIL FROM")
    outsider.rcpt(team).expect(250, doing="RCPT TO the list once the class is gone")


@requirement(
    "PLATFORM",
    "cos.forwarding",
    "MUST",
    "an account or an alias whose class forbids forwarding elsewhere never sends mail "
    "elsewhere: such a forward or alias is refused when made; one made before the class "
    "changed files into its mailboxes (the account keeps what it forwarded), or bounces to "
    "the sender when it has none (never dropped)",
    needs=("admin",),
)
def test_forwarding_refused_by_class(smtp: SMTPConnector, target: Target) -> None:
    domain, ann, ben = fresh_domain(target)
    sender = fresh_user(target, "cosf")
    net = target.fake_internet
    far = net.providers["gmail"].domain if net is not None else "elsewhere.example"
    elsewhere = f"far-{token()}@{far}"
    add_alias, set_forward = admin_op(target, "add_alias"), admin_op(target, "set_forward")
    add_alias(f"both@{domain}", ann.address, elsewhere)
    add_alias(f"away@{domain}", elsewhere)
    set_forward(ben.address, [elsewhere], keep=False)
    with cos(target, "home", domain, forward_remote=False):
        for refused in (
            lambda: add_alias(f"new@{domain}", elsewhere),
            lambda: set_forward(ann.address, [elsewhere], keep=True),
        ):
            try:
                refused()
            except Exception as e:
                assert "forward" in str(e), str(e)
            else:
                raise AssertionError("forwarding elsewhere was set in a domain that forbids it")
        subject = f"kept home {token()}"
        for rcpt in (f"both@{domain}", f"away@{domain}", ben.address):
            c = smtp.session("smtp")
            c.mail(sender.address).expect(250, doing="MAIL FROM")
            c.rcpt(rcpt).expect(250, doing=f"RCPT TO {rcpt}")
            c.data(message(sender.address, [rcpt], f"{subject} {rcpt}")).expect(250, doing="DATA")
        for account, rcpt in ((ann, f"both@{domain}"), (ben, ben.address)):
            wait_until(
                lambda a=account, r=rcpt: [
                    m for m in inbox(target, a) if f"{subject} {r}".encode() in m
                ],
                10,
                f"mail for {rcpt} kept in {account.address}'s mailbox",
            )
        bounce = wait_until(
            lambda: [m for m in inbox(target, sender) if f"{subject} away@".encode() in m],
            10,
            "a bounce for the alias that only forwards elsewhere",
        )
        assert b"5.7.1" in bounce[0], bounce[0][:2000]
    if net is not None:  # where it would have gone, had it left
        assert not [d for d in net.mx["gmail"].deliveries if elsewhere in d.rcpt_tos]
