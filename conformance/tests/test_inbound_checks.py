"""PLATFORM inbound checks: greylisting and DNS blocklists, spoken from claimed addresses."""

from __future__ import annotations

from typing import Any

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.target import DNSBL_ZONE, SPF_WHITELISTED, ClockControl, Target
from conformance.tests.outbound_support import proxied_mail

# TEST-NET-3 (RFC 5737): only ever claimed in PROXY headers, never contacted.
LISTED = "203.0.113.7"
LIGHT = "203.0.113.10"


def transaction(smtp: SMTPConnector, client: str, sender: str, rcpt: str) -> Any:
    c, mail = proxied_mail(smtp, client, sender)
    mail.expect(250, doing="MAIL FROM")
    return c, c.rcpt(rcpt)


@requirement(
    "PLATFORM",
    "inbound.greylist",
    "MUST",
    "an unknown triplet gets 451 4.7.1, a retry after the delay is accepted",
    needs=("proxy-protocol", "clock"),
)
def test_greylisting(smtp: SMTPConnector, target: Target, clock: ClockControl) -> None:
    rcpt = target.account.address
    _, first = transaction(smtp, "198.51.100.20", "news@grey.example", rcpt)
    assert (first.code, first.enhanced) == (451, "4.7.1"), str(first)
    clock.advance(60)
    _, early = transaction(smtp, "198.51.100.20", "news@grey.example", rcpt)
    assert early.code == 451, "a retry before the delay is still greylisted"
    clock.advance(300)
    # Big senders retry from a neighbour: the /24 counts, not the address.
    _, later = transaction(smtp, "198.51.100.21", "news@grey.example", rcpt)
    assert later.code == 250, str(later)
    # The network passed once: another sender from it is not greylisted.
    _, other = transaction(smtp, "198.51.100.22", "billing@grey.example", rcpt)
    assert other.code == 250, str(other)


@requirement(
    "PLATFORM",
    "inbound.greylist",
    "MUST",
    "authenticated submission is never greylisted",
    needs=("proxy-protocol",),
)
def test_submission_not_greylisted(smtp: SMTPConnector, target: Target) -> None:
    c = smtp.session("submission", tls=True)
    acc = target.account
    c.auth_plain(acc.address, acc.password).expect(235, doing="AUTH")
    c.mail(acc.address).expect(250, doing="MAIL FROM")
    assert c.rcpt(target.second_account.address).code == 250


@requirement(
    "PLATFORM",
    "inbound.dnsbl",
    "MUST",
    "a client listed on a configured blocklist is refused with 554 5.7.1 naming the list",
    needs=("proxy-protocol", "fake-dns"),
)
def test_dnsbl_refuses_listed_client(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    fake_dns.blocklist(DNSBL_ZONE).list(LISTED, "127.0.0.2", txt="https://example.test/lookup")
    _, reply = transaction(smtp, LISTED, "a@listed.example", target.account.address)
    assert (reply.code, reply.enhanced) == (554, "5.7.1"), str(reply)
    assert DNSBL_ZONE in reply.text


@requirement(
    "PLATFORM",
    "inbound.dnsbl",
    "MUST",
    "a light listing only adds score, and a DNS failure never refuses",
    needs=("proxy-protocol", "fake-dns", "clock"),
)
def test_dnsbl_light_listing_and_failure(
    smtp: SMTPConnector, target: Target, fake_dns: Any, clock: ClockControl
) -> None:
    fake_dns.blocklist(DNSBL_ZONE).list(LIGHT, "127.0.0.10")
    rcpt = target.account.address
    _, reply = transaction(smtp, LIGHT, "a@light.example", rcpt)
    assert reply.code in (250, 451), str(reply)  # greylisting may still ask it to wait
    broken = "203.0.113.11"
    fake_dns.fail(f"11.113.0.203.{DNSBL_ZONE}", mode="servfail")
    try:
        _, reply = transaction(smtp, broken, "a@broken.example", rcpt)
        assert reply.code in (250, 451) and reply.code != 554, str(reply)
    finally:
        fake_dns.heal(f"11.113.0.203.{DNSBL_ZONE}")


@requirement(
    "PLATFORM",
    "inbound.greylist",
    "SHOULD",
    "a whitelisted sender domain whose SPF passes is not greylisted; one whose SPF fails is",
    needs=("proxy-protocol", "fake-dns"),
)
def test_spf_whitelisted_domain_skips_greylisting(
    smtp: SMTPConnector, target: Target, fake_dns: Any
) -> None:
    fake_dns.spf(SPF_WHITELISTED, "v=spf1 ip4:192.0.2.0/24 -all")
    try:
        rcpt = target.account.address
        _, passing = transaction(smtp, "192.0.2.55", f"news@{SPF_WHITELISTED}", rcpt)
        assert passing.code == 250, str(passing)
        # Same domain, but from an address its SPF does not list: greylisted as usual.
        _, failing = transaction(smtp, "203.0.113.99", f"news@{SPF_WHITELISTED}", rcpt)
        assert (failing.code, failing.enhanced) == (451, "4.7.1"), str(failing)
    finally:
        fake_dns.remove(SPF_WHITELISTED, "TXT")
