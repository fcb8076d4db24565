"""PLATFORM access lists, as Postfix access maps: an administrator's rules by client address
or network, HELO name, sender and recipient, platform-wide or for one domain's recipients.
Refusals come in the dialogue, at the stage that knows what the rule names, with the
rule's own text: the platform's client, HELO and sender rules at MAIL FROM, a domain's
rules and recipient rules at RCPT TO.

The rules are the target admin's own operations (``add_access(scope, kind, pattern,
action, text)`` with scope "" for the platform's, ``remove_access``): a target without
them has the tests not applicable. Clients are claimed with PROXY headers (TEST-NET
addresses, never contacted).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.target import Target
from conformance.tests.outbound_support import (
    admin_op,
    fresh_user,
    inbox,
    message,
    proxied_mail,
    wait_until,
)


def token() -> str:
    return secrets.token_hex(4)


@contextlib.contextmanager
def rule(
    target: Target, scope: str, kind: str, pattern: str, action: str, text: str = ""
) -> Iterator[None]:
    """An access rule for the length of a test."""
    add, remove = admin_op(target, "add_access"), admin_op(target, "remove_access")
    add(scope, kind, pattern, action, text)
    try:
        yield
    finally:
        remove(scope, kind, pattern)


def mail_from(
    smtp: SMTPConnector, client: str, sender: str, helo: str = "mta.sender.example"
) -> Any:
    return proxied_mail(smtp, client, sender, helo)


def denied(reply: Any, text: str) -> None:
    """Refused by an access rule: 554 5.7.1 with the rule's text."""
    assert (reply.code, reply.enhanced) == (554, "5.7.1"), str(reply)
    assert text in reply.text, str(reply)


@requirement(
    "PLATFORM",
    "access.client",
    "MUST",
    "a client in a rejected network is refused at MAIL FROM with 554 5.7.1 and the rule's text",
    needs=("admin", "proxy-protocol"),
)
def test_client_network_rejected(smtp: SMTPConnector, target: Target) -> None:
    text = f"Your network is blocked here, ticket {token()}"
    with rule(target, "", "client", "198.51.100.64/26", "reject", text):
        _, refused = mail_from(smtp, "198.51.100.70", f"a-{token()}@sender.example")
        denied(refused, text)
        assert "198.51.100.70" in refused.text
        _, outside = mail_from(smtp, "198.51.100.20", f"a-{token()}@sender.example")
        assert outside.code == 250, str(outside)


@requirement(
    "PLATFORM",
    "access.helo",
    "MUST",
    "a rejected HELO name (and its subdomains) is refused at MAIL FROM with the rule's text",
    needs=("admin", "proxy-protocol"),
)
def test_helo_rejected(smtp: SMTPConnector, target: Target) -> None:
    name = f"bots-{token()}.example"
    with rule(target, "", "helo", name, "reject", "No bots"):
        _, refused = mail_from(smtp, "198.51.100.30", "a@sender.example", helo=f"h1.{name}")
        denied(refused, "No bots")


@requirement(
    "PLATFORM",
    "access.sender",
    "MUST",
    "a rejected sender domain is refused at MAIL FROM; a rule on one of its addresses is "
    "closer and wins",
    needs=("admin", "proxy-protocol"),
)
def test_sender_domain_rejected_address_accepted(smtp: SMTPConnector, target: Target) -> None:
    domain = f"spammy-{token()}.example"
    with (
        rule(target, "", "sender", domain, "reject", "We take no mail from this domain"),
        rule(target, "", "sender", f"billing@{domain}", "accept"),
    ):
        _, refused = mail_from(smtp, "198.51.100.31", f"offers@{domain}")
        denied(refused, "We take no mail from this domain")
        _, sub = mail_from(smtp, "198.51.100.31", f"x@mail.{domain}")
        assert sub.code == 554, f"a subdomain of a rejected domain: {sub}"
        _, ok = mail_from(smtp, "198.51.100.31", f"billing@{domain}")
        assert ok.code == 250, str(ok)


@requirement(
    "PLATFORM",
    "access.recipient",
    "MUST",
    "a rejected recipient is refused at RCPT TO with the rule's text; the others are accepted",
    needs=("admin", "proxy-protocol"),
)
def test_recipient_rejected(smtp: SMTPConnector, target: Target) -> None:
    closed = fresh_user(target, "closed")
    open_ = target.account.address
    with rule(target, "", "recipient", closed.address, "reject", "This mailbox takes no mail"):
        c, mail = mail_from(smtp, "198.51.100.32", "a@sender.example")
        mail.expect(250, doing="MAIL FROM")
        refused = c.rcpt(closed.address)
        denied(refused, "This mailbox takes no mail")
        assert c.rcpt(open_).code in (250, 451)  # greylisting may ask the new triple to wait


@requirement(
    "PLATFORM",
    "access.domain",
    "MUST",
    "a domain's rules refuse mail for its own recipients only, at RCPT TO",
    needs=("admin", "proxy-protocol"),
)
def test_domain_rule_applies_to_its_recipients_only(smtp: SMTPConnector, target: Target) -> None:
    assert target.admin is not None
    other = f"d{token()}.example"
    target.admin.add_domain(other)
    theirs = f"user@{other}"
    target.admin.add_user(theirs, secrets.token_urlsafe(12))
    with rule(target, other, "client", "198.51.100.128/25", "reject", "Not from you"):
        c, mail = mail_from(smtp, "198.51.100.200", "a@sender.example")
        assert mail.code == 250, f"a domain's rule refuses only at RCPT: {mail}"
        refused = c.rcpt(theirs)
        denied(refused, "Not from you")
        assert c.rcpt(target.account.address).code in (250, 451)


@requirement(
    "PLATFORM",
    "access.accept",
    "MUST",
    "a client an access list accepts is not greylisted",
    needs=("admin", "proxy-protocol"),
)
def test_accepted_client_skips_greylisting(smtp: SMTPConnector, target: Target) -> None:
    rcpt = target.account.address
    client = f"192.0.2.{secrets.randbelow(200) + 20}"
    with rule(target, "", "client", f"{client}/32", "accept"):
        c, mail = mail_from(smtp, client, f"partner-{token()}@partner.example")
        mail.expect(250, doing="MAIL FROM")
        assert c.rcpt(rcpt).code == 250
    if "greylisting" in target.features:
        # The same kind of first attempt, without the rule: greylisted (451 4.7.1).
        c, mail = mail_from(smtp, "192.0.2.250", f"partner-{token()}@partner.example")
        mail.expect(250, doing="MAIL FROM")
        assert c.rcpt(rcpt).code == 451


@requirement(
    "PLATFORM",
    "access.restrict",
    "MUST",
    "a restricted recipient takes mail from the platform's authenticated users only; others "
    "get 550 5.7.1 saying so",
    needs=("admin", "proxy-protocol"),
)
def test_restricted_recipient(smtp: SMTPConnector, target: Target) -> None:
    internal = fresh_user(target, "staff")
    with rule(target, "", "recipient", internal.address, "restrict"):
        c, mail = mail_from(smtp, "198.51.100.33", "outsider@sender.example")
        mail.expect(250, doing="MAIL FROM")
        refused = c.rcpt(internal.address)
        assert (refused.code, refused.enhanced) == (550, "5.7.1"), str(refused)
        assert "authenticated" in refused.text
        colleague = target.account
        s = smtp.session("submission", tls=True)
        s.auth_plain(colleague.address, colleague.password).expect(235, doing="AUTH")
        subject = f"internal {token()}"
        s.mail(colleague.address).expect(250, doing="MAIL FROM")
        s.rcpt(internal.address).expect(250, doing="RCPT TO")
        body = message(colleague.address, [internal.address], subject)
        s.data(body).expect(250, doing="DATA")
        wait_until(
            lambda: any(subject.encode() in m for m in inbox(target, internal)),
            10,
            "the colleague's message",
        )


@requirement(
    "PLATFORM",
    "access.canonical-recipient",
    "MUST",
    "rules on a recipient and on its domain hold for every spelling that reaches it: its "
    "subaddresses (user+detail) and its address in an alias domain (whose recipients are "
    "under the rules of the domain it delivers as)",
    needs=("admin", "proxy-protocol"),
)
def test_rules_hold_for_subaddresses_and_alias_domains(smtp: SMTPConnector, target: Target) -> None:
    assert target.admin is not None
    real, alias = f"r{token()}.example", f"a{token()}.example"
    target.admin.add_domain(real)
    admin_op(target, "add_alias_domain")(alias, real)
    staff, anyone = f"staff@{real}", f"anyone@{real}"
    for address in (staff, anyone):
        target.admin.add_user(address, secrets.token_urlsafe(12))
    with (
        rule(target, "", "recipient", staff, "restrict"),
        rule(target, real, "client", "198.51.100.64/28", "reject", "Not for this domain"),
    ):
        c, mail = mail_from(smtp, "198.51.100.34", "outsider@sender.example")
        mail.expect(250, doing="MAIL FROM")
        for spelling in (f"staff+x@{real}", f"staff@{alias}", f"staff+x@{alias}"):
            refused = c.rcpt(spelling)
            assert (refused.code, refused.enhanced) == (550, "5.7.1"), f"{spelling}: {refused}"
        assert c.rcpt(f"anyone@{alias}").code in (250, 451)
        c, mail = mail_from(smtp, "198.51.100.70", "a@sender.example")
        mail.expect(250, doing="MAIL FROM")
        denied(c.rcpt(f"anyone@{alias}"), "Not for this domain")
