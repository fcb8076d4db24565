"""RFC 7208, RFC 6376, RFC 7489, RFC 8601, RFC 8617 and PLATFORM inbound.dmarc at the MX.

Each test publishes what it needs in the fake DNS (SPF, DMARC, DKIM keys of a made-up
sender domain), sends over the inbound SMTP endpoint, and reads the delivered message
back over IMAP to see the target's Authentication-Results field. Messages are signed and
sealed with dkimpy, an implementation independent of any target.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import re
import secrets
import socket
import ssl
import time
from typing import Any

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance import not_applicable, requirement
from conformance.plugin import SMTPConnector
from conformance.smtp_client import Reply
from conformance.target import Account, Target

# -- helpers -----------------------------------------------------------------------------------


def token() -> str:
    return secrets.token_hex(6)


def make_message(from_: str, to: str, subject: str, extra: str = "", body: str = "") -> bytes:
    text = (
        f"From: {from_}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{token()}@conformance.test>\r\n"
        f"\r\n{body or 'Hello from the conformance suite.'}\r\n"
    )
    return text.encode()


def send_inbound(
    smtp: SMTPConnector, sender: str, rcpt: str, message: bytes, helo: str | None = None
) -> Reply:
    client = smtp("smtp")
    client.ehlo(helo).expect(250, doing="EHLO")
    client.mail(sender).expect(250, doing=f"MAIL FROM:<{sender}>")
    client.rcpt(rcpt).expect(250, doing=f"RCPT TO:<{rcpt}>")
    return client.data(message)


def rsa_key() -> tuple[bytes, str]:
    """A fresh RSA-2048 key as PKCS#1 PEM (dkimpy's format) and its DKIM p= value."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(spki).decode()


def publish_key(fake_dns: Any, domain: str, selector: str, public: str) -> None:
    value = f"v=DKIM1; k=rsa; p={public}"
    fake_dns.add_txt(
        f"{selector}._domainkey.{domain}", *[value[i : i + 255] for i in range(0, len(value), 255)]
    )


def sender_domain(fake_dns: Any, policy: str) -> str:
    """A made-up domain whose SPF allows nobody and whose DMARC policy is ``policy``."""
    domain = f"d{token()}.example"
    fake_dns.spf(domain, "v=spf1 -all")
    fake_dns.dmarc(domain, f"v=DMARC1; p={policy}")
    return domain


class _IMAP(imaplib.IMAP4_SSL):
    """IMAP over implicit TLS, verifying the certificate against the target's server name."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, server_name: str) -> None:
        self._server_name = server_name
        super().__init__(host, port, ssl_context=ctx, timeout=10)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self._server_name)


def imap_login(target: Target, account: Account) -> imaplib.IMAP4:
    if "imaps" in target.endpoints:
        ep = target.endpoint("imaps")
        conn: imaplib.IMAP4 = _IMAP(ep.host, ep.port, target.ssl_context(), target.server_name(ep))
    else:
        ep = target.endpoint("imap")
        conn = imaplib.IMAP4(ep.host, ep.port, timeout=10)
        conn.starttls(target.ssl_context())
    conn.login(account.address, account.password)
    return conn


def find_message(
    target: Target, account: Account, subject: str, folders: tuple[str, ...] = ("INBOX", "Junk")
) -> tuple[str, bytes]:
    """(folder, raw message) of the one message whose Subject holds ``subject``."""
    deadline = time.monotonic() + max(10.0, target.timeout)
    conn = imap_login(target, account)
    try:
        while True:
            for folder in folders:
                typ, _ = conn.select(folder, readonly=True)
                if typ != "OK":
                    continue
                typ, data = conn.search(None, "SUBJECT", f'"{subject}"')
                ids = data[0].split() if typ == "OK" and data and data[0] else []
                if ids:
                    typ, parts = conn.fetch(ids[-1], "(BODY.PEEK[])")
                    for part in parts:
                        if isinstance(part, tuple):
                            return folder, bytes(part[1])
            if time.monotonic() > deadline:
                raise AssertionError(f"no message with subject {subject!r} in {folders}")
            time.sleep(0.1)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.logout()


def header_section(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return re.sub(r"\r\n[ \t]+", " ", head)


def results_fields(raw: bytes) -> list[str]:
    """The Authentication-Results fields of a message, unfolded, top first."""
    return [
        line.split(":", 1)[1].strip()
        for line in header_section(raw).split("\r\n")
        if line.lower().startswith("authentication-results:")
    ]


def authserv_id(value: str) -> str:
    m = re.match(r"\s*(?:\([^)]*\)\s*)*([^\s;()]+)", value)
    return m.group(1).lower() if m else ""


def ours(target: Target, raw: bytes) -> str:
    """Our Authentication-Results (authserv-id = the target's host name), as one string."""
    if not target.hostname:
        not_applicable(f"target {target.name!r} does not say its host name (authserv-id)")
    mine = [v for v in results_fields(raw) if authserv_id(v) == target.hostname.lower()]
    assert len(mine) == 1, f"expected one Authentication-Results of ours: {results_fields(raw)}"
    return mine[0]


def method_results(value: str, method: str) -> list[str]:
    return re.findall(rf"(?:^|;)\s*{method}=(\w+)", value)


# -- DMARC -----------------------------------------------------------------------------------


@requirement(
    "PLATFORM",
    "inbound.dmarc",
    "MUST",
    "a message failing DMARC p=reject is refused with 550 5.7.1 naming the domain",
)
def test_dmarc_reject_is_refused(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    domain = sender_domain(fake_dns, "reject")
    rcpt = target.account.address
    reply = send_inbound(
        smtp, f"billing@{domain}", rcpt, make_message(f"Billing <billing@{domain}>", rcpt, token())
    )
    assert (reply.code, reply.enhanced) == (550, "5.7.1"), str(reply)
    assert domain in reply.text, f"the reply does not say which domain's policy: {reply}"


@requirement(
    "PLATFORM",
    "inbound.dmarc",
    "MUST",
    "a message failing DMARC p=quarantine is accepted and filed into Junk",
)
def test_dmarc_quarantine_goes_to_junk(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    domain = sender_domain(fake_dns, "quarantine")
    acc, subject = target.account, f"quarantine {token()}"
    msg = make_message(f"news@{domain}", acc.address, subject)
    send_inbound(smtp, f"news@{domain}", acc.address, msg).expect(250, doing="DATA")
    folder, raw = find_message(target, acc, subject)
    assert folder == "Junk", f"delivered into {folder}"
    assert method_results(ours(target, raw), "dmarc") == ["fail"]


@requirement(
    "PLATFORM",
    "inbound.dmarc",
    "MUST",
    "mailing-list mail (List-Id) failing DMARC p=reject is not refused",
)
def test_mailing_list_is_not_refused(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    domain = sender_domain(fake_dns, "reject")
    acc = target.account
    msg = make_message(
        f"member@{domain}",
        f"talk@lists.{domain}",
        f"[talk] {token()}",
        extra="List-Id: Talk <talk.lists.example>\r\nList-Post: <mailto:talk@lists.example>\r\n",
    )
    reply = send_inbound(smtp, "talk-bounces@lists.example", acc.address, msg)
    assert reply.code == 250, f"list mail refused: {reply}"


@requirement(
    "RFC7489",
    "4.2",
    "MUST",
    "a DKIM signature aligned with the From domain passes DMARC even when SPF fails",
)
def test_aligned_dkim_passes_dmarc(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    domain = sender_domain(fake_dns, "reject")
    pem, public = rsa_key()
    publish_key(fake_dns, domain, "s1", public)
    acc, subject = target.account, f"aligned {token()}"
    msg = make_message(f"ceo@{domain}", acc.address, subject)
    signed = dkimpy.sign(msg, b"s1", f"mail.{domain}".encode(), pem) + msg
    publish_key(fake_dns, f"mail.{domain}", "s1", public)
    # Forwarded: the envelope is the forwarder's, so SPF says nothing for the author.
    reply = send_inbound(smtp, "fwd@forwarder.example", acc.address, signed)
    assert reply.code == 250, f"refused: {reply}"
    folder, raw = find_message(target, acc, subject)
    res = ours(target, raw)
    assert method_results(res, "dkim") == ["pass"] and method_results(res, "dmarc") == ["pass"]
    assert folder == "INBOX"


# -- SPF -------------------------------------------------------------------------------------


@requirement(
    "PLATFORM",
    "inbound.spf",
    "MUST",
    "an SPF fail alone does not refuse the message; the result is recorded",
)
def test_spf_fail_alone_is_accepted(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    domain = f"d{token()}.example"
    fake_dns.spf(domain, "v=spf1 ip4:192.0.2.1 -all")  # and no DMARC record
    acc, subject = target.account, f"spf {token()}"
    reply = send_inbound(
        smtp, f"a@{domain}", acc.address, make_message(f"a@{domain}", acc.address, subject)
    )
    assert reply.code == 250, f"refused: {reply}"
    _, raw = find_message(target, acc, subject)
    res = ours(target, raw)
    assert method_results(res, "spf")[:1] == ["fail"], res
    assert f"smtp.mailfrom=a@{domain}" in res or f"smtp.mailfrom={domain}" in res, res


@requirement(
    "RFC7208",
    "2.6",
    "MUST",
    "a client the SPF record lists gets spf=pass for MAIL FROM",
)
def test_spf_pass_is_recorded(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    domain = f"d{token()}.example"
    # The suite's address as the target sees it is unknown: allow every IPv4 and IPv6 client.
    fake_dns.spf(domain, "v=spf1 ip4:0.0.0.0/0 ip6:::/0 -all")
    acc, subject = target.account, f"spfpass {token()}"
    msg = make_message(f"a@{domain}", acc.address, subject)
    send_inbound(smtp, f"a@{domain}", acc.address, msg).expect(250, doing="DATA")
    _, raw = find_message(target, acc, subject)
    assert method_results(ours(target, raw), "spf")[:1] == ["pass"]


# -- DKIM ------------------------------------------------------------------------------------


@requirement(
    "RFC6376",
    "6.1",
    "MUST",
    "each DKIM signature is verified: a valid one is dkim=pass, a tampered one dkim=fail",
)
def test_dkim_pass_and_fail(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    domain = f"d{token()}.example"
    pem, public = rsa_key()
    publish_key(fake_dns, domain, "good", public)
    publish_key(fake_dns, domain, "bad", public)
    acc, subject = target.account, f"dkim {token()}"
    msg = make_message(f"a@{domain}", acc.address, subject, body="Original text.")
    good = dkimpy.sign(msg, b"good", domain.encode(), pem)
    bad = dkimpy.sign(msg.replace(b"Original", b"Other"), b"bad", domain.encode(), pem)
    reply = send_inbound(smtp, f"a@{domain}", acc.address, bad + good + msg)
    assert reply.code == 250, str(reply)
    _, raw = find_message(target, acc, subject)
    res = ours(target, raw)
    assert sorted(method_results(res, "dkim")) == ["fail", "pass"], res


# -- Authentication-Results ------------------------------------------------------------------


@requirement(
    "RFC8601",
    "5",
    "MUST",
    "Authentication-Results with our authserv-id is added, and one forged with it removed",
)
def test_forged_results_are_replaced(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    if not target.hostname:
        not_applicable(f"target {target.name!r} does not say its host name (authserv-id)")
    domain = sender_domain(fake_dns, "none")
    acc, subject = target.account, f"forged {token()}"
    forged = (
        f"Authentication-Results: {target.hostname};\r\n"
        f"\tdkim=pass header.d=bank-{token()}.example; dmarc=pass\r\n"
    )
    msg = forged.encode() + make_message(f"a@{domain}", acc.address, subject)
    send_inbound(smtp, f"a@{domain}", acc.address, msg).expect(250, doing="DATA")
    _, raw = find_message(target, acc, subject)
    res = ours(target, raw)  # exactly one field with our authserv-id
    assert "bank-" not in res, f"the forged field survived: {res}"
    assert method_results(res, "spf")[:1] == ["fail"] and method_results(res, "dmarc") == ["fail"]
    first = results_fields(raw)[0]
    assert authserv_id(first) == target.hostname.lower(), "ours is not the topmost field"


# -- ARC -------------------------------------------------------------------------------------


def arc_sealed(fake_dns: Any, msg: bytes, sealer: str) -> bytes:
    pem, public = rsa_key()
    publish_key(fake_dns, sealer, "arc", public)
    ar = f"Authentication-Results: mx.{sealer}; arc=none\r\n".encode()
    sets = dkimpy.arc_sign(ar + msg, b"arc", sealer.encode(), pem, f"mx.{sealer}".encode())
    return b"".join(sets) + ar + msg


@requirement(
    "RFC8617",
    "5.2",
    "MUST",
    "an ARC chain is validated: a valid chain is arc=pass, a broken one arc=fail",
)
def test_arc_chain_is_validated(smtp: SMTPConnector, target: Target, fake_dns: Any) -> None:
    domain = f"d{token()}.example"
    fake_dns.spf(domain, "v=spf1 -all")
    acc = target.account
    sealer = f"lists{token()}.example"
    s1, s2 = f"arc-ok {token()}", f"arc-broken {token()}"
    good = arc_sealed(fake_dns, make_message(f"a@{domain}", acc.address, s1), sealer)
    send_inbound(smtp, f"b@{sealer}", acc.address, good).expect(250, doing="DATA (sealed)")
    broken = arc_sealed(fake_dns, make_message(f"a@{domain}", acc.address, s2), sealer)
    broken = broken.replace(b"Hello from", b"Goodbye from")
    send_inbound(smtp, f"b@{sealer}", acc.address, broken).expect(250, doing="DATA (broken)")
    _, raw1 = find_message(target, acc, s1)
    _, raw2 = find_message(target, acc, s2)
    assert method_results(ours(target, raw1), "arc") == ["pass"]
    assert method_results(ours(target, raw2), "arc") == ["fail"]
