"""PLATFORM outbound.dkim: submitted mail leaves DKIM-signed (rsa-sha256 and ed25519).

The message is submitted to a fake provider's address and read back from that provider's
fake MX. Signatures are checked for what the platform promises (algorithms, d=, relaxed
canonicalisation, From oversigned) and their body hash recomputed; where the target's
public keys are published in the fake DNS, dkimpy verifies them as well.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from typing import Any

import dkim as dkimpy

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.target import Target


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4, written out here so that no target code is trusted."""
    lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in body.split(b"\r\n")]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"\r\n".join(lines) + b"\r\n" if lines else b""


def signatures(raw: bytes) -> list[dict[str, str]]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    unfolded = re.sub(r"\r\n[ \t]+", " ", head)
    out = []
    for line in unfolded.split("\r\n"):
        if line.lower().startswith("dkim-signature:"):
            tags = {}
            for part in line.split(":", 1)[1].split(";"):
                k, _, v = part.partition("=")
                if k.strip():
                    tags[k.strip()] = re.sub(r"\s+", "", v)
            out.append(tags)
    return out


@requirement(
    "PLATFORM",
    "outbound.dkim",
    "MUST",
    "submitted mail is DKIM-signed with rsa-sha256 and ed25519 for the sender's domain",
)
def test_submitted_mail_is_dual_signed(
    smtp: SMTPConnector, target: Target, fake_internet: Any
) -> None:
    acc = target.account
    gmail = fake_internet.providers["gmail"]
    rcpt = f"friend-{secrets.token_hex(4)}@{gmail.domain}"
    subject = f"signed {secrets.token_hex(6)}"
    body = b"Hello   there,\r\nthe signed body.  \r\n\r\n"
    msg = (
        f"From: Alice <{acc.address}>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{secrets.token_hex(8)}@x>\r\n"
        "\r\n"
    ).encode() + body
    client = smtp.session("submission", tls=True)
    auth = base64.b64encode(f"\0{acc.address}\0{acc.password}".encode()).decode()
    client.command(f"AUTH PLAIN {auth}").expect(235, doing="AUTH PLAIN")
    client.mail(acc.address).expect(250, doing="MAIL FROM")
    client.rcpt(rcpt).expect(250, doing="RCPT TO")
    client.data(msg).expect(250, doing="DATA")

    deadline = time.monotonic() + max(10.0, target.timeout)
    delivered = None
    while delivered is None:
        found = [d for d in gmail.mx.deliveries if rcpt in d.rcpt_tos]
        if found:
            delivered = found[0].data
        elif time.monotonic() > deadline:
            raise AssertionError(f"nothing reached {gmail.domain}'s MX")
        else:
            time.sleep(0.05)

    sigs = signatures(delivered)
    algorithms = sorted(s.get("a", "") for s in sigs)
    assert algorithms == ["ed25519-sha256", "rsa-sha256"], f"signatures: {sigs}"
    domain = acc.domain.lower()
    delivered_body = delivered.split(b"\r\n\r\n", 1)[1]
    bh = base64.b64encode(hashlib.sha256(relaxed_body(delivered_body)).digest()).decode()
    for s in sigs:
        assert s.get("d", "").lower() == domain, f"d= is not the author's domain: {s}"
        assert s.get("c") == "relaxed/relaxed", s
        h = [x.strip().lower() for x in s.get("h", "").split(":")]
        assert h.count("from") >= 2, f"From is not oversigned: h={s.get('h')}"
        for name in ("subject", "date", "to", "message-id"):
            assert name in h, f"{name} not signed: h={s.get('h')}"
        assert s.get("bh") == bh, "body hash does not match the delivered body"

    # Cryptographic check where the target's keys are in the fake DNS.
    published = {
        r.name.lower(): b"".join(r.rdata.data)
        for r in fake_internet.dns.records()
        if r.rtype == "TXT" and "._domainkey." in r.name
    }
    names = [f"{s['s']}._domainkey.{s['d']}".lower() for s in sigs]
    if all(n in published for n in names):
        d = dkimpy.DKIM(delivered)
        for i in range(len(sigs)):
            ok = d.verify(idx=i, dnsfunc=lambda n, timeout=5: published.get(n.decode().rstrip(".")))
            assert ok, f"signature {i} does not verify"
