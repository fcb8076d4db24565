"""PLATFORM distribution lists, with RFC 2369, RFC 2919 and RFC 8058 list header fields:
who may post (refused at RCPT), what members here and elsewhere receive, where bounces go,
the From of posters whose domain publishes a strict DMARC policy, and loops.

Each test makes its own list with the target admin's ``create_list`` (not applicable on a
target without one). A poster elsewhere is a made-up domain of the test whose SPF names the
suite's loopback client (so the MX's own DMARC check passes it) and whose MX is the fake
yahoo.test, where anything coming back to the poster is seen; a member elsewhere is an
address at the fake gmail.test.
"""

from __future__ import annotations

import email.utils
import re
import socket
import urllib.parse
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import dkim as dkimpy
import dns.exception
import pytest

from conformance import not_applicable, requirement
from conformance.plugin import SMTPConnector
from conformance.target import Account, Target
from conformance.tests.outbound_support import (
    admin_op,
    fresh_user,
    inbox,
    submission,
    submit,
    token,
    wait_until,
)
from conformance.tests.test_forwarding import txt_of


class Lists:
    """A list with a local owner-member and a member elsewhere, and a poster elsewhere."""

    def __init__(self, target: Target, net: Any, *, dmarc: str = "none") -> None:
        tag = token()
        self.target = target
        self.net = net
        self.owner = fresh_user(target, "owner")
        self.local = fresh_user(target, "member")
        self.remote = f"member-{tag}@{net.providers['gmail'].domain}"
        self.address = f"team-{tag}@{target.domain}"
        self.poster_domain = f"poster-{tag}.example"
        self.poster = f"alice@{self.poster_domain}"
        net.dns.add(self.poster_domain, "MX", f"10 {net.providers['yahoo'].mx_host}.")
        net.dns.spf(self.poster_domain, "v=spf1 ip4:127.0.0.0/8 -all")
        net.dns.dmarc(self.poster_domain, f"v=DMARC1; p={dmarc}")
        self.gmail = net.mx["gmail"]
        self.yahoo = net.mx["yahoo"]

    def create(self, policy: str = "public", members: list[str] | None = None) -> None:
        admin_op(self.target, "create_list")(
            self.address,
            owner=self.owner.address,
            name="Team",
            policy=policy,
            members=[self.local.address, self.remote] if members is None else members,
        )

    def post(self, smtp: SMTPConnector, subject: str) -> None:
        submit(smtp.session("smtp"), self.poster, [self.address], subject)

    def remote_copy(self, subject: str) -> Any:
        found = wait_until(
            lambda: [
                d
                for d in self.gmail.deliveries
                if self.remote in d.rcpt_tos and subject.encode() in d.data
            ],
            10,
            f"{subject!r} at the member {self.remote}",
        )
        return found[0]

    def through_list(self, smtp: SMTPConnector, words: str) -> bytes:
        """A new public list's copy of a post, as the member elsewhere received it."""
        self.create()
        subject = f"{words} {token()}"
        self.post(smtp, subject)
        return bytes(self.remote_copy(subject).data)

    def dns_txt(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's DNS function: the member's provider reading the fake DNS."""
        try:
            return txt_of(self.net, name.decode()).encode()
        except dns.exception.DNSException:
            return b""

    def local_copy(self, subject: str, account: Account | None = None) -> Message:
        who = account or self.local
        raw = wait_until(
            lambda: next((m for m in inbox(self.target, who) if subject.encode() in m), None),
            10,
            f"{subject!r} in {who.address}'s INBOX",
        )
        return message_from_bytes(raw)


@pytest.fixture
def lists(target: Target) -> Iterator[Lists]:
    target.require("admin", "fake-dns")
    if target.fake_internet is None:
        not_applicable(f"target {target.name!r} runs without the fake internet")
    yield Lists(target, target.fake_internet)


@pytest.fixture
def strict(target: Target) -> Iterator[Lists]:
    """A poster whose domain publishes DMARC p=reject."""
    target.require("admin", "fake-dns")
    if target.fake_internet is None:
        not_applicable(f"target {target.name!r} runs without the fake internet")
    yield Lists(target, target.fake_internet, dmarc="reject")


@requirement(
    "PLATFORM",
    "lists.public",
    "MUST",
    "anyone may post to a public list; each member, here and elsewhere, receives one copy",
    needs=("admin", "fake-dns"),
)
def test_public_list_reaches_every_member(smtp: SMTPConnector, lists: Lists) -> None:
    lists.create()
    subject = f"to the team {token()}"
    lists.post(smtp, subject)
    lists.local_copy(subject)
    lists.remote_copy(subject)
    here = [m for m in inbox(lists.target, lists.local) if subject.encode() in m]
    assert len(here) == 1


@requirement(
    "PLATFORM",
    "lists.private-members",
    "MUST",
    "a members-only list refuses a poster who is not a member at RCPT with 550 5.7.1 naming "
    "the list policy, and takes a member's post",
    needs=("admin", "fake-dns"),
)
def test_members_only_list(smtp: SMTPConnector, lists: Lists) -> None:
    lists.create("members", [lists.local.address, lists.poster])
    outsider = smtp.session("smtp")
    outsider.mail(f"stranger@{lists.poster_domain}").expect(250, doing="MAIL FROM")
    reply = outsider.rcpt(lists.address)
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)
    assert "list policy" in str(reply).lower(), str(reply)
    subject = f"member post {token()}"
    lists.post(smtp, subject)
    lists.local_copy(subject)


@requirement(
    "PLATFORM",
    "lists.private-local",
    "MUST",
    "a list for local users refuses posts from elsewhere at RCPT with 550 5.7.1 naming the "
    "list policy, and takes a post from a user signed in over submission",
    needs=("admin", "fake-dns"),
)
def test_local_users_only_list(smtp: SMTPConnector, lists: Lists) -> None:
    lists.create("local", [lists.local.address])
    outsider = smtp.session("smtp")
    outsider.mail(lists.poster).expect(250, doing="MAIL FROM")
    reply = outsider.rcpt(lists.address)
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)
    assert "list policy" in str(reply).lower(), str(reply)
    subject = f"internal {token()}"
    submit(submission(lists.target, lists.owner), lists.owner.address, [lists.address], subject)
    lists.local_copy(subject)


@requirement(
    "RFC2919",
    "3",
    "MUST",
    "list mail carries exactly one List-Id field naming the list (list-label.domain)",
    needs=("admin", "fake-dns"),
)
def test_list_id(smtp: SMTPConnector, lists: Lists) -> None:
    lists.create()
    subject = f"list id {token()}"
    lists.post(smtp, subject)
    copy = lists.local_copy(subject)
    ids = copy.get_all("List-Id") or []
    local, domain = lists.address.split("@")
    assert len(ids) == 1 and ids[0].strip().endswith(f"<{local}.{domain}>"), ids


@requirement(
    "RFC2369",
    "3.4",
    "SHOULD",
    "list mail names how to post (List-Post: <mailto:list>) and how to leave (List-Unsubscribe)",
    needs=("admin", "fake-dns"),
)
def test_list_post_and_unsubscribe(smtp: SMTPConnector, lists: Lists) -> None:
    lists.create()
    subject = f"list fields {token()}"
    lists.post(smtp, subject)
    copy = lists.local_copy(subject)
    assert copy["List-Post"] == f"<mailto:{lists.address}>"
    assert (copy["List-Unsubscribe"] or "").startswith("<https://"), copy["List-Unsubscribe"]


@requirement(
    "RFC8058",
    "3.1",
    "MUST",
    "each member's copy carries an HTTPS List-Unsubscribe and List-Unsubscribe-Post: "
    "List-Unsubscribe=One-Click; a POST of that body to it unsubscribes that member",
    needs=("admin", "fake-dns"),
)
def test_one_click_unsubscribe(smtp: SMTPConnector, lists: Lists) -> None:
    lists.create()
    subject = f"one click {token()}"
    lists.post(smtp, subject)
    copy = lists.local_copy(subject)
    assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = urllib.parse.urlsplit((copy["List-Unsubscribe"] or "").strip("<>"))
    assert url.scheme == "https", url
    assert one_click(lists.target, url) == 200
    after = f"after leaving {token()}"
    lists.post(smtp, after)
    lists.remote_copy(after)  # the others still receive the list's mail
    assert not [m for m in inbox(lists.target, lists.local) if after.encode() in m]


def one_click(target: Target, url: urllib.parse.SplitResult) -> int:
    """POST List-Unsubscribe=One-Click to ``url`` (RFC 8058 3.2), the status of the answer.
    Sent to the target's own address: the suite never asks a resolver for the URL's name."""
    host = target.endpoint("smtp").host
    body = b"List-Unsubscribe=One-Click"
    request = (
        f"POST {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    raw = socket.create_connection((host, url.port or 443), timeout=target.timeout)
    with target.ssl_context().wrap_socket(raw, server_hostname=url.hostname) as tls:
        tls.sendall(request + body)
        status_line = tls.makefile("rb").readline()
    return int(status_line.split()[1])


@requirement(
    "PLATFORM",
    "lists.bounces",
    "MUST",
    "list mail leaves from the list's own bounce address: a member's refusal comes back to "
    "the list (its owner), never to the poster",
    needs=("admin", "fake-dns"),
)
def test_member_bounce_goes_to_the_list(smtp: SMTPConnector, lists: Lists) -> None:
    from conformance.tests.outbound_support import steer
    from fakes.mx import Rule

    lists.create()
    subject = f"bouncing {token()}"
    with steer(lists.gmail, Rule("rcpt", "550 5.1.1 No such user here", recipient=[lists.remote])):
        lists.post(smtp, subject)
        bounce = lists.local_copy(subject, lists.owner)
    assert lists.remote.encode() in bounce.as_bytes() and b"5.1.1" in bounce.as_bytes()
    assert not [d for d in lists.yahoo.deliveries if lists.poster in d.rcpt_tos]
    copy = lists.local_copy(subject)
    assert copy["Return-Path"].strip("<>") not in ("", lists.poster), copy["Return-Path"]


@requirement(
    "PLATFORM",
    "lists.dmarc-from",
    "MUST",
    "a post from a domain publishing DMARC p=reject or p=quarantine reaches members with "
    'From rewritten to the list ("Alice via Team" <list>) and the poster in Reply-To; other '
    "posters' From is kept",
    needs=("admin", "fake-dns"),
)
def test_strict_dmarc_poster_from_is_rewritten(
    smtp: SMTPConnector, lists: Lists, strict: Lists
) -> None:
    for each, rewritten in ((strict, True), (lists, False)):
        each.create()
        subject = f"dmarc {token()}"
        each.post(smtp, subject)
        remote = message_from_bytes(each.remote_copy(subject).data)
        name, address = email.utils.parseaddr(remote["From"])
        if rewritten:
            assert (address, name) == (each.address, "alice via Team"), remote["From"]
            assert each.poster in (remote["Reply-To"] or ""), remote["Reply-To"]
        else:
            assert address == each.poster, remote["From"]


@requirement(
    "PLATFORM",
    "lists.loop",
    "MUST",
    "a list among its own members' members never sends a post round again: each member "
    "receives one copy and the loop is bounced (5.4.6) to a list's owner, not dropped",
    needs=("admin", "fake-dns"),
)
def test_lists_in_a_loop(smtp: SMTPConnector, lists: Lists, target: Target) -> None:
    lists.create(members=[lists.local.address])
    inner = f"inner-{token()}@{target.domain}"
    admin_op(target, "create_list")(
        inner, owner=lists.owner.address, members=[lists.address, lists.owner.address]
    )
    admin_op(target, "add_list_members")(lists.address, inner)
    subject = f"round and round {token()}"
    lists.post(smtp, subject)
    lists.local_copy(subject)
    bounce = wait_until(
        lambda: next(
            (m for m in inbox(target, lists.owner) if b"5.4.6" in m and subject.encode() in m),
            None,
        ),
        10,
        "a 5.4.6 loop bounce in the owner's INBOX",
    )
    assert bounce
    copies = [m for m in inbox(target, lists.local) if subject.encode() in m]
    assert len(copies) == 1, f"{len(copies)} copies"


@requirement(
    "RFC8058",
    "4",
    "MUST",
    "a member elsewhere receives a copy with a valid DKIM signature of the list's domain "
    "that covers List-Unsubscribe and List-Unsubscribe-Post",
    needs=("admin", "fake-dns"),
)
def test_list_copies_are_dkim_signed(smtp: SMTPConnector, strict: Lists) -> None:
    data = strict.through_list(smtp, "signed")
    domain = strict.address.rpartition("@")[2].lower()
    fields = message_from_bytes(data).get_all("DKIM-Signature") or []
    tags = [signature_tags(f) for f in fields]
    ours = [i for i, t in enumerate(tags) if t.get("d", "").lower() == domain]
    assert ours, f"no DKIM signature of {domain}: {[t.get('d') for t in tags]}"
    for i in ours:
        h = tags[i].get("h", "").lower().split(":")
        assert "list-unsubscribe" in h and "list-unsubscribe-post" in h, f"h={tags[i]['h']}"
    names = {f"{tags[i].get('s')}._domainkey.{domain}" for i in ours}
    if not all(strict.dns_txt(n.encode()) for n in names):
        not_applicable(f"the target's keys for {domain} are not in the fake DNS")
    signed = dkimpy.DKIM(data)
    verified = [i for i in ours if signed.verify(idx=i, dnsfunc=strict.dns_txt)]
    assert verified == ours, f"signatures {sorted(set(ours) - set(verified))} do not verify"


@requirement(
    "PLATFORM",
    "lists.arc",
    "MUST",
    "a member elsewhere receives a copy carrying the platform's ARC set (RFC 8617), valid "
    "there, with the platform's results from when the post arrived",
    needs=("admin", "fake-dns"),
)
def test_list_copies_are_arc_sealed(smtp: SMTPConnector, strict: Lists) -> None:
    data = strict.through_list(smtp, "sealed")
    cv, results, reason = dkimpy.ARC(data).verify(dnsfunc=strict.dns_txt)
    assert cv == dkimpy.CV_Pass, f"ARC chain at the member's provider: {cv!r} {reason}"
    assert results[0]["instance"] == 1, results


def signature_tags(value: str) -> dict[str, str]:
    tags = {}
    for part in re.sub(r"\s+", "", value).split(";"):
        k, _, v = part.partition("=")
        if k:
            tags[k] = v
    return tags


@requirement(
    "PLATFORM",
    "lists.subaddress",
    "MUST",
    "a list takes posts at its subaddresses (team+tag@, RFC 5233) as at its own address, "
    "under the same posting policy",
    needs=("admin", "fake-dns"),
)
def test_list_subaddress(smtp: SMTPConnector, lists: Lists) -> None:
    lists.create("members", [lists.local.address, lists.poster])
    local, domain = lists.address.split("@")
    tagged = f"{local}+{token()}@{domain}"
    outsider = smtp.session("smtp")
    outsider.mail(f"stranger@{lists.poster_domain}").expect(250, doing="MAIL FROM")
    refused = outsider.rcpt(tagged)
    assert (refused.code, refused.enhanced) == (550, "5.7.1"), f"{tagged}: {refused}"
    subject = f"tagged post {token()}"
    submit(smtp.session("smtp"), lists.poster, [tagged], subject)
    copy = lists.local_copy(subject)
    assert copy["List-Post"] == f"<mailto:{lists.address}>", copy["List-Post"]
