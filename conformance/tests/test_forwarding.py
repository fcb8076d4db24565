"""PLATFORM forwarding: copies for addresses elsewhere, their SRS return path judged by SPF
where they arrive, refusals and bounces back to the original sender, forged bounces refused.

The original sender is a made-up domain of the test: its SPF record names one address that
is neither the suite's nor the relay's (so a forwarder that kept the sender's return path
fails SPF at the destination) and its MX is the fake yahoo.test MX, where what comes back
to it is seen. Each forwarding target is a fresh address at the fake gmail.test, whose MX
refuses mail failing SPF for that address only, as strict receivers do. The target is
expected to have published what its operator would (`mailspec dns records`): the SPF
record of its SRS domain and its ARC key, in the fake DNS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dkim as dkimpy
import dns.resolver
import pytest

from conformance import not_applicable, requirement
from conformance.plugin import SMTPConnector
from conformance.smtp_client import SMTPClient
from conformance.target import Target
from conformance.tests.outbound_support import (
    admin_op,
    fresh_user,
    inbox,
    message,
    steer,
    submit,
    token,
    wait_until,
)


class Story:
    """A sender elsewhere, an account here that forwards, and the forwarding target."""

    def __init__(self, target: Target, net: Any) -> None:
        tag = token()
        self.target = target
        self.net = net
        self.domain = f"orig-{tag}.example"
        self.sender = f"author@{self.domain}"
        net.dns.add(self.domain, "MX", f"10 {net.providers['yahoo'].mx_host}.")
        net.dns.spf(self.domain, "v=spf1 ip4:192.0.2.77 -all")
        self.user = fresh_user(target, "fwd")
        self.remote = f"fwd-{tag}@{net.providers['gmail'].domain}"
        self.gmail = net.mx["gmail"]
        self.yahoo = net.mx["yahoo"]

    def forward(self, *, keep: bool = False) -> None:
        admin_op(self.target, "set_forward")(self.user.address, [self.remote], keep=keep)

    def send(self, smtp: SMTPConnector, subject: str) -> None:
        """Mail from the sender to the forwarding account, through the MX."""
        submit(smtp.session("smtp"), self.sender, [self.user.address], subject)

    def forwarded(self, smtp: SMTPConnector) -> Any:
        """A message forwarded (no copy kept), as the destination received it."""
        self.forward()
        subject = f"forwarded {token()}"
        self.send(smtp, subject)
        return self.copy(subject)

    def dns_txt(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's DNS function: the destination's resolver reading the fake DNS."""
        return txt_of(self.net, name.decode()).encode()

    def copy(self, subject: str) -> Any:
        """The forwarded copy of ``subject`` as the destination received it."""
        found = wait_until(
            lambda: [
                d
                for d in self.gmail.deliveries
                if self.remote in d.rcpt_tos and subject.encode() in d.data
            ],
            10,
            f"{subject!r} forwarded to {self.remote}",
        )
        return found[0]

    def back_home(self) -> Any:
        """The one message that came back to the sender's own MX."""
        (found,) = wait_until(
            lambda: [d for d in self.yahoo.deliveries if self.sender in d.rcpt_tos],
            10,
            f"a message back to {self.sender}",
        )
        return found

    def bounce_to(self, smtp: SMTPConnector, address: str) -> tuple[SMTPClient, Any]:
        """A bounce's transaction (MAIL FROM:<>) as far as RCPT TO ``address``."""
        client = smtp.session("smtp")
        client.mail("").expect(250, doing="MAIL FROM:<>")
        return client, client.rcpt(address)


@pytest.fixture
def story(target: Target) -> Iterator[Story]:
    from fakes.mx import Rule

    target.require("admin", "fake-dns")
    net = target.fake_internet
    if net is None:
        not_applicable(f"target {target.name!r} runs without the fake internet")
    s = Story(target, net)
    strict = Rule(
        "rcpt", "gmail.unauthenticated.5xx", spf=["fail", "softfail"], recipient=[s.remote]
    )
    with steer(s.gmail, strict):
        yield s


@requirement(
    "PLATFORM",
    "forwarding.account",
    "MUST",
    "an account forwarding elsewhere: the copy arrives at the destination, and a copy stays "
    "in the account only when asked to keep one",
    needs=("admin", "fake-dns"),
)
def test_forwarding_with_and_without_a_copy(
    smtp: SMTPConnector, target: Target, story: Story
) -> None:
    story.forward(keep=False)
    first = f"no copy {token()}"
    story.send(smtp, first)
    story.copy(first)
    story.forward(keep=True)
    second = f"with a copy {token()}"
    story.send(smtp, second)
    story.copy(second)
    kept = b"".join(inbox(target, story.user))
    assert second.encode() in kept and first.encode() not in kept


@requirement(
    "PLATFORM",
    "forwarding.srs",
    "MUST",
    "forwarded mail leaves with a return path rewritten into the platform's domain (SRS), so "
    "it passes SPF at the destination; the author's DKIM signature still verifies there",
    needs=("admin", "fake-dns"),
)
def test_forwarded_mail_passes_spf_and_dkim_where_it_arrives(
    smtp: SMTPConnector, story: Story
) -> None:
    net = story.net
    # The author signs with a key of its own domain (the fake outlook.test's key pair).
    key = net.providers["outlook"].dkim_private_key
    net.dns.dkim(
        story.domain, "s1", txt_of(net, f"fake._domainkey.{net.providers['outlook'].domain}")
    )
    net.dns.dmarc(story.domain, "v=DMARC1; p=reject")
    story.forward()
    subject = f"dmarc protected {token()}"
    raw = message(story.sender, [story.user.address], subject)
    client = smtp.session("smtp")
    client.mail(story.sender).expect(250, doing="MAIL FROM")
    client.rcpt(story.user.address).expect(250, doing="RCPT TO")
    client.data(dkimpy.sign(raw, b"s1", story.domain.encode(), key) + raw).expect(250, doing="DATA")
    copy = story.copy(subject)
    assert copy.mail_from.upper().startswith("SRS0"), f"return path kept: {copy.mail_from}"
    assert copy.spf == "pass", f"SPF at the destination: {copy.spf} for {copy.mail_from}"
    assert dkimpy.verify(copy.data, dnsfunc=story.dns_txt), "the author's DKIM signature broke"


@requirement(
    "PLATFORM",
    "forwarding.refused",
    "MUST",
    "a destination's permanent refusal of forwarded mail comes back to the original sender "
    "as a bounce (RFC 3464), never dropped",
    needs=("admin", "fake-dns"),
)
def test_refused_forward_bounces_to_the_original_sender(smtp: SMTPConnector, story: Story) -> None:
    from fakes.mx import Rule

    story.forward()
    subject = f"refused {token()}"
    with steer(story.gmail, Rule("rcpt", "550 5.1.1 No such user here", recipient=[story.remote])):
        story.send(smtp, subject)
        bounce = story.back_home()
    assert bounce.mail_from == "", "a bounce has the null return path (RFC 5321 4.5.5)"
    assert b"multipart/report" in bounce.data and story.remote.encode() in bounce.data
    assert b"5.1.1" in bounce.data and subject.encode() in bounce.data


@requirement(
    "PLATFORM",
    "forwarding.srs-bounce",
    "MUST",
    "a bounce to a forwarded message's rewritten return path is accepted and delivered to "
    "the original sender",
    needs=("admin", "fake-dns"),
)
def test_bounce_to_the_srs_address_reaches_the_original_sender(
    smtp: SMTPConnector, story: Story
) -> None:
    return_path = story.forwarded(smtp).mail_from
    # What the destination does when it cannot deliver after all: a bounce to the return path.
    subject = f"late bounce {token()}"
    client, reply = story.bounce_to(smtp, return_path)
    reply.expect(250, doing=f"RCPT TO:<{return_path}>")
    daemon = "mailer-daemon@destination.example"  # (gmail.test's DMARC would refuse this)
    client.data(message(daemon, [return_path], subject)).expect(250, doing="DATA")
    bounce = story.back_home()
    assert bounce.mail_from == "" and subject.encode() in bounce.data


@requirement(
    "PLATFORM",
    "forwarding.srs-forged",
    "MUST",
    "a bounce to a rewritten return path the platform did not sign is refused at RCPT with "
    "550 5.7.1",
    needs=("admin", "fake-dns"),
)
def test_forged_srs_address_is_refused(smtp: SMTPConnector, story: Story) -> None:
    prefix, digest, rest = story.forwarded(smtp).mail_from.split("=", 2)
    # Another first character, whatever its case (hashes compare without case, as libsrs2).
    forged = f"{prefix}={'1' if digest[0] == '0' else '0'}{digest[1:]}={rest}"
    _, reply = story.bounce_to(smtp, forged)
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)


@requirement(
    "PLATFORM",
    "forwarding.loop",
    "MUST",
    "forwarded mail that comes back to the address it was forwarded for is bounced to its "
    "sender (5.4.6 loop), not forwarded again",
    needs=("admin", "fake-dns"),
)
def test_forwarding_loop_is_bounced(smtp: SMTPConnector, story: Story) -> None:
    copy = story.forwarded(smtp)
    # The destination forwards it back, as a forwarder of its own would (as it received it).
    client = smtp.session("smtp")
    client.mail(story.sender).expect(250, doing="MAIL FROM")
    client.rcpt(story.user.address).expect(250, doing="RCPT TO the forwarding account again")
    client.data(copy.data).expect(250, doing="DATA")
    bounce = story.back_home()
    assert b"5.4.6" in bounce.data and story.user.address.encode() in bounce.data
    assert len([d for d in story.gmail.deliveries if story.remote in d.rcpt_tos]) == 1


@requirement(
    "PLATFORM",
    "forwarding.arc",
    "MUST",
    "forwarded mail carries an ARC set (RFC 8617) of the platform that validates at the "
    "destination, with the platform's Authentication-Results from when it arrived",
    needs=("admin", "fake-dns"),
)
def test_forwarded_mail_is_arc_sealed(smtp: SMTPConnector, story: Story) -> None:
    copy = story.forwarded(smtp)
    cv, results, reason = dkimpy.ARC(copy.data).verify(dnsfunc=story.dns_txt)
    assert cv == dkimpy.CV_Pass, f"ARC chain at the destination: {cv!r} {reason}"
    instance = results[0]
    assert instance["instance"] == 1 and b"arc=none" in copy.data.split(b"\r\n\r\n")[0]


def txt_of(net: Any, name: str) -> str:
    """A TXT record as the destination's resolver reads it from the fake DNS."""
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port = [net.dns.host], net.dns.port
    return b"".join(r.resolve(name.rstrip("."), "TXT")[0].strings).decode()
